"""GRPO advantages in the shape NeMo-Aligner's REINFORCE actor consumes.

NeMo-Aligner's actor loss is ``-logp * (rewards_with_kl - baseline)`` (masked mean), so any
advantage A can be fed to it unchanged by writing ``baseline = rewards_with_kl - A``. The
advantage itself comes from ``nemo_coreward.rl.ADVANTAGES`` (one implementation shared with
the embedded trainer), grouped per side of each pair, ``(pair_id, side)``, as Co-Reward
computes GRPO separately for the question and for its rephrasing. Nothing here imports
NeMo: the trainer calls these on plain tensors.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from nemo_coreward.rl import ADVANTAGES, kl_penalty, masked_sequence_mean

__all__ = ["ReinforceTerms", "consumed_after_step", "rollout_group_ids", "reinforce_terms",
           "sequence_kl"]


class ReinforceTerms(NamedTuple):
    """rewards_with_kl (N,), baseline (N,), advantages (N,) = rewards_with_kl - baseline."""

    rewards_with_kl: Tensor
    baseline: Tensor
    advantages: Tensor


def rollout_group_ids(pair_ids: Tensor, sides: Tensor) -> Tensor:
    """Dense group ids (N,) long, one per distinct (pair_id, side), from (N,) integer tensors.

    Grouping by explicit keys rather than by identical prompt tokens (NeMo-Aligner's
    ``calculate_rloo_baseline``) keeps two different pairs apart even when their prompts
    tokenise alike, and keeps a pair's sides apart although they share an answer.
    """
    if pair_ids.shape != sides.shape or pair_ids.dim() != 1:
        raise ValueError(f"pair_ids and sides must be (N,) tensors of one shape, got "
                         f"{tuple(pair_ids.shape)} and {tuple(sides.shape)}")
    keys = torch.stack([pair_ids.long(), sides.long()], dim=1)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    return inverse


def sequence_kl(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, kind: str) -> Tensor:
    """Per-response mean KL estimate (B,) from token log-probs (B, T) under ``mask`` (B, T)."""
    return masked_sequence_mean(kl_penalty(logprobs, ref_logprobs, kind), mask)


def reinforce_terms(rewards: Tensor, pair_ids: Tensor, sides: Tensor, *, estimator: str = "grpo",
                    eps: float = 1e-6, kl: Tensor | None = None, kl_coef: float = 0.0
                    ) -> ReinforceTerms:
    """Advantages per (pair, side) group, written as NeMo-Aligner's two REINFORCE terms.

    shaped = rewards - kl_coef * kl (when ``kl`` (N,) is given: the KL-in-reward mode);
    A = ADVANTAGES[estimator](shaped, group ids); baseline = shaped - A.
    Shapes: rewards, pair_ids, sides, kl all (N,). float32 out.
    """
    rewards = rewards.float()
    shaped = rewards if kl is None else rewards - kl_coef * kl.to(rewards)
    groups = rollout_group_ids(pair_ids, sides).to(rewards.device)
    advantages = ADVANTAGES.get(estimator)(shaped, groups, eps=eps).to(shaped.dtype)
    return ReinforceTerms(shaped, shaped - advantages, advantages)


def consumed_after_step(consumed_samples: int, pairs_per_step: int, rollouts_in_step: int,
                        rollouts_per_pair: int) -> int:
    """consumed_samples after one step, counted in dataset items (pairs), not rollouts.

    NeMo-Aligner 0.7.0 adds the number of rollouts, so its sampler, which counts dataset
    items, skips (rollouts_per_pair - 1) of every rollouts_per_pair prompts and a resumed
    run starts at the wrong place. The rollout count is checked against the layout so a
    dropped or duplicated micro-batch fails loudly instead of skewing the count.
    """
    if rollouts_in_step != pairs_per_step * rollouts_per_pair:
        raise RuntimeError(
            f"step produced {rollouts_in_step} rollouts, expected {pairs_per_step} pairs x "
            f"{rollouts_per_pair} rollouts per pair = {pairs_per_step * rollouts_per_pair}")
    return consumed_samples + pairs_per_step
