"""How well a digit model reads digits from elsewhere: printed in the fonts Debian packages
(weights, slants; the designs training/printed.py holds out from training), drawn as
synthetic pen strokes, and drawn with the mouse on the page's own drawing pad in headless
chromium. None of them is MNIST; each goes through the page's own preparation of an upload
(training.images.model_input), as a user's would.

    python bench/handwriting.py make      # renders the sets into tests/data/handwriting/ (needs the fonts)
    python bench/handwriting.py checkpoints/mnist-z8 [checkpoints/other ...] --data-dir ../shared/data/mnist
    python bench/handwriting.py ablation --data-dir ../shared/data/mnist   # a run per kind of distortion

For each checkpoint and set: the accuracy of a classifier trained on MNIST (sample_quality.py's)
on the prepared inputs and on the model's reconstructions of them (decode of the encoder's
mean), their ratio, and the accuracy of a 5-nearest-neighbour vote of the inputs' means among
the training set's means. Writes bench/results/handwriting.json and .md (or --name).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import training  # noqa: E402
from bench.report import write_report  # noqa: E402
from bench.sample_quality import train_classifier  # noqa: E402
from training.evaluate import checkpoint_data, encode_dataset, knn_accuracy  # noqa: E402
from training.images import model_input  # noqa: E402
from training.printed import SHEET_FOLDER as PRINTED_FOLDER  # noqa: E402
from training.printed import SHEET_NAME as PRINTED_SHEET  # noqa: E402
from training.printed import font_design, is_training_design, read_sheet, write_sheet  # noqa: E402
from training.train import RECIPES  # noqa: E402

SETS = ROOT / "tests" / "data" / "handwriting"
SIDE = 56  # each source image, dark ink on white paper as a scan would be
FONT_SIZE = 40  # points: the preparation scales every digit to MNIST's 20-pixel box anyway
FONT_TYPES = (".ttf", ".otf")
# not digits as anyone writes them: symbols, dingbats, mathematics, monospace, keycaps, initials
SKIPPED_FONTS = ("symbol", "d050000l", "math", "mono", "linbiolinum_k", "linlibertine_i.", "linlibertine_m.")
FONT_SLANTS = (-0.25, 0.0, 0.25)  # shear of the rendered glyph (an italic, upright, a backhand)
STROKE_DIGITS = 60  # synthetic pen-stroke digits per class
PAD_DIGITS = 5  # digits per class drawn on the page's pad


# --------------------------------------------------------------------------- the pen's strokes


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, points: int = 24) -> list:
    """Points along an ellipse's arc, angles in degrees (0 to the right, 90 down), in [0, 1]²."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start, end, points)
    ]


# each digit: its strokes, each a polyline in the unit square (x right, y down)
TEMPLATES = {
    0: [arc(0.5, 0.5, 0.28, 0.42, -90, 270, 40)],
    1: [[(0.38, 0.22), (0.55, 0.08), (0.55, 0.92)]],
    2: [arc(0.5, 0.32, 0.26, 0.24, 190, 390, 20) + [(0.25, 0.9), (0.8, 0.9)]],
    3: [arc(0.48, 0.3, 0.25, 0.21, 200, 450, 20) + arc(0.48, 0.7, 0.28, 0.22, -90, 160, 20)],
    4: [[(0.62, 0.08), (0.18, 0.65), (0.82, 0.65)], [(0.62, 0.3), (0.62, 0.92)]],
    5: [[(0.75, 0.1), (0.32, 0.1), (0.28, 0.45)] + arc(0.5, 0.66, 0.27, 0.25, 215, 500, 24)],
    6: [[(0.68, 0.08)] + arc(0.5, 0.68, 0.26, 0.24, 200, 560, 30)],
    7: [[(0.2, 0.1), (0.8, 0.1), (0.42, 0.92)]],
    8: [arc(0.5, 0.29, 0.22, 0.2, 90, 450, 30), arc(0.5, 0.7, 0.26, 0.22, -90, 270, 30)],
    9: [arc(0.5, 0.32, 0.24, 0.22, 0, 360, 30) + [(0.74, 0.32), (0.66, 0.92)]],
}


