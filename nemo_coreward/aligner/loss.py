"""The actor loss on one micro-batch, for the NeMo-Aligner actor's Megatron loss function.

NeMo-Aligner's REINFORCE loss is ``-logp * (rewards_with_kl - baseline)``, token-mean over
the response mask. That is the PPO-clip surrogate at ratio 1 without a KL term; the
Co-Reward recipe needs the KL as a loss term (k3, coefficient 0.005) and, once a rollout
batch feeds more than one optimiser step, the clipped ratio against the rollout-time
log-probs. Both come from ``nemo_coreward.rl.compute_policy_loss`` (the one implementation
the embedded trainer uses too); this module only maps NeMo-Aligner's batch keys onto it.

Batch keys (B rows, T = S - 1 token positions): ``mask`` (B, T) response mask,
``rewards_with_kl`` and ``baseline`` (B,) whose difference is the advantage,
``prev_logprobs`` (B, T) rollout-time log-probs (only with PPO clipping; otherwise the
current log-probs, detached, are the old policy: ratio 1, the clip never binds), and
``init_logprobs`` (B, T) reference log-probs (only with the KL loss).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from nemo_coreward.rl import LossConfig, compute_policy_loss

__all__ = ["LOSS_METRICS", "actor_loss"]

# Metrics every call returns, so all micro-batches (and all ranks) report the same keys.
LOSS_METRICS = ("loss", "pg_loss", "clipfrac", "approx_kl", "ratio_mean", "kl_loss")


def actor_loss(logprobs: Tensor, batch: Mapping[str, Tensor], cfg: LossConfig
               ) -> tuple[Tensor, dict[str, Tensor]]:
    """(loss scalar with grad, metrics as 0-d float tensors named ``LOSS_METRICS``)."""
    mask = batch["mask"]
    if logprobs.shape != mask.shape:
        raise ValueError(f"log-probs {tuple(logprobs.shape)} and mask {tuple(mask.shape)} differ")
    advantages = (batch["rewards_with_kl"] - batch["baseline"]).to(logprobs.dtype)
    old = batch.get("prev_logprobs")
    old = logprobs.detach() if old is None else old
    ref = batch.get("init_logprobs")
    loss, metrics = compute_policy_loss(logprobs, old, ref, advantages, mask, cfg)
    metrics.setdefault("kl_loss", 0.0)
    return loss, {k: torch.tensor(float(metrics[k]), dtype=torch.float32) for k in LOSS_METRICS}
