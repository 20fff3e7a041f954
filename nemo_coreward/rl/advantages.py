"""Outcome advantages from one scalar reward per rollout, normalised within groups.

Every estimator has one signature, ``fn(rewards (N,), group_ids (N,) long, *, eps) -> (N,)``,
and registers by name in ``ADVANTAGES``. A group is the n rollouts of one side of one pair
(Co-Reward computes GRPO separately for the question and for its rephrasing, so
``(pair_id, side)`` is the group key; see ``group_ids_from_keys``). Group ids are arbitrary
integers, neither contiguous nor sorted; everything is vectorised with ``torch.unique``
and ``index_add_`` (no Python loop over groups).

Group statistics are computed in float64 (N is thousands, the cost is nil, and the
division by a small std amplifies rounding); the result has the rewards' floating dtype
(float32 for integer or bool rewards) and device.

Zero-spread groups (every member has the same reward: all right, all wrong, or all
unlabelled) get exactly 0 from every estimator. The formulas give 0 in exact arithmetic;
in floating point ``r - mean`` can be a rounding residue that GRPO would then divide by
``eps`` (e.g. 1e-17 / 1e-6), so the zero is enforced. This is the only deviation from
verl's ``core_algos`` for groups of size >= 2.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from nemo_coreward.registry import Registry

AdvantageFn = Callable[..., Tensor]
ADVANTAGES: Registry[AdvantageFn] = Registry("advantage estimator")

__all__ = [
    "ADVANTAGES",
    "dr_grpo_advantages",
    "expand_to_tokens",
    "group_ids_from_keys",
    "grpo_advantages",
    "rloo_advantages",
]


class _Groups(NamedTuple):
    """Per-rollout view of the group statistics, all float64 except ``size`` (long)."""

    rewards: Tensor  # (N,) the rewards in float64
    mean: Tensor  # (N,) mean of the rollout's group
    std: Tensor  # (N,) unbiased std of the rollout's group (0 for a group of size 1)
    size: Tensor  # (N,) number of members of the rollout's group
    flat: Tensor  # (N,) bool: every member of the rollout's group has the same reward
    out_dtype: torch.dtype


def _check_inputs(rewards: Tensor, group_ids: Tensor, eps: float) -> None:
    if not isinstance(rewards, Tensor) or rewards.dim() != 1:
        raise ValueError(f"rewards must be a 1-D tensor (N,), got {_shape(rewards)}")
    if not isinstance(group_ids, Tensor) or group_ids.dim() != 1:
        raise ValueError(f"group_ids must be a 1-D tensor (N,), got {_shape(group_ids)}")
    if rewards.shape != group_ids.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group_ids "
                         f"{tuple(group_ids.shape)} differ in length")
    dtype = group_ids.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise ValueError(f"group_ids must be an integer tensor, got dtype {group_ids.dtype}")
    if rewards.device != group_ids.device:
        raise ValueError(f"rewards on {rewards.device} but group_ids on {group_ids.device}")
    if not (eps >= 0.0 and eps < float("inf")):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if rewards.numel() and not bool(torch.isfinite(rewards.double()).all()):
        raise ValueError("rewards contain NaN or inf")


def _shape(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"{type(x).__name__}"


def _groups(rewards: Tensor, group_ids: Tensor, eps: float) -> _Groups:
    _check_inputs(rewards, group_ids, eps)
    out_dtype = rewards.dtype if rewards.dtype.is_floating_point else torch.float32
    r = rewards.detach().to(torch.float64)
    uniq, inv = torch.unique(group_ids, return_inverse=True)  # dense ids 0..G-1
    n_groups = uniq.numel()
    counts = torch.bincount(inv, minlength=n_groups)
    sums = torch.zeros(n_groups, dtype=torch.float64, device=r.device).index_add_(0, inv, r)
    mean = sums / counts.clamp(min=1)
    sq = (r - mean[inv]).square()
    ss = torch.zeros_like(sums).index_add_(0, inv, sq)
    std = (ss / (counts - 1).clamp(min=1)).sqrt()
    g_max = torch.full_like(sums, -torch.inf).scatter_reduce_(0, inv, r, reduce="amax")
    g_min = torch.full_like(sums, torch.inf).scatter_reduce_(0, inv, r, reduce="amin")
    return _Groups(r, mean[inv], std[inv], counts[inv], (g_max == g_min)[inv], out_dtype)


@ADVANTAGES.register("grpo")
def grpo_advantages(rewards: Tensor, group_ids: Tensor, *, eps: float = 1e-6) -> Tensor:
    """GRPO: A_i = (r_i - mean_g) / (std_g + eps), unbiased std (DeepSeekMath, arXiv 2402.03300).

    Shapes: rewards (N,), group_ids (N,) -> (N,). Matches verl's
    ``compute_grpo_outcome_advantage`` (the code Co-Reward and Co-rewarding-II train with).

    Groups of size 1 follow verl: mean 0 and std 1, so A = r / (1 + eps), i.e. the raw
    reward. One sample has no baseline and its unbiased std is undefined (0/0); verl
    passes the reward through rather than emit NaN or silently drop the sample, and
    matching it keeps our runs comparable with the official ones. Singletons only arise
    with n = 1 or after filtering; with Co-Reward's n = 8 they never do.
    Zero-spread groups give exactly 0 (see the module docstring).
    """
    g = _groups(rewards, group_ids, eps)
    single = g.size == 1
    mean = torch.where(single, torch.zeros_like(g.mean), g.mean)
    std = torch.where(single, torch.ones_like(g.std), g.std)
    adv = (g.rewards - mean) / (std + eps)
    adv = torch.where(g.flat & ~single, torch.zeros_like(adv), adv)
    return adv.to(g.out_dtype)


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantages(rewards: Tensor, group_ids: Tensor, *, eps: float = 1e-6) -> Tensor:
    """Dr. GRPO: A_i = r_i - mean_g, no division by the group std (arXiv 2503.20783).

    Shapes: rewards (N,), group_ids (N,) -> (N,). ``eps`` is accepted for the shared
    signature and unused. This is verl's GRPO with ``norm_adv_by_std_in_grpo=False``;
    like it (and like "grpo" here), a group of size 1 has mean 0, so A = r. The paper's
    other change, dropping the 1/|o| length normalisation, is the loss aggregation
    "seq-mean-token-sum" in ``losses.aggregate``, not part of the advantage.
    """
    g = _groups(rewards, group_ids, eps)
    mean = torch.where(g.size == 1, torch.zeros_like(g.mean), g.mean)
    adv = g.rewards - mean
    adv = torch.where(g.flat & (g.size > 1), torch.zeros_like(adv), adv)
    return adv.to(g.out_dtype)


@ADVANTAGES.register("rloo")
def rloo_advantages(rewards: Tensor, group_ids: Tensor, *, eps: float = 1e-6) -> Tensor:
    """RLOO: A_i = r_i - mean of the OTHER members = n/(n-1) * (r_i - mean_g).

    REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al., arXiv 2402.14740).
    Shapes: rewards (N,), group_ids (N,) -> (N,). ``eps`` is unused (shared signature).
    A group of size 1 has no other member and gets 0, as in verl's vectorised RLOO.
    """
    g = _groups(rewards, group_ids, eps)
    n = g.size.to(torch.float64)
    adv = (g.rewards - g.mean) * n / (n - 1).clamp(min=1)
    adv = torch.where(g.flat | (g.size == 1), torch.zeros_like(adv), adv)
    return adv.to(g.out_dtype)


def group_ids_from_keys(
    keys: Sequence[Hashable], device: torch.device | str | None = None
) -> Tensor:
    """Dense group ids (N,) long, numbered in order of first appearance.

    ``group_ids_from_keys([("p1", 0), ("p1", 1), ("p1", 0)]) -> tensor([0, 1, 0])``.
    Keys are compared by ``==``/hash, so ``(pair_id, side)`` tuples give one group per
    side of each pair, which is how Co-Reward groups rollouts.
    """
    table: dict[Hashable, int] = {}
    try:
        ids = [table.setdefault(key, len(table)) for key in keys]
    except TypeError as err:
        raise ValueError(f"group keys must be hashable: {err}") from None
    return torch.tensor(ids, dtype=torch.long, device=device)


def expand_to_tokens(advantages: Tensor, mask: Tensor) -> Tensor:
    """Broadcast one advantage per sequence onto its response tokens.

    Shapes: advantages (B,), mask (B, T) bool or 0/1 -> (B, T) in the advantages'
    dtype, 0 where the mask is off. Outcome rewards give every token of a response the
    same advantage (GRPO, Dr. GRPO and RLOO all do this).
    """
    if advantages.dim() != 1 or mask.dim() != 2 or mask.shape[0] != advantages.shape[0]:
        raise ValueError(
            f"expand_to_tokens needs advantages (B,) and mask (B, T), got "
            f"{tuple(advantages.shape)} and {tuple(mask.shape)}"
        )
    on = mask.to(device=advantages.device) != 0
    return torch.where(on, advantages[:, None], torch.zeros((), dtype=advantages.dtype,
                                                            device=advantages.device))