def jittered_strokes(digit: int, rng: np.random.Generator) -> list[np.ndarray]:
    """DIGIT's template as a hand might draw it: each point moved a little, the whole slanted,
    squeezed and rotated at random; (P, 2) arrays in the unit square."""
    slant, squeeze, angle = rng.uniform(-0.3, 0.3), rng.uniform(0.75, 1.1), math.radians(rng.uniform(-10, 10))
    strokes = []
    for stroke in TEMPLATES[digit]:
        points = np.asarray(stroke, np.float64) + rng.normal(0, 0.025, (len(stroke), 2))
        centred = points - 0.5
        centred[:, 0] = centred[:, 0] * squeeze + slant * centred[:, 1]
        rotated = centred @ np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        strokes.append(rotated * 0.85 + 0.5)
    return strokes


def draw_strokes(strokes: list[np.ndarray], width: float) -> Image.Image:
    """Strokes in the unit square, drawn SIDE × SIDE with a round pen of WIDTH pixels, dark on white."""
    image = Image.new("L", (SIDE, SIDE), 255)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        xy = [(float(x) * SIDE, float(y) * SIDE) for x, y in stroke]
        draw.line(xy, fill=20, width=round(width), joint="curve")
        for x, y in (xy[0], xy[-1]):
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=20)
    return image


def stroke_digits(rng: np.random.Generator) -> tuple[list[Image.Image], list[int]]:
    images, labels = [], []
    for digit in range(10):
        for _ in range(STROKE_DIGITS):
            images.append(draw_strokes(jittered_strokes(digit, rng), rng.uniform(2.5, 6.5)))
            labels.append(digit)
    return images, labels


# --------------------------------------------------------------------------- printed digits


