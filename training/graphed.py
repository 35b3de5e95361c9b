"""A whole training step as one CUDA graph, replayed step after step.

On a GPU this model's training step is about 150 small kernels (forward, backward, Adam), each
shorter than the CPU's time to launch it from Python, so the GPU mostly waits. Captured once
as a CUDA graph (PyTorch's "whole network capture"), a step is one replay: one launch.

A graph replays fixed kernels on fixed addresses, so whatever changes from step to step lives
in device memory that the graph reads, and the graph itself advances it:

- the epoch's permutation of the training set, its reparameterization noise and, training on
  handwriting's distortions, each image's draws, in buffers refilled once per epoch (pure
  functions of the seed and the epoch, so a run resumed mid-epoch sees what it would have seen);
- the step number, a device counter: it picks the batch out of the permutation and the
  learning rate out of the whole run's schedule, precomputed;
- each step's loss, written to a per-epoch log that the loop reads once per logging window.

Without a GPU (the tests), or with capture=False, the same step runs eagerly: that is how CI
checks the bookkeeping above on a CPU.

    steps = GraphedSteps(model, optimizer, images, labels, batch=512, lr_schedule=schedule,
                         steps_per_epoch=117, loss="bce", beta=1.0, bf16=True, loss_fn=vae_loss)
    steps.start_epoch(epoch_permutation, seed, epoch, first_step)  # (N,) int64 on the CPU
    for _ in range(k): steps.step()
    steps.losses[:k]  # (k,) the batches' summed losses
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from training.adam import Adam
from training.handwriting import PARAMETERS, Distortion, distort
from training.model import ConvVAE, LossParts

WARMUP_STEPS = 3  # eager steps before capture: cuDNN picks its kernels, the allocator sizes its pool


def epoch_noise_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's reparameterization noise (the permutation uses seed·1000003 + epoch)."""
    return seed * 1_000_003 + epoch + 500_009


class GraphedSteps:
    def __init__(
        self,
        model: ConvVAE,
        optimizer: Adam,
        images: Tensor,
        labels: Tensor,
        batch: int,
        lr_schedule: Tensor,
        steps_per_epoch: int,
        loss: str,
        beta: float,
        bf16: bool,
        loss_fn: Callable[..., LossParts],
        capture: bool | None = None,
        distortion: Distortion | None = None,
    ) -> None:
        """IMAGES (N, C, H, W) and LABELS (N,) on the training device; LR_SCHEDULE (S,) float32
        there, one learning rate per step of the run. CAPTURE defaults to "on a CUDA device".
        DISTORTION: the handwriting distortions of each batch, their draws given per epoch."""
        device = images.device
        self.model, self.optimizer, self.images, self.labels = model, optimizer, images, labels
        self.batch, self.steps_per_epoch, self.loss, self.beta, self.bf16 = batch, steps_per_epoch, loss, beta, bf16
        self.loss_fn = loss_fn
        self.capture = device.type == "cuda" if capture is None else capture
        self.device = device
        self.lr_schedule = lr_schedule
        self.permutation = torch.zeros(len(images), dtype=torch.long, device=device)  # (N,)
        self.noise = torch.zeros(steps_per_epoch * batch, model.config.latent_dim, device=device)  # (S·B, D)
        self.losses = torch.zeros(steps_per_epoch, device=device)  # (S,) summed over each batch
        self.step_number = torch.zeros((), dtype=torch.long, device=device)
        self.epoch_start = torch.zeros((), dtype=torch.long, device=device)
        self.offsets = torch.arange(batch, device=device)  # (B,)
        self.distortion = distortion
        self.distortions = torch.zeros(len(images), PARAMETERS, device=device) if distortion else None  # (N, P)
        self.graph: torch.cuda.CUDAGraph | None = None

    def start_epoch(
        self, permutation: Tensor, seed: int, epoch: int, first_step: int, distortions: Tensor | None = None
    ) -> None:
        """Load the epoch's PERMUTATION (N,) (and DISTORTIONS (N, PARAMETERS), the draws of each
        image's distortion), draw its noise and set the step counter to FIRST_STEP, the run's
        step number to be taken next."""
        self.permutation.copy_(permutation)
        if self.distortions is not None:
            self.distortions.copy_(distortions)
        generator = torch.Generator(device=self.device).manual_seed(epoch_noise_seed(seed, epoch))
        self.noise.normal_(generator=generator)
        self.step_number.fill_(first_step)
        self.epoch_start.fill_(epoch * self.steps_per_epoch)

    def step(self) -> None:
        if not self.capture:
            self._step()
            return
        if self.graph is None:
            self._capture()
        self.graph.replay()

    def _step(self) -> None:
        position = self.step_number - self.epoch_start  # () this step's batch within the epoch
        index = position * self.batch + self.offsets  # (B,) into the permutation and the noise
        rows = self.permutation.index_select(0, index)
        x = self.images.index_select(0, rows)
        if self.distortion is not None:
            x = distort(x, self.distortions.index_select(0, rows), self.distortion)
        x = x.contiguous(memory_format=torch.channels_last)
        y = self.labels.index_select(0, rows)
        eps = self.noise.index_select(0, index)
        lr = self.lr_schedule.index_select(0, self.step_number.view(1)).view(())
        # no cast cache: under capture its cached copies would go stale between replays
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            logits, mu, logvar = self.model(x, None, y, eps)
        parts = self.loss_fn(logits, x, mu, logvar, self.loss, self.beta)
        self.optimizer.zero_grad()
        parts.total.div(self.batch).backward()
        self.optimizer.step(lr=lr)
        self.losses.index_copy_(0, position.view(1), parts.total.detach().float().view(1))
        self.step_number.add_(1)

    def _state(self) -> list[Tensor]:
        o = self.optimizer
        return [*o.params, *o.exp_avgs, *o.exp_avg_sqs, *o.steps, self.step_number, self.losses]

    def _capture(self) -> None:
        """Warm up on a side stream (real steps, undone afterwards: the model and the optimizer
        are left as they were), then record one step."""
        with torch.no_grad():
            saved = [t.clone() for t in self._state()]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.step_number.copy_(saved[-2])  # always the same step: inside the epoch's buffers
                self._step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        with torch.no_grad():
            for tensor, value in zip(self._state(), saved):
                tensor.copy_(value)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()
