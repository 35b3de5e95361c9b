"""Adam (Kingma & Ba 2015) as one fused kernel per step, without torch.optim, with optional
decoupled weight decay (AdamW, Loshchilov & Hutter 2019) on the weights but not the biases.

The update is torch.optim.Adam(fused=True)'s, or AdamW(fused=True)'s with the biases in a
group without decay, bit for bit (tests/test_adam.py): the same ATen kernels, called the same
way. What it leaves out is torch.optim's first call, which imports torch._dynamo: a start-up
cost as large as a short run's (docs/training-speed.md).

    optimizer = Adam(model.parameters(), lr=2e-3, weight_decay=0.1)
    loss.backward(); optimizer.step(); optimizer.zero_grad()
    optimizer.lr = 1e-3                        # the schedule sets it before each step
    tensors = optimizer.state_tensors()        # for safetensors; load_state_tensors(tensors) restores
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


class Adam:
    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("Adam got no parameters that require gradients")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be 0 or positive, got {weight_decay}")
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        # decay shrinks each step's weights by lr·weight_decay: matrices and kernels (2+ dims)
        # only, as is usual, since a bias pulled to 0 is no simpler a function
        self.decays = [p.dim() >= 2 for p in self.params]
        # the moments in their parameter's memory layout: the fused kernel walks them in step
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # per parameter, as float32 tensors, as the fused kernel reads them for bias correction
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: Tensor | None = None) -> None:
        """One update of every parameter that has a gradient (others keep their step count).
        LR, a 0-d float32 tensor on the parameters' device, replaces self.lr for this step: the
        kernels then read the rate from device memory, as a CUDA graph's replays need."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        rate = self.lr if lr is None else lr
        torch._foreach_add_([self.steps[i] for i in live], 1)
        if not self.weight_decay:
            self._fused(torch._fused_adam_, live, 0.0, rate)
            return
        self._fused(torch._fused_adamw_, [i for i in live if self.decays[i]], self.weight_decay, rate)
        self._fused(torch._fused_adamw_, [i for i in live if not self.decays[i]], 0.0, rate)

    def _fused(self, kernel, indices: list[int], weight_decay: float, lr: float | Tensor) -> None:
        if not indices:
            return
        kernel(
            [self.params[i] for i in indices],
            [self.params[i].grad for i in indices],
            [self.exp_avgs[i] for i in indices],
            [self.exp_avg_sqs[i] for i in indices],
            [],
            [self.steps[i] for i in indices],
            lr=lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=weight_decay,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    def state_tensors(self) -> dict[str, Tensor]:
        """{'optim.{i}.step' | '.exp_avg' | '.exp_avg_sq': tensor}, i the parameter's index: the
        names torch.optim's state_dict gives them."""
        tensors = {}
        for i, (step, m, v) in enumerate(zip(self.steps, self.exp_avgs, self.exp_avg_sqs)):
            tensors.update({f"optim.{i}.step": step, f"optim.{i}.exp_avg": m, f"optim.{i}.exp_avg_sq": v})
        return tensors

    def hyperparameters(self) -> dict:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Restore what state_tensors() gave; copied into the moments as they are, so each keeps
        its parameter's layout (safetensors stores every tensor in the default one). Raises
        ValueError when TENSORS belong to other parameters."""
        names = {name for name in tensors if name.startswith("optim.")}
        expected = set(self.state_tensors())
        if names != expected:
            raise ValueError(
                f"the optimizer state has {len(names)} tensors where this model's needs "
                f"{len(expected)} ({sorted(names ^ expected)[0]} does not match)"
            )
        for i, p in enumerate(self.params):
            for name, target in (
                (f"optim.{i}.exp_avg", self.exp_avgs[i]),
                (f"optim.{i}.exp_avg_sq", self.exp_avg_sqs[i]),
            ):
                if tensors[name].shape != p.shape:
                    raise ValueError(f"{name} has shape {tuple(tensors[name].shape)}, its parameter {tuple(p.shape)}")
                target.copy_(tensors[name])
            self.steps[i].copy_(tensors[f"optim.{i}.step"].reshape(()))
