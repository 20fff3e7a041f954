"""The actor loss on one micro-batch, for the NeMo-Aligner actor's Megatron loss function.

NeMo-Aligner's REINFORCE loss is ``-logp * (rewards_with_kl - baseline)``, a token mean over
each micro-batch's mask; Megatron-core then divides every micro-batch's loss by the number
of micro-batches and NeMo averages gradients over DP ranks, so the "token mean" it trains
is a mean of per-micro-batch means. Here every loss term is a weighted sum with the
``loss_weights`` the trainer computed once on the optimiser step's global batch
(``nemo_coreward.rl.token_weights``), and the micro-batch's loss is multiplied by
``scale`` = micro-batches x DP size, which cancels both divisions: the gradient of an
optimiser step is that of the configured aggregate over its global batch.

The loss itself is ``nemo_coreward.rl.compute_policy_loss`` (PPO clip, KL loss term), the
one implementation the embedded trainer uses too; this module only maps NeMo-Aligner's
batch keys onto it. Batch keys (B rows, T = S - 1 token positions): ``mask`` (B, T) the
loss mask (truncated responses already removed when configured), ``loss_weights`` (B, T),
``rewards_with_kl`` and ``baseline`` (B,) whose difference is the advantage,
``prev_logprobs`` (B, T) rollout-time log-probs (only with PPO clipping; otherwise the
current log-probs, detached, are the old policy: ratio 1, the clip never binds), and
``init_logprobs`` (B, T) reference log-probs (only with the KL loss).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from nemo_coreward.rl import LossConfig, compute_policy_loss

__all__ = ["ADDITIVE_METRICS", "LOSS_METRICS", "actor_loss"]

# Metrics every call returns, so all micro-batches (and all ranks) report the same keys.
LOSS_METRICS = ("loss", "pg_loss", "clipfrac", "approx_kl", "ratio_mean", "kl_loss")
# Those that are a micro-batch's share of the step's aggregate: scaled like the loss, so
# their mean over micro-batches and DP ranks is the step's aggregate. The others are
# token means over the micro-batch, averaged as they come.
ADDITIVE_METRICS = ("loss", "pg_loss", "kl_loss")


def actor_loss(logprobs: Tensor, batch: Mapping[str, Tensor], cfg: LossConfig,
               scale: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """(scale x this micro-batch's share of the loss, with grad; metrics as 0-d float32
    tensors named ``LOSS_METRICS``). Without ``loss_weights`` the batch is taken as the
    whole optimiser step (weights ``token_weights(mask, cfg.agg)``)."""
    mask = batch["mask"]
    if logprobs.shape != mask.shape:
        raise ValueError(f"log-probs {tuple(logprobs.shape)} and mask {tuple(mask.shape)} differ")
    advantages = (batch["rewards_with_kl"] - batch["baseline"]).to(logprobs.dtype)
    old = batch.get("prev_logprobs")
    old = logprobs.detach() if old is None else old
    ref = batch.get("init_logprobs")
    loss, metrics = compute_policy_loss(logprobs, old, ref, advantages, mask, cfg,
                                        weights=batch.get("loss_weights"))
    metrics.setdefault("kl_loss", 0.0)
    return loss * scale, {k: torch.tensor(float(metrics[k]) * (scale if k in ADDITIVE_METRICS
                                                                else 1.0), dtype=torch.float32)
                          for k in LOSS_METRICS}
