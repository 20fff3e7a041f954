"""The policy update: response log-probabilities, advantages, PPO/KL loss, one optimiser step.

Advantages and losses are the shared maths in ``nemo_coreward.rl``; this module only
feeds them. What it adds is how log-probabilities are computed cheaply and exactly:

- Shared prefix. The n rollouts of a prompt share it, so the prompt runs once per prompt
  (with gradients), its KV cache is repeated n times and the responses run on top of it.
  Gradients flow through the repeated cache into the prompt pass, so this is the same
  function (and gradient) as n full forwards, at the cost of one prompt pass per prompt
  instead of n; a test checks the equality against plain full-sequence forwards.
- Logits only where a response token is predicted (``logits_to_keep=1`` on the prompt
  pass; the response pass feeds all but the last response token).
- On-policy (``epochs`` 1, the recipe's single optimiser step per batch): the old
  log-probabilities are the current ones detached, ratio = 1, so no extra forward. With
  ``epochs`` > 1 they come from one no-grad pass before the first epoch.
- Micro-batches (``micro_batch_prompts`` prompts with all their rollouts) accumulate
  gradients. Each micro-batch loss is weighted by its share of the aggregation's
  denominator (tokens for token-mean, responses for the sequence means), so the
  accumulated gradient equals the full batch's for any micro-batch size.

Deviation: the paper sums a token-mean loss per side (J_original + J_rephrased); here
the token mean runs over both sides at once (about half the paper's gradient scale when
both sides have equally long responses; the lr absorbs it).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from nemo_coreward.embedded.model import cache_kwarg, output_cache
from nemo_coreward.embedded.rollout import Autocast, Rollouts, positions, trim_left
from nemo_coreward.rl import (ADVANTAGES, LossConfig, compute_policy_loss, token_entropy,
                              token_logprobs)

# How a micro-batch's share of an aggregation's denominator is measured.
_SHARES: dict[str, Callable[[Tensor], Tensor]] = {
    "token-mean": lambda mask: mask.sum(),
    "seq-mean-token-mean": lambda mask: mask.any(-1).sum(),
    "seq-mean-token-sum": lambda mask: mask.any(-1).sum(),
}


@dataclass(frozen=True)
class UpdateConfig:
    """advantage: an ``ADVANTAGES`` name (grpo | dr_grpo | rloo), groups = (pair, side).
    micro_batch_prompts: prompts per micro-batch (each with its n rollouts).
    epochs: optimiser steps per batch (1 = on-policy, the recipe)."""

    advantage: str = "grpo"
    adv_eps: float = 1e-6
    micro_batch_prompts: int = 4
    epochs: int = 1

    def __post_init__(self) -> None:
        ADVANTAGES.get(self.advantage)  # raises listing the valid names
        if self.micro_batch_prompts < 1 or self.epochs < 1:
            raise ValueError("update.micro_batch_prompts and update.epochs must be >= 1")


def sequence_logprobs(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, response_ids: Tensor,
                      response_mask: Tensor, n: int, *, with_entropy: bool = False
                      ) -> tuple[Tensor, Optional[Tensor]]:
    """log p(response token t | prompt, response < t), (Q*n, R) from prompts (Q, P).

    Returns (logp, entropy or None), both (Q*n, R) float32, R the given response width.
    Responses are prompt-major: rows i*n .. i*n+n-1 answer prompt i.
    """
    ids, mask = trim_left(prompt_ids, prompt_mask)
    pos = positions(mask)
    width = response_ids.shape[1]
    head = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=width > 1,
                 logits_to_keep=1)
    logits = head.logits[:, -1:].repeat_interleave(n, 0)  # predicts response token 0
    if width > 1:
        cache = output_cache(head)
        cache.batch_repeat_interleave(n)
        full_mask = torch.cat([mask.repeat_interleave(n, 0), response_mask[:, :-1].long()], 1)
        r_pos = pos[:, -1:].repeat_interleave(n, 0) + torch.arange(1, width, device=pos.device)
        tail = model(input_ids=response_ids[:, :-1], attention_mask=full_mask, position_ids=r_pos,
                     **{cache_kwarg(model): cache})
        logits = torch.cat([logits, tail.logits], 1)
    logp = token_logprobs(logits, response_ids)
    return logp, token_entropy(logits) if with_entropy else None


def advantages_for(rewards: Tensor, group_keys: list, cfg: UpdateConfig) -> Tensor:
    from nemo_coreward.rl import group_ids_from_keys

    return ADVANTAGES.get(cfg.advantage)(rewards, group_ids_from_keys(group_keys), eps=cfg.adv_eps)


def _slices(num_prompts: int, per: int) -> list[tuple[int, int]]:
    return [(q, min(q + per, num_prompts)) for q in range(0, num_prompts, per)]


def _micro(r: Rollouts, q0: int, q1: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    rows = slice(q0 * r.n, q1 * r.n)
    rmask = r.response_mask[rows]
    used = rmask.any(0)
    width = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
    return (r.prompt_ids[q0:q1], r.prompt_mask[q0:q1], r.response_ids[rows, :width],
            rmask[:, :width])


@torch.no_grad()
def frozen_logprobs(model: Any, r: Rollouts, per: int,
                    autocast: Autocast = None) -> list[Tensor]:
    """No-grad log-probs per micro-batch (reference/teacher, or old policy)."""
    out = []
    for q0, q1 in _slices(r.prompt_ids.shape[0], per):
        with autocast() if autocast else contextlib.nullcontext():
            out.append(sequence_logprobs(model, *_micro(r, q0, q1), r.n)[0])
    return out


def update_policy(fabric: Any, model: Any, optimizer: torch.optim.Optimizer, rollouts: Rollouts,
                  advantages: Tensor, loss_cfg: LossConfig, cfg: UpdateConfig, grad_clip: float,
                  reference: Any = None, ref_autocast: Autocast = None
                  ) -> dict[str, float]:
    """``cfg.epochs`` optimiser steps on one batch; returns averaged loss metrics."""
    if loss_cfg.agg not in _SHARES:
        raise ValueError(f"loss.agg {loss_cfg.agg!r}: micro-batching supports {list(_SHARES)}")
    share_of = _SHARES[loss_cfg.agg]
    per = cfg.micro_batch_prompts
    slices = _slices(rollouts.prompt_ids.shape[0], per)
    total = share_of(rollouts.response_mask).clamp(min=1).float()
    ref = None
    if reference is not None and loss_cfg.kl_coef > 0:
        ref = frozen_logprobs(reference, rollouts, per, ref_autocast)
    old = frozen_logprobs(model, rollouts, per) if cfg.epochs > 1 else None
    advantages = advantages.to(rollouts.response_ids.device)
    sums: dict[str, float] = {}
    model.train()
    for _ in range(cfg.epochs):
        optimizer.zero_grad(set_to_none=True)
        for i, (q0, q1) in enumerate(slices):
            p_ids, p_mask, r_ids, r_mask = _micro(rollouts, q0, q1)
            logp, ent = sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask, rollouts.n,
                                          with_entropy=loss_cfg.entropy_coef != 0)
            old_lp = old[i] if old is not None else logp.detach()
            loss, metrics = compute_policy_loss(
                logp, old_lp, ref[i] if ref is not None else None,
                advantages[q0 * rollouts.n:q1 * rollouts.n], r_mask, loss_cfg, entropy=ent)
            share = float(share_of(r_mask) / total)
            fabric.backward(loss * share)
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value * share / cfg.epochs
        norm = fabric.clip_gradients(model, optimizer, max_norm=grad_clip or float("inf"))
        sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(norm) / cfg.epochs
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return sums