def font_files() -> list[Path]:
    """The TrueType and OpenType fonts Debian installed, one file per face, in a fixed order."""
    folders = [Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype")]
    files = sorted(
        p for folder in folders if folder.is_dir() for p in folder.rglob("*") if p.suffix in (".ttf", ".otf")
    )
    return [p for p in files if not any(skip in p.name.lower() for skip in SKIPPED_FONTS)]


def font_digit(font: ImageFont.FreeTypeFont, digit: int, slant: float) -> Image.Image | None:
    """DIGIT in FONT, slanted, centred on SIDE × SIDE paper; None when the font has no glyph for it."""
    canvas = Image.new("L", (SIDE * 2, SIDE * 2), 255)
    draw = ImageDraw.Draw(canvas)
    draw.text((SIDE, SIDE), str(digit), font=font, fill=20, anchor="mm")
    if slant:
        canvas = canvas.transform(canvas.size, Image.AFFINE, (1, slant, -slant * SIDE, 0, 1, 0), fillcolor=255)
    box = Image.eval(canvas, lambda v: 255 - v).getbbox()
    if box is None:
        return None
    return canvas.crop((SIDE // 2, SIDE // 2, SIDE // 2 + SIDE, SIDE // 2 + SIDE))


def printed_digits() -> tuple[list[Image.Image], list[int], list[str]]:
    images, labels, sources = [], [], []
    for path in font_files():
        font = ImageFont.truetype(str(path), FONT_SIZE)
        for slant in FONT_SLANTS:
            for digit in range(10):
                image = font_digit(font, digit, slant)
                if image is not None:
                    images.append(image)
                    labels.append(digit)
                    sources.append(path.stem)
    return images, labels, sources


# --------------------------------------------------------------------------- the page's drawing pad

PAD_PAGE = """<html><body style="margin:0"><div id="pad"></div><script type="module">
const source = %s;
const module = await import("data:text/javascript;base64," + btoa(source));
window.drawings = [];
module.default({parentElement: document.getElementById("pad"),
                setStateValue: (name, value) => { if (value) window.drawings.push(value); }});
</script></body></html>"""


def pad_digits(rng: np.random.Generator) -> tuple[list[Image.Image], list[int]]:
    """Digits drawn with the mouse on frontend/sketch.js, the page's pad, in headless chromium:
    each template's strokes, jittered, dragged across the pad; its PNGs (white on black) come
    back as the page sends them to Python, and are inverted to ink on paper like the others."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only `make` draws

    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS  # noqa: PLC0415

    images, labels = [], []
    source = (ROOT / "frontend" / "sketch.js").read_text()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 400, "height": 400})
        for digit in range(10):
            for _ in range(PAD_DIGITS):
                page.set_content(PAD_PAGE % json.dumps(source))
                canvas = page.locator("canvas")
                canvas.wait_for()
                box = canvas.bounding_box()
                for stroke in jittered_strokes(digit, rng):
                    xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
                    page.mouse.move(*xy[0])
                    page.mouse.down()
                    for point in xy[1:]:
                        page.mouse.move(*point, steps=2)
                    page.mouse.up()
                url = page.evaluate("() => window.drawings[window.drawings.length - 1]")
                drawn = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L")
                images.append(Image.eval(drawn.resize((SIDE, SIDE), Image.Resampling.LANCZOS), lambda v: 255 - v))
                labels.append(digit)
        browser.close()
    return images, labels


# --------------------------------------------------------------------------- the sets on disk


def write_printed_sets(images: list[Image.Image], labels: list[int], sources: list[str]) -> None:
    """The printed digits of the training font designs (training/printed.py) to the training
    package's sheet, the others to SETS: the benchmark's fonts are ones a model trained with
    printed digits never saw."""
    for training_side, folder, name in ((False, SETS, "fonts"), (True, PRINTED_FOLDER, PRINTED_SHEET)):
        rows = [i for i, source in enumerate(sources) if is_training_design(font_design(source)) == training_side]
        write_sheet(folder, name, [images[i] for i in rows], [labels[i] for i in rows], [sources[i] for i in rows])
        designs = {font_design(sources[i]) for i in rows}
        print(f"{folder / name}: {len(rows)} digits in {len(designs)} font designs")


def make() -> None:
    rng = np.random.default_rng(0)
    write_printed_sets(*printed_digits())
    write_sheet(SETS, "strokes", *stroke_digits(rng))
    write_sheet(SETS, "pad", *pad_digits(rng))
    print(f"wrote {SETS}")


def read_set(name: str) -> tuple[list[Image.Image], np.ndarray]:
    return read_sheet(SETS, name)


# --------------------------------------------------------------------------- measuring


def prepared(images: list[Image.Image]) -> torch.Tensor:
    """The images as the page prepares an upload for a digit model: (N, 1, 28, 28)."""
    return torch.from_numpy(np.stack([model_input(image, 1, 28, digits=True) for image in images]).astype(np.float32))


@torch.inference_mode()
def measure(model: training.ConvVAE, kit: dict) -> dict:
    """For each set of KIT's digits from elsewhere (measuring_kit) and for all of them: the
    classifier's accuracy on the inputs and on MODEL's reconstructions of them (decode of the
    encoder's mean), and the kNN-5 vote of their means among the training split's means."""
    train_mu, _ = encode_dataset(model, kit["train"].images)
    means, rebuilt = {}, {}
    for name in SET_NAMES:
        means[name], _ = encode_dataset(model, kit["x"][name])
        rebuilt[name] = kit["classifier"](model.decode(means[name])).argmax(1) == kit["labels"][name]
    means["all"], rebuilt["all"] = torch.cat(list(means.values())), torch.cat(list(rebuilt.values()))
    results = {}
    for name, mu in means.items():
        inputs, right = kit["inputs_accuracy"][name], float(rebuilt[name].float().mean())
        results[name] = {"inputs": inputs, "reconstructions": right, "ratio": right / inputs, "images": len(mu)}
        results[name]["knn5"] = knn_accuracy(train_mu, kit["train"].labels, mu, kit["labels"][name], k=5)
    return results


SET_NAMES = ("fonts", "strokes", "pad")


def report_lines(names: list[str], results: dict, accuracy: float) -> list[str]:
    lines = [
        f"Digits from elsewhere, {time.strftime('%Y-%m-%d')}: a classifier trained on MNIST (test accuracy "
        f"{accuracy:.4f}) on the prepared inputs and on each model's reconstructions; kNN-5 of the inputs' "
        "means among the training set's",
        "",
        "| set | images | classifier on inputs | "
        + " | ".join(f"{n}: on reconstructions (× inputs) | {n}: kNN-5 of means" for n in names)
        + " |",
        "|---|---|---|" + "---|---|" * len(names),
    ]
    for set_name in [*SET_NAMES, "all"]:
        first = results[names[0]][set_name]
        cells = [
            f"{r[set_name]['reconstructions']:.3f} ({r[set_name]['ratio']:.2f}×) | {r[set_name]['knn5']:.3f}"
            for r in results.values()
        ]
        lines.append(f"| {set_name} | {first['images']} | {first['inputs']:.3f} | " + " | ".join(cells) + " |")
    return lines


# --------------------------------------------------------------------------- what each kind buys

DISTORTION_KINDS = ("rotation", "scale", "shear", "shift", "thickness", "elastic")
ABLATION_TRAIN_FLAGS = "--weight-decay 0.1"  # the bundled mnist-z8's, bar its epochs and distortions


def ablation_runs() -> dict[str, list[str]]:
    """Each ablation run's distortion flags: none, the handwriting recipe's (all), each kind alone."""
    recipe = RECIPES["handwriting"]
    runs = {"none": [], "all": ["--recipe", "handwriting"]}
    for kind in DISTORTION_KINDS:
        runs[kind] = [f"--distort-{kind}", str(recipe[f"distort_{kind}"])]
    return runs


def finished(folder: Path) -> bool:
    metrics = folder / "metrics.json"
    return metrics.exists() and json.loads(metrics.read_text()).get("final", False)


def train_runs(runs: dict[str, list[str]], folder: Path, args: argparse.Namespace) -> None:
    """Train each of RUNS into FOLDER/name, args.jobs at a time on one thread each; a finished
    run is kept, an unfinished one trained again from its start."""
    pending = [name for name in runs if not finished(folder / name)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    running: list[tuple[str, subprocess.Popen]] = []
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            shutil.rmtree(folder / name, ignore_errors=True)
            command = [sys.executable, "-m", "training", "train", "--out", str(folder / name), "--quiet"]
            command += ["--epochs", str(args.ablation_epochs), *shlex.split(args.train_flags), *runs[name]]
            command += ["--data-dir", args.data_dir] if args.data_dir else []
            print(f"training {name}: {' '.join(runs[name]) or 'no distortion'}", flush=True)
            running.append((name, subprocess.Popen(command, cwd=ROOT, env=env)))
        time.sleep(2)
        for name, process in [r for r in running if r[1].poll() is not None]:
            running.remove((name, process))
            if process.returncode:
                raise SystemExit(
                    f"the {name} run failed (exit status {process.returncode}); its folder: {folder / name}"
                )


def ablation_lines(results: dict, epochs: int) -> list[str]:
    lines = [
        f"What each kind of distortion buys, {time.strftime('%Y-%m-%d')}: mnist-z8's recipe for {epochs} epochs, "
        "with no distortion, each kind alone at the handwriting recipe's size, and all of them; "
        "reconstructions of digits from elsewhere recognised, as a share of their inputs (all "
        "three sets), kNN-5 of their means, and MNIST's own test figures",
        "",
        "| distortion | fonts | strokes | pad | all | kNN-5, all | MNIST test MSE | MNIST kNN-5 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ratios = " | ".join(f"{r[s]['ratio']:.2f}×" for s in (*SET_NAMES, "all"))
        lines.append(f"| {name} | {ratios} | {r['all']['knn5']:.3f} | {r['mnist_mse']:.5f} | {r['mnist_knn5']:.4f} |")
    return lines


def ablation(args: argparse.Namespace) -> dict:
    folder = Path(args.runs)
    runs = ablation_runs()
    train_runs(runs, folder, args)
    models = {name: training.load_model(folder / name) for name in runs}
    kit = measuring_kit(next(iter(models.values())), args)
    results = {}
    for name, model in models.items():
        results[name] = measure(model, kit)
        metrics = json.loads((folder / name / "metrics.json").read_text())
        results[name].update(mnist_mse=metrics["mse_per_pixel"], mnist_knn5=metrics["knn5_accuracy"])
    result = {"date": time.strftime("%Y-%m-%d"), "epochs": args.ablation_epochs, "flags": runs, "results": results}
    result["classifier_test_accuracy"] = kit["accuracy"]
    write_report(args.out, args.name + "_ablation", result, ablation_lines(results, args.ablation_epochs))
    return result


# --------------------------------------------------------------------------- the command


def measuring_kit(model: training.ConvVAE, args: argparse.Namespace) -> dict:
    """What every measurement uses: MNIST's training split ("train"), the classifier and its test
    accuracy ("accuracy"), the prepared digits from elsewhere by set name ("x", "labels") and
    the classifier's accuracy on each set and on all ("inputs_accuracy"; "labels" has "all" too)."""
    train, test = checkpoint_data(model, args.data_dir)
    classifier = train_classifier(train.images, train.labels, 10, args.epochs, seed=0).requires_grad_(False)
    accuracy = float((classifier(test.images).argmax(1) == test.labels).float().mean())
    sets = {name: read_set(name) for name in SET_NAMES}
    x = {name: prepared(images) for name, (images, _) in sets.items()}
    labels = {name: torch.from_numpy(labels) for name, (_, labels) in sets.items()}
    with torch.inference_mode():
        right = {name: classifier(x[name]).argmax(1) == labels[name] for name in SET_NAMES}
    right["all"], labels["all"] = torch.cat(list(right.values())), torch.cat(list(labels.values()))
    inputs_accuracy = {name: float(r.float().mean()) for name, r in right.items()}
    kit = {"train": train, "classifier": classifier, "accuracy": accuracy, "x": x, "labels": labels}
    return kit | {"inputs_accuracy": inputs_accuracy}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "checkpoints",
        nargs="+",
        help="digit models to measure; `make` to render the sets; `ablation` to train and "
        "measure a run per kind of distortion",
    )
    parser.add_argument("--data-dir", help="MNIST, for the classifier and the training means")
    parser.add_argument("--epochs", type=int, default=2, help="the classifier's training epochs")
    parser.add_argument("--ablation-epochs", type=int, default=30, help="each ablation run's training epochs")
    parser.add_argument("--jobs", type=int, default=2, help="ablation runs trained at once, one thread each")
    parser.add_argument("--train-flags", default=ABLATION_TRAIN_FLAGS, help="the ablation runs' other training flags")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "handwriting-ablation"), help="the ablation's runs")
    parser.add_argument("--name", default="handwriting")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    if args.checkpoints == ["make"]:
        make()
        return None
    if args.checkpoints == ["ablation"]:
        return ablation(args)
    models = {Path(path).name: training.load_model(path) for path in args.checkpoints}
    if any(m.config.num_classes for m in models.values()):
        raise SystemExit("handwriting.py measures unconditional digit models.")
    kit = measuring_kit(next(iter(models.values())), args)
    results = {model_name: measure(model, kit) for model_name, model in models.items()}
    result = {"date": time.strftime("%Y-%m-%d"), "classifier_test_accuracy": kit["accuracy"], "results": results}
    write_report(args.out, args.name, result, report_lines(list(models), results, kit["accuracy"]))
    return result


if __name__ == "__main__":
    main()
