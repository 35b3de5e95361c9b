"""Where a CPU training step spends its time: every ATen call of the step of
`python -m training train` (channels-last, bf16 autocast where `--precision auto` picks it,
fused Adam, the default Bernoulli loss, batch 128) timed where it runs, inside the step, and the
same call run again alone on copies of its inputs (warm caches). Writes
bench/results/step_ops.json and .md.

    python bench/step_ops.py --data-dir DIR [--steps 20] [--batch-size 128]

Why not torch.profiler: on this 2-core machine its traces put a ReLU's backward on 128×32×14×14
at 364–510 µs inside the step, when timed around the call it takes 71 µs there, as alone. Here
each call is timed by a TorchDispatchMode (a perf_counter pair around the call); the mode's own
Python between calls is not counted. Timed and untimed steps alternate, so that both see this
machine in the same state, and the untimed steps' median is reported beside the calls' sum.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import write_report  # noqa: E402
from training.adam import Adam  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.loop import bf16_autocast  # noqa: E402
from training.model import ConvVAE, ModelConfig  # noqa: E402
from training.train import init_output_bias, train_step  # noqa: E402

SEED = 0


def _op_key(func: torch._ops.OpOverload, args: tuple) -> str:
    """'convolution_backward (128,64,7,7) (128,32,14,14)': the op and its first two tensors' shapes."""
    shapes = [tuple(a.shape) for a in args[:2] if isinstance(a, torch.Tensor)]
    name = func.overloadpacket.__name__ + ("" if func._overloadname == "default" else "." + func._overloadname)
    return " ".join([name] + ["(" + ",".join(map(str, s)) + ")" for s in shapes])


class _TimedCalls(TorchDispatchMode):
    """Times each ATen call in place; given KEEP, also keeps each call with copies of its inputs, to replay alone."""

    def __init__(self, keep: list | None) -> None:
        super().__init__()
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.keep = keep

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        started = time.perf_counter()
        out = func(*args, **kwargs)
        self.seconds[_op_key(func, args)].append(time.perf_counter() - started)
        if self.keep is not None:  # copies, as the call left them (in-place ops included)
            self.keep.append((func, tree_map(_copy, args), tree_map(_copy, kwargs)))
        return out


def _copy(value: object) -> object:
    return value.clone(memory_format=torch.preserve_format) if isinstance(value, torch.Tensor) else value


def _alone_seconds(calls: list, repeats: int = 7) -> dict[str, float]:
    """Each kept call run again, alone and repeated on the same copies: its median time warm."""
    times: dict[str, list[float]] = defaultdict(list)
    for func, args, kwargs in calls:
        func(*args, **kwargs)  # warm-up; in-place ops only touch the copies
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            func(*args, **kwargs)
            samples.append(time.perf_counter() - started)
        times[_op_key(func, args)].append(statistics.median(samples))
    return {key: statistics.median(v) for key, v in times.items()}


def measure(images: torch.Tensor, batch: int, steps: int, warmup: int) -> dict:
    """IMAGES (N, 1, 28, 28) float32 in [0, 1]. Returns the rows (one per op and shapes) and the
    step's median untimed."""
    torch.manual_seed(SEED)
    model = ConvVAE(ModelConfig()).to(memory_format=torch.channels_last)
    init_output_bias(model, images)
    optimizer = Adam(model.parameters(), lr=2e-3)
    bf16 = bf16_autocast("auto", torch.device("cpu"))
    generator = torch.Generator().manual_seed(SEED)
    model.train()

    def step(mode: TorchDispatchMode | None) -> float:
        rows = torch.randint(0, len(images), (batch,), generator=generator)
        x = images[rows].contiguous(memory_format=torch.channels_last)
        eps = torch.randn((batch, model.config.latent_dim), generator=generator)
        started = time.perf_counter()
        if mode is not None:
            mode.__enter__()
        try:  # the step of `python -m training train`, kernel by kernel
            train_step(model, optimizer, x, None, eps, generator, bf16, "bce", 1.0, batch)
        finally:
            if mode is not None:
                mode.__exit__(None, None, None)
        return time.perf_counter() - started

    for _ in range(warmup):
        step(None)
    kept: list = []
    step(_TimedCalls(keep=kept))  # the calls of one step, kept to replay alone
    timed, untimed = _TimedCalls(keep=None), []
    for _ in range(steps):  # alternating, so that both see this machine in the same state
        untimed.append(step(None))
        step(timed)
    alone = _alone_seconds(kept)
    rows = []
    for key, seconds in timed.seconds.items():
        calls = len(seconds) / steps
        in_step = statistics.median(seconds)
        rows.append(
            {
                "op": key,
                "calls_per_step": calls,
                "in_step_us": in_step * 1e6,
                "per_step_us": in_step * calls * 1e6,
                "alone_us": alone.get(key, float("nan")) * 1e6,
            }
        )
    rows.sort(key=lambda r: -r["per_step_us"])
    return {
        "rows": rows,
        "step_ms_untimed": statistics.median(untimed) * 1e3,
        "ops_per_step": sum(r["calls_per_step"] for r in rows),
        "in_step_ms": sum(r["per_step_us"] for r in rows) / 1e3,
        "alone_ms": sum(r["alone_us"] * r["calls_per_step"] for r in rows) / 1e3,
        "precision": "bf16" if bf16 else "fp32",
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after --warmup untimed ones)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rows", type=int, default=25, help="rows in the markdown table (all go to the JSON)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    train, _ = load_dataset("mnist", args.data_dir)
    result = measure(train.images, args.batch_size, args.steps, args.warmup)
    result.update(
        date=time.strftime("%Y-%m-%d"),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        batch=args.batch_size,
        steps=args.steps,
    )
    rows = result["rows"]
    lines = [
        f"One CPU training step, op by op: {result['date']}, {result['threads']} threads, torch "
        f"{result['torch']}, {result['precision']}, batch {args.batch_size}; medians over {args.steps} steps",
        "",
        f"The step untimed: {result['step_ms_untimed']:.2f} ms (median); its {result['ops_per_step']:.0f} ATen "
        f"calls: {result['in_step_ms']:.2f} ms timed in place, {result['alone_ms']:.2f} ms each run alone.",
        "",
        "| op (first two inputs' shapes) | calls/step | µs per call, in the step "
        "| µs per call, alone (warm) | µs/step |",
        "|---|---|---|---|---|",
    ]
    for r in rows[: args.rows]:
        lines.append(
            f"| {r['op']} | {r['calls_per_step']:g} | {r['in_step_us']:.0f} | {r['alone_us']:.0f} | "
            f"{r['per_step_us']:.0f} |"
        )
    write_report(args.out, "step_ops", result, lines)
    return result


if __name__ == "__main__":
    main()
