"""Which rows of a step's gathered rollout batch each data-parallel rank trains on, in which
optimiser step, and with what loss weight; pure functions on plain tensors.

NeMo-Aligner 0.7.0's ``ReinforceRolloutBatch.chunk`` keeps ``arange(B)``: every DP rank
trains the whole gathered batch, and ``ReinforceTrainer.fit`` splits each rank's rows into
optimiser steps of ``model.global_batch_size / DP`` rows in order, so DP >= 2 trained the
same rows on every replica, in DP optimiser steps per rollout batch instead of one. The
trainer instead scores and computes advantages on the whole gathered batch (twin votes and
group statistics need every row), then gives each rank its 1/DP share of every optimiser
step's rows (``shard_rows``): each row is trained exactly once per step, ``fit``'s split
yields B / global_batch_size optimiser steps (one with the default global_batch_size =
rollouts per step), and each step trains the same rows whatever the DP size.

The loss weights of each optimiser step are computed once on that step's global rows
(``nemo_coreward.rl.token_weights``), so whatever the micro-batching and DP split, every
optimiser step minimises exactly the configured aggregate over its global batch.
"""
from __future__ import annotations

import torch
from torch import Tensor

from nemo_coreward.rl import token_weights

__all__ = ["loss_mask", "optimizer_step_of_rows", "shard_rows", "step_loss_weights"]


def shard_rows(num_rows: int, dp_rank: int, dp_size: int, global_batch_size: int) -> Tensor:
    """Indices (num_rows / dp_size,) long of the gathered batch's rows rank ``dp_rank`` trains.

    Optimiser step j trains the gathered rows [j G, (j + 1) G) (G = global_batch_size);
    rank r takes the r-th of their DP equal parts. ``fit`` cuts each rank's rows in order
    into pieces of G / dp_size, so its j-th piece is exactly its part of step j: every
    step trains the same rows whatever the DP size.
    """
    if dp_size < 1 or global_batch_size % dp_size:
        raise ValueError(f"model.global_batch_size {global_batch_size} cannot be split evenly "
                         f"over {dp_size} data-parallel ranks")
    per_step = global_batch_size // dp_size
    if num_rows % global_batch_size:
        raise ValueError(f"{num_rows} rollouts are not a whole number of optimiser steps of "
                         f"model.global_batch_size {global_batch_size}")
    if not 0 <= dp_rank < dp_size:
        raise ValueError(f"data-parallel rank {dp_rank} outside [0, {dp_size})")
    starts = torch.arange(0, num_rows, global_batch_size) + dp_rank * per_step
    return (starts[:, None] + torch.arange(per_step)[None, :]).flatten()


def optimizer_step_of_rows(num_rows: int, global_batch_size: int) -> Tensor:
    """(num_rows,) long: the optimiser step (0, 1, ...) of the rollout batch each gathered
    row is trained in (``shard_rows``)."""
    return torch.arange(num_rows) // global_batch_size


def loss_mask(mask: Tensor, is_end: Tensor, truncated: str) -> Tensor:
    """The response mask (B, T) the loss uses: "keep" trains truncated responses (is_end
    False, no end token) like any other; "mask" leaves them out of the loss (weight 0, and
    out of every denominator)."""
    if truncated == "keep":
        return mask
    if truncated == "mask":
        return mask * is_end.to(mask.dtype).view(-1, 1)
    raise ValueError(f"truncated {truncated!r} unknown; valid: keep, mask")


def step_loss_weights(mask: Tensor, agg: str, sides: Tensor, step_of_row: Tensor) -> Tensor:
    """Per-token loss weights (B, T) float32 of the gathered batch: ``token_weights`` of
    each optimiser step's rows (mask (B, T), sides and step_of_row (B,))."""
    weights = torch.zeros(mask.shape, dtype=torch.float64, device=mask.device)
    for step in torch.unique(step_of_row).tolist():
        rows = (step_of_row == step).nonzero().squeeze(1).to(mask.device)
        weights[rows] = token_weights(mask[rows], agg, sides[rows].to(mask.device))
    return weights.float()
