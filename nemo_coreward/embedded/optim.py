"""AdamW and its learning-rate schedule (transformers' schedulers, one step per train step).

The paper's recipe: AdamW (0.9, 0.999), weight decay 0.01, lr 3e-6 with a cosine decay
after a linear warm-up over the first 10% of steps, gradient clipping at norm 1.0.
transformers' warm-up starts at lr 0 for the first step (as verl's does); with
``warmup_ratio`` 0 the first step uses the full lr.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

SCHEDULES = ("cosine", "constant", "linear")


@dataclass(frozen=True)
class OptimConfig:
    """lr, AdamW's betas/eps/weight_decay, the schedule (cosine | constant | linear,
    after ``warmup_ratio`` of the steps warming up linearly) and the gradient-norm clip
    (0 = no clipping; the norm is logged either way)."""

    lr: float = 3e-6
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule: {self.schedule!r} is not one of {SCHEDULES}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.grad_clip < 0 or self.weight_decay < 0 or self.eps <= 0:
            raise ValueError("optim.grad_clip and optim.weight_decay must be >= 0, optim.eps > 0")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.AdamW:
    # foreach kernels are the fast path on CPU and GPU alike; fused AdamW is CUDA-first.
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=cfg.lr,
                             betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                             foreach=True)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> Any:
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
    warmup = int(round(cfg.warmup_ratio * total_steps))
    return get_scheduler(name[cfg.schedule], optimizer, num_warmup_steps=warmup,
                         num_training_steps=total_steps)
