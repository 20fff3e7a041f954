"""The slowly-moving teacher of Co-rewarding-II: weight averaging and its alpha schedule.

Co-rewarding-II (arXiv 2508.00410 v2+, official code ``Co-rewarding-II/verl/workers/
sharding_manager/fsdp_vllm.py``) takes pseudo labels from the rollouts of a teacher
whose weights trail the policy: on every update step, before the teacher generates,
teacher <- alpha * policy + (1 - alpha) * teacher, with alpha annealed by a cosine from
alpha_start to alpha_end. The teacher is the reference model, so the KL loss also
pulls towards it. These functions are framework-neutral: a trainer calls
``is_update_step`` and ``alpha_at`` and hands ``ema_update_`` the two models (or their
local shards' state dicts).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Weights = Mapping[str, Tensor] | nn.Module

__all__ = ["TeacherConfig", "alpha_at", "ema_update_", "is_update_step"]


def _check_alpha(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def alpha_at(
    step: int,
    total_steps: int,
    alpha_start: float,
    alpha_end: float,
    constant: float | None = None,
) -> float:
    """Cosine-annealed averaging weight for training step ``step`` (1-based).

    alpha(step) = alpha_end + (alpha_start - alpha_end) * (1 + cos(pi * t / T)) / 2,
    t = clip(step - 1, 0, T), T = total_steps: alpha_start at step 1, alpha_end from step
    T + 1 on, as the official ``update_alpha``. ``constant``, when given, overrides the
    schedule (the official ``alpha`` option). Official defaults: 0.01 -> 1e-5.
    """
    if constant is not None:
        _check_alpha("constant alpha", constant)
        return float(constant)
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    _check_alpha("alpha_start", alpha_start)
    _check_alpha("alpha_end", alpha_end)
    t = min(max(step - 1, 0), total_steps)
    cosine = 1.0 + math.cos(math.pi * t / total_steps)
    return alpha_end + 0.5 * (alpha_start - alpha_end) * cosine


def is_update_step(step: int, interval: int, enabled: bool = True) -> bool:
    """Whether the teacher moves at ``step``: enabled, step > 0 and step % interval == 0."""
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"update interval must be a positive int, got {interval!r}")
    return bool(enabled) and step > 0 and step % interval == 0


def _tensors(weights: Weights, role: str) -> Mapping[str, Tensor]:
    if isinstance(weights, nn.Module):
        return dict(weights.named_parameters())
    if isinstance(weights, Mapping):
        return weights
    raise TypeError(f"{role} must be an nn.Module or a mapping of name -> tensor, "
                    f"got {type(weights).__name__}")


def _check_match(teacher: Mapping[str, Tensor], policy: Mapping[str, Tensor]) -> None:
    missing = sorted(set(teacher) - set(policy))
    extra = sorted(set(policy) - set(teacher))
    if missing or extra:
        raise ValueError(
            "ema_update_: teacher and policy weights differ in names; "
            f"only in teacher: {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
            f"only in policy: {extra[:10]}{' ...' if len(extra) > 10 else ''}"
        )
    for name, t in teacher.items():
        p = policy[name]
        if not isinstance(t, Tensor) or not isinstance(p, Tensor):
            raise TypeError(f"ema_update_: {name!r} is not a tensor on both sides")
        if t.shape != p.shape:
            raise ValueError(f"ema_update_: shape mismatch for {name!r}: teacher "
                             f"{tuple(t.shape)} vs policy {tuple(p.shape)}")


@torch.no_grad()
def ema_update_(teacher: Weights, policy: Weights, alpha: float) -> None:
    """In place: teacher <- alpha * policy + (1 - alpha) * teacher, for every tensor.

    Accepts modules (their ``named_parameters()``, which lists tied weights once, as the
    official code averages parameters only) or mappings such as state dicts; names and
    shapes must match exactly, otherwise ValueError names the offenders (the official
    code skips them silently, which would leave part of the teacher frozen unnoticed).
    Computed in float32 and written back in the teacher's dtype and device; the policy
    may live elsewhere or in another dtype. In a mapping, entries that alias one storage
    (tied weights) are updated once, and non-floating entries (integer buffers such as
    counters) are left unchanged: an average of integers is not defined.

    Precision: with a bfloat16 teacher, a change smaller than half a bf16 step
    (|alpha * (policy - teacher)| < 2^-9 |teacher|) rounds away, so with the official
    alpha (0.01 -> 1e-5) a bf16 teacher barely moves. Keep the teacher in float32 to
    reproduce the schedule's intent.
    """
    _check_alpha("alpha", alpha)
    t_map = _tensors(teacher, "teacher")
    p_map = _tensors(policy, "policy")
    _check_match(t_map, p_map)
    seen: set[tuple[int, torch.dtype, tuple[int, ...], tuple[int, ...]]] = set()
    for name, t in t_map.items():
        if not t.dtype.is_floating_point or t.numel() == 0:
            continue
        alias = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()))
        if alias in seen:
            continue
        seen.add(alias)
        p32 = p_map[name].detach().to(device=t.device, dtype=torch.float32)
        if t.dtype == torch.float32:
            t.lerp_(p32, alpha)
        else:
            t.copy_(t.float().lerp_(p32, alpha))


@dataclass(frozen=True)
class TeacherConfig:
    """Teacher averaging knobs, defaults from ``Co-rewarding-II/run_corewarding-II.sh``.

    enabled: move the teacher at all (False: a frozen reference, as in Co-Reward).
    update_interval: move it every this many steps. alpha_start/alpha_end: the cosine
    schedule's ends. alpha: a constant that overrides the schedule.
    """

    enabled: bool = True
    update_interval: int = 1
    alpha_start: float = 0.01
    alpha_end: float = 1e-5
    alpha: float | None = None

    def __post_init__(self) -> None:
        interval = self.update_interval
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"TeacherConfig.update_interval must be a positive int, "
                             f"got {self.update_interval!r}")
        for key in ("alpha_start", "alpha_end", "alpha"):
            value = getattr(self, key)
            if value is not None:
                try:
                    _check_alpha(key, value)
                except ValueError as err:
                    raise ValueError(f"TeacherConfig.{err}") from None

    def alpha_at(self, step: int, total_steps: int) -> float:
        """This config's alpha at ``step`` of a ``total_steps`` run (see ``alpha_at``)."""
        return alpha_at(step, total_steps, self.alpha_start, self.alpha_end, self.alpha)

    def should_update(self, step: int) -> bool:
        """Whether the teacher moves at ``step`` (see ``is_update_step``)."""
        return is_update_step(step, self.update_interval, self.enabled)
