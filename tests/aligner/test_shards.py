"""Which rows each DP rank trains, in which optimiser step, with which loss weights."""
from __future__ import annotations

import pytest
import torch

from nemo_coreward.aligner.loss import actor_loss
from nemo_coreward.aligner.shards import (
    loss_mask,
    optimizer_step_of_rows,
    shard_rows,
    step_loss_weights,
)
from nemo_coreward.rl import LossConfig, aggregate, kl_penalty


@pytest.mark.parametrize("dp, gbs", [(1, 12), (2, 12), (2, 6), (3, 6), (4, 4)])
def test_every_row_is_trained_once_in_the_same_step_at_any_dp_size(dp, gbs):
    rows = [shard_rows(12, r, dp, gbs) for r in range(dp)]
    assert sorted(torch.cat(rows).tolist()) == list(range(12))  # each row exactly once
    steps = optimizer_step_of_rows(12, gbs)
    per_piece = gbs // dp
    for r, mine in enumerate(rows):
        # fit cuts a rank's rows in order into pieces of gbs / dp: piece j is step j
        for j, piece in enumerate(mine.split(per_piece)):
            assert steps[piece].tolist() == [j] * per_piece
            assert piece.tolist() == list(range(j * gbs + r * per_piece,
                                                j * gbs + (r + 1) * per_piece))


def test_shard_rows_refuses_uneven_layouts():
    with pytest.raises(ValueError, match="split evenly over 5"):
        shard_rows(12, 0, 5, 12)
    with pytest.raises(ValueError, match="whole number of optimiser steps"):
        shard_rows(12, 0, 2, 8)
    with pytest.raises(ValueError, match="outside"):
        shard_rows(12, 2, 2, 12)


def test_truncated_responses_are_masked_or_kept():
    mask = torch.ones(3, 4)
    is_end = torch.tensor([True, False, True])
    assert (loss_mask(mask, is_end, "mask")[1].sum() == 0
            and loss_mask(mask, is_end, "mask").sum() == 8)
    assert torch.equal(loss_mask(mask, is_end, "keep"), mask)
    with pytest.raises(ValueError, match="valid: keep, mask"):
        loss_mask(mask, is_end, "drop")


def test_step_weights_normalise_each_optimiser_step_on_its_own_rows():
    mask = (torch.arange(5)[None, :] < torch.tensor([5, 1, 2, 4])[:, None]).float()
    sides = torch.tensor([0, 1, 0, 1])
    steps = torch.tensor([0, 0, 1, 1])
    w = step_loss_weights(mask, "token-mean", sides, steps)
    assert w.dtype == torch.float32
    assert w[:2].sum().item() == pytest.approx(1.0) and w[2:].sum().item() == pytest.approx(1.0)
    assert w[0, 0].item() == pytest.approx(1 / 6) and w[2, 0].item() == pytest.approx(1 / 6)
    side = step_loss_weights(mask, "side-token-mean-sum", sides, steps)
    assert side[:2].sum().item() == pytest.approx(2.0)  # one token mean per side, summed


def test_actor_loss_pieces_with_step_weights_add_up_to_the_whole_batch():
    g = torch.Generator().manual_seed(0)
    mask = (torch.arange(6)[None, :] < torch.tensor([6, 2, 4, 1])[:, None]).float()
    sides = torch.tensor([0, 1, 0, 1])
    batch = {"mask": mask, "rewards_with_kl": torch.tensor([1.0, 0.0, 0.5, 1.0]),
             "baseline": torch.tensor([0.5, 0.5, 0.5, 0.5]),
             "init_logprobs": -torch.rand(4, 6, generator=g) - 1,
             "loss_weights": step_loss_weights(mask, "side-token-mean-sum", sides,
                                               torch.zeros(4, dtype=torch.long))}
    logp = -torch.rand(4, 6, generator=g)
    cfg = LossConfig(kl_coef=0.1, agg="side-token-mean-sum")
    pieces = [actor_loss(logp[i:i + 1], {k: v[i:i + 1] for k, v in batch.items()}, cfg, scale=4)
              for i in range(4)]
    adv = (batch["rewards_with_kl"] - batch["baseline"])[:, None].expand(4, 6)
    whole = (aggregate(-adv, mask, cfg.agg, sides)
             + 0.1 * aggregate(kl_penalty(logp, batch["init_logprobs"], "low_var_kl"), mask,
                               cfg.agg, sides))
    # Megatron divides each of the 4 micro-batch losses by 4: the mean of the scaled pieces
    assert sum(loss for loss, _ in pieces).item() / 4 == pytest.approx(whole.item(), rel=1e-6)
    assert sum(float(m["loss"]) for _, m in pieces) / 4 == pytest.approx(whole.item(), rel=1e-6)
    assert all(float(m["clipfrac"]) == 0.0 for _, m in pieces)  # not scaled: a token mean
