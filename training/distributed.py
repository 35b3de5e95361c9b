"""Data-parallel training across processes and machines, started by torchrun:

    torchrun --nproc-per-node 2 -m training train --out runs/ddp ...            # one machine
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 \\
             --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m training train ...  # on each machine

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them training is one ordinary process.
NCCL joins GPUs, gloo CPUs. Every process holds the data set and the same seeded permutation
and takes its own slice of each global batch; DistributedDataParallel averages the gradients;
process 0 alone logs, evaluates and writes the checkpoint folder.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1


def start(device: torch.device) -> tuple[Processes, torch.device]:
    """Join the process group torchrun describes (if any); the device this process uses."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes(), device
    processes = Processes(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        # NCCL refuses two processes on one GPU ("Duplicate GPU detected") and a rank past the
        # last GPU dies on an invalid device ordinal: say so in one line, on every process
        gpus = torch.cuda.device_count()
        here = int(os.environ.get("LOCAL_WORLD_SIZE", processes.local_rank + 1))
        if here > gpus:
            raise ValueError(
                f"torchrun started {here} processes on this machine, which has {gpus} "
                f"GPU{'' if gpus == 1 else 's'}: NCCL needs a GPU per process, so pass "
                f"--nproc-per-node {gpus} (or --device cpu to train with gloo)."
            )
        device = torch.device("cuda", processes.local_rank)
    if not dist.is_initialized():
        join(device)
    return processes, device


def join(device: torch.device) -> None:
    """Join the process group that torchrun's variables (or MASTER_ADDR, MASTER_PORT, RANK and
    WORLD_SIZE) describe: NCCL on DEVICE, a GPU, or gloo on the CPU."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # bound to its GPU, so that barriers need not guess the device (torch warns when they do)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    # DistributedDataParallel compares each gradient's strides with its weight's, those of
    # size-1 dimensions included, which address nothing: a one-channel image layer's weight,
    # (32, 1, 3, 3), channels-last, has strides (9, 1, 3, 1) and cuDNN's gradient of it
    # (9, 9, 3, 1), the same memory order, and DDP warned of a layout that "may impair
    # performance" (seen on an H200)
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides", category=UserWarning)


def wait_for_all(processes: Processes) -> None:
    """A barrier: a process must not leave (and close its connections) while another still
    works, or the one still talking to it aborts."""
    if processes.parallel:
        dist.barrier()


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_process(flag: bool, processes: Processes, device: torch.device) -> bool:
    """True on every process when FLAG is true on any (so all stop at the same step)."""
    if not processes.parallel:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def summed(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    """VALUES summed over all processes (the global batch's losses, for logging and NaN checks)."""
    if processes.parallel:
        values = values.clone()
        dist.all_reduce(values)
    return values
