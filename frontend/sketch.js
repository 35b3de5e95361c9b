// A drawing pad: white ink on black, as MNIST's digits are. Each stroke, when the pointer is
// released, goes to Python as a PNG data URL (state "drawing"); "Clear" sends null.

const SIDE = 224;
const INK = 18;

export default function (component) {
  const { parentElement, setStateValue } = component;
  if (parentElement.querySelector("canvas")) return undefined; // built on the first render
  const canvas = document.createElement("canvas");
  canvas.width = SIDE;
  canvas.height = SIDE;
  canvas.className = "sk-canvas";
  canvas.setAttribute("aria-label", "drawing pad: draw a digit");
  const clear = document.createElement("button");
  clear.textContent = "Clear";
  clear.className = "sk-clear";
  const box = document.createElement("div");
  box.className = "sk";
  box.append(canvas, clear);
  parentElement.append(box);

  const context = canvas.getContext("2d");
  const blank = () => {
    context.fillStyle = "black";
    context.fillRect(0, 0, SIDE, SIDE);
  };
  blank();
  context.strokeStyle = "white";
  context.lineWidth = INK;
  context.lineCap = "round";
  context.lineJoin = "round";

  let drawing = false;
  const point = (event) => {
    const rect = canvas.getBoundingClientRect();
    return [((event.clientX - rect.left) / rect.width) * SIDE, ((event.clientY - rect.top) / rect.height) * SIDE];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = point(event);
    context.beginPath();
    context.moveTo(x, y);
    context.lineTo(x + 0.01, y);
    context.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    context.lineTo(x, y);
    context.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    setStateValue("drawing", canvas.toDataURL("image/png"));
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  clear.addEventListener("click", () => {
    blank();
    setStateValue("drawing", null);
  });
  return undefined;
}
