import subprocess
import sys

import pytest
import torch

from tests.conftest import BUNDLED, ENV, ROOT
from training.evaluate import knn_accuracy, nearest_neighbours


@pytest.mark.parametrize("n_test", [1, 16, 37])  # below, at and across the chunk size
def test_knn_accuracy_matches_a_brute_force_vote(n_test: int) -> None:
    generator = torch.Generator().manual_seed(0)
    train_z = torch.randn(500, 8, generator=generator)
    train_y = torch.randint(0, 4, (500,), generator=generator)
    test_z = torch.randn(n_test, 8, generator=generator)
    test_y = torch.randint(0, 4, (n_test,), generator=generator)
    nearest = torch.cdist(test_z, train_z).topk(5, largest=False).indices  # (n_test, 5)
    votes = torch.stack([torch.bincount(train_y[row], minlength=4) for row in nearest])
    expected = float((votes.argmax(dim=1) == test_y).float().mean())
    assert knn_accuracy(train_z, train_y, test_z, test_y, k=5) == pytest.approx(expected)


def test_knn_accuracy_on_separated_clusters() -> None:
    centres = torch.tensor([[0.0] * 8, [10.0] * 8, [-10.0] * 8])
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat_interleave(50)
    points = centres[labels] + 0.1 * torch.randn(150, 8, generator=generator)
    assert knn_accuracy(points[::2], labels[::2], points[1::2], labels[1::2]) == 1.0
    # labels shuffled against the points: a vote cannot beat chance by much
    wrong = labels[torch.randperm(150, generator=generator)]
    assert knn_accuracy(points[::2], wrong[::2], points[1::2], wrong[1::2]) < 0.6


@pytest.mark.parametrize("n_train,block", [(5, 100), (7, 3), (123, 10), (1000, 100), (1000, 7)])
def test_blocked_search_finds_exactly_the_nearest_points(n_train: int, block: int) -> None:
    generator = torch.Generator().manual_seed(n_train)
    # sorted along one axis, so that a query's neighbours crowd into one or two blocks
    train_z = torch.randn(n_train, 8, generator=generator)
    train_z = train_z[train_z[:, 0].argsort()]
    queries = torch.cat([torch.randn(20, 8, generator=generator), train_z[:: max(1, n_train // 10)] + 1e-3])
    found = nearest_neighbours(train_z, queries, k=5, chunk=7, block=block)
    expected = torch.cdist(queries.double(), train_z.double()).topk(5, largest=False).indices
    assert torch.equal(found.sort(dim=1).values, expected.sort(dim=1).values)


def test_fewer_training_points_than_k_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 5 points"):
        knn_accuracy(
            torch.zeros(4, 8), torch.zeros(4, dtype=torch.long), torch.zeros(2, 8), torch.zeros(2, dtype=torch.long)
        )


def test_the_search_allocates_its_distance_buffer_once() -> None:
    # a fresh distance tensor per chunk fragmented glibc's heap inside the training command: it
    # grew by one chunk's distances per chunk (2.4 GB and 570k page faults for MNIST's kNN-5)
    from torch.profiler import ProfilerActivity, profile

    generator = torch.Generator().manual_seed(0)
    points, queries = torch.randn(20_000, 8, generator=generator), torch.randn(320, 8, generator=generator)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        nearest_neighbours(points, queries, k=5, chunk=16)  # 20 chunks of 16 x 20,000 distances (1.3 MB)
    large = [e.name for e in prof.events() if e.name != "[memory]" and e.cpu_memory_usage >= 1 << 20]
    assert len(large) <= 2, large


@pytest.mark.parametrize(
    "args,message",
    [
        (["evaluate", "--limit", "-5"], "--limit -5: must be 0 (all the test images) or a positive count"),
        (["atlas", "--limit", "-1"], "--limit -1: must be 0 (all the test images) or a positive count"),
        (["anomaly", "--ood", "fashion-mnist", "--limit", "-3"], "--limit -3: must be 0"),
        (["sampler", "--components", "0"], "--components must be at least 1"),
    ],
)
def test_counts_out_of_range_are_refused_before_any_work(args: list[str], message: str) -> None:
    # a negative --limit sliced the last images off (evaluate --limit -5 scored 9,995); sampler
    # --components 0 said "need at least 0 means for 0 components"
    before = {p.name: p.read_bytes() for p in BUNDLED.iterdir()}
    command, *flags = args
    result = subprocess.run(
        [sys.executable, "-m", "training", command, str(BUNDLED), *flags, "--data-dir", "/nonexistent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert {p.name: p.read_bytes() for p in BUNDLED.iterdir()} == before
