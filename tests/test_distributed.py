"""training.distributed.start: which process group and device each torchrun process takes.
The gloo path trains for real in tests/test_train.py; NCCL needs two GPUs, so its choice is
checked here with the process group and the device switch recorded instead of made."""

import pytest
import torch

from training import distributed


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict:
    calls: dict = {}
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist,
        "init_process_group",
        lambda backend, device_id=None: calls.update(backend=backend, device_id=device_id),
    )
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.setdefault("device", device))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    return calls


def torchrun_env(monkeypatch: pytest.MonkeyPatch, rank: int, world: int, local_rank: int) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))


def test_gpu_processes_join_by_nccl_each_on_its_local_gpu(monkeypatch: pytest.MonkeyPatch, recorded: dict) -> None:
    # the second machine's third process: global rank 10 of 16, GPU 2 of its machine
    torchrun_env(monkeypatch, rank=10, world=16, local_rank=2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    processes, device = distributed.start(torch.device("cuda"))
    assert processes == distributed.Processes(rank=10, world=16, local_rank=2)
    assert not processes.main and processes.parallel
    assert device == torch.device("cuda", 2)
    assert recorded == {"backend": "nccl", "device": torch.device("cuda", 2), "device_id": torch.device("cuda", 2)}


def test_cpu_processes_join_by_gloo_and_keep_the_cpu(monkeypatch: pytest.MonkeyPatch, recorded: dict) -> None:
    torchrun_env(monkeypatch, rank=0, world=2, local_rank=0)
    processes, device = distributed.start(torch.device("cpu"))
    assert processes.main and processes.world == 2
    assert device == torch.device("cpu")
    assert recorded == {"backend": "gloo", "device_id": None}  # no GPU to switch to


def test_without_torchrun_training_is_one_ordinary_process(monkeypatch: pytest.MonkeyPatch, recorded: dict) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    processes, device = distributed.start(torch.device("cuda"))
    assert processes == distributed.Processes() and not processes.parallel
    assert device == torch.device("cuda")  # left as asked: no rank picks a GPU
    assert recorded == {}  # no process group


@pytest.mark.parametrize("local_rank", [0, 1])
def test_more_gpu_processes_than_gpus_stop_every_process_with_the_flag_to_pass(
    monkeypatch: pytest.MonkeyPatch, recorded: dict, local_rank: int
) -> None:
    # `torchrun --nproc-per-node 2` on a machine with one GPU: NCCL would refuse the second
    # process on the same GPU with its own error; each process says what to pass instead
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    torchrun_env(monkeypatch, rank=local_rank, world=2, local_rank=local_rank)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(
        ValueError,
        match=r"^torchrun started 2 processes on this machine, which has 1 GPU: "
        r".*--nproc-per-node 1 \(or --device cpu",
    ):
        distributed.start(torch.device("cuda"))
    assert recorded == {}  # no process group joined, no device switched
