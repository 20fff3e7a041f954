"""The policy update: response log-probabilities, advantages, PPO/KL loss, one optimiser step.

Advantages and losses are the shared maths in ``nemo_coreward.rl``; this module only
feeds them. What it adds is how log-probabilities are computed cheaply and exactly:

- Shared prefix (``prefix.prefill``). The tokens all prompts of a micro-batch start
  with run once, each prompt's own tail once per prompt (with gradients), the cache is
  repeated for the n rollouts and the responses run on top of it. Gradients flow through
  the repeated cache into the prompt passes, so this is the same function (and gradient)
  as n full forwards per prompt; a test checks the equality against plain full-sequence
  forwards.
- Logits only where a response token is predicted (``logits_to_keep=1`` on the prompt
  pass; the response pass feeds all but the last response token).
- Temperature: log-probabilities are those of softmax(logits / T), the distribution the
  rollouts were sampled from (``Rollouts.temperature``), for the policy, the old policy
  and the reference alike, as the official trainer (verl) divides the logits by the
  rollout temperature before every log-prob; the same at T = 1.
- On-policy (``epochs`` 1, the recipe's single optimiser step per batch): the old
  log-probabilities are the current ones detached, ratio = 1, so no extra forward. With
  ``epochs`` > 1 they come from one no-grad pass before the first epoch.
- Micro-batches (``micro_batch_prompts`` prompts with all their rollouts) accumulate
  gradients. The aggregation (``loss.agg``: token-mean, seq-mean-token-mean,
  seq-mean-token-sum, or the official Co-Reward side-token-mean-sum, J_original +
  J_rephrased) is per-token weights computed once on the step's whole batch
  (``nemo_coreward.rl.token_weights``), so the accumulated gradient equals the full
  batch's for any micro-batch size and order. Prompts go into micro-batches in order of
  their longest response, so each micro-batch is padded to similar widths.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nemo_coreward.embedded.prefix import continue_from, last_positions, prefill, trim_left
from nemo_coreward.embedded.rollout import Autocast, Rollouts
from nemo_coreward.rl import (
    ADVANTAGES,
    AdvantageSection,
    LossConfig,
    LossSection,
    compute_policy_loss,
    token_entropy,
    token_logprobs,
    token_weights,
)


@dataclass(frozen=True)
class UpdateConfig:
    """micro_batch_prompts: prompts per micro-batch (each with its n rollouts).
    epochs: optimiser steps per batch (1 = on-policy, the recipe).
    The advantage estimator is the ``advantage`` section (``AdvantageSection``)."""

    micro_batch_prompts: int = 4
    epochs: int = 1

    def __post_init__(self) -> None:
        if self.micro_batch_prompts < 1 or self.epochs < 1:
            raise ValueError("update.micro_batch_prompts and update.epochs must be >= 1")


@dataclass(frozen=True)
class EmbeddedLossSection(LossSection):
    """The ``loss`` section: the keys both trainers share (``LossSection``) plus
    entropy_coef: weight of the entropy bonus (subtracted; a negative value minimises
    entropy), which only this trainer computes."""

    entropy_coef: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not math.isfinite(self.entropy_coef):
            raise ValueError(f"loss.entropy_coef must be finite, got {self.entropy_coef!r}")


def sequence_logprobs(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, response_ids: Tensor,
                      response_mask: Tensor, n: int, *, temperature: float = 1.0,
                      with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """log p(response token t | prompt, response < t), (Q*n, R) from prompts (Q, P), of
    the distribution softmax(logits / temperature) the responses were sampled from.

    Returns (logp, entropy or None), both (Q*n, R) float32, R the given response width.
    Responses are prompt-major: rows i*n .. i*n+n-1 answer prompt i.
    """
    ids, mask = trim_left(prompt_ids, prompt_mask)
    cache, first = prefill(model, ids, mask, repeats=n)  # predicts response token 0
    pieces = [first]
    if response_ids.shape[1] > 1:
        full_mask = torch.cat([mask.repeat_interleave(n, 0), response_mask[:, :-1].long()], 1)
        pieces.append(continue_from(model, cache, response_ids[:, :-1], full_mask,
                                    last_positions(mask, n) + 1).logits)
    # Per piece, then concatenated: (B, R) results instead of a copy of (B, R, V) logits.
    scaled = [z / temperature if temperature != 1.0 else z for z in pieces]
    starts = [0, 1][:len(scaled)]
    logp = torch.cat([token_logprobs(z, response_ids[:, s:s + z.shape[1]])
                      for z, s in zip(scaled, starts)], 1)
    entropy = torch.cat([token_entropy(z) for z in scaled], 1) if with_entropy else None
    return logp, entropy


def advantages_for(rewards: Tensor, group_keys: list, cfg: AdvantageSection) -> Tensor:
    from nemo_coreward.rl import group_ids_from_keys

    return ADVANTAGES.get(cfg.estimator)(rewards, group_ids_from_keys(group_keys), eps=cfg.eps)


def micro_batches(r: Rollouts, per: int) -> list[Tensor]:
    """Prompt indices of each micro-batch: ``per`` prompts at a time in order of their
    longest response, so that responses are padded to similar widths (a micro-batch runs
    as wide as its longest response). The aggregation's weights cover the whole batch,
    so the order changes no gradient."""
    q = r.prompt_ids.shape[0]
    longest = r.response_mask.reshape(q, r.n, -1).sum(-1).amax(-1)
    order = sorted(range(q), key=lambda i: (int(longest[i]), i))
    return [torch.tensor(order[i:i + per]) for i in range(0, q, per)]


def _rows(prompts: Tensor, n: int) -> Tensor:
    return (prompts[:, None] * n + torch.arange(n)).reshape(-1)


def _micro(r: Rollouts, prompts: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    rows = _rows(prompts, r.n)
    rmask = r.response_mask[rows]
    used = rmask.any(0)
    width = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
    return (r.prompt_ids[prompts], r.prompt_mask[prompts], r.response_ids[rows, :width],
            rmask[:, :width])


@torch.no_grad()
def frozen_logprobs(model: Any, r: Rollouts, per: int,
                    autocast: Autocast = None) -> list[Tensor]:
    """No-grad log-probs per micro-batch (reference/teacher, or old policy)."""
    out = []
    for prompts in micro_batches(r, per):
        with autocast() if autocast else contextlib.nullcontext():
            out.append(sequence_logprobs(model, *_micro(r, prompts), r.n,
                                         temperature=r.temperature)[0])
    return out


# compute_policy_loss metrics that are token means over a micro-batch's rows (the others
# are its share of the step's aggregate, and add up over micro-batches).
_TOKEN_MEANS = ("clipfrac", "approx_kl", "ratio_mean")


def update_policy(fabric: Any, model: Any, optimizer: torch.optim.Optimizer, rollouts: Rollouts,
                  advantages: Tensor, loss_cfg: LossConfig, cfg: UpdateConfig, grad_clip: float,
                  reference: Any = None, ref_autocast: Autocast = None,
                  sides: Tensor | None = None) -> dict[str, float]:
    """``cfg.epochs`` optimiser steps on one batch; returns averaged loss metrics.

    ``sides`` (Q*n,): each response's side (0 the original question, >= 1 a rephrasing),
    needed by ``loss.agg: side-token-mean-sum``. The aggregation's token weights are
    computed once on the whole batch (``token_weights``), so micro-batches add up to it.
    """
    per = cfg.micro_batch_prompts
    groups = micro_batches(rollouts, per)
    weights = token_weights(rollouts.response_mask, loss_cfg.agg, sides)
    tokens = rollouts.response_mask.sum().clamp(min=1)
    ref = None
    if reference is not None and loss_cfg.kl_coef > 0:
        ref = frozen_logprobs(reference, rollouts, per, ref_autocast)
    old = frozen_logprobs(model, rollouts, per) if cfg.epochs > 1 else None
    advantages = advantages.to(rollouts.response_ids.device)
    sums: dict[str, float] = {}
    model.train()
    for _ in range(cfg.epochs):
        optimizer.zero_grad(set_to_none=True)
        for i, prompts in enumerate(groups):
            p_ids, p_mask, r_ids, r_mask = _micro(rollouts, prompts)
            rows = _rows(prompts, rollouts.n)
            logp, ent = sequence_logprobs(model, p_ids, p_mask, r_ids, r_mask, rollouts.n,
                                          temperature=rollouts.temperature,
                                          with_entropy=loss_cfg.entropy_coef != 0)
            old_lp = old[i] if old is not None else logp.detach()
            loss, metrics = compute_policy_loss(
                logp, old_lp, ref[i] if ref is not None else None, advantages[rows], r_mask,
                loss_cfg, entropy=ent, weights=weights[rows, :r_mask.shape[1]])
            fabric.backward(loss)
            token_share = float(r_mask.sum() / tokens)
            for key, value in metrics.items():
                share = token_share if key in _TOKEN_MEANS else 1.0
                sums[key] = sums.get(key, 0.0) + value * share / cfg.epochs
        norm = fabric.clip_gradients(model, optimizer, max_norm=grad_clip or float("inf"))
        sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(norm) / cfg.epochs
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return sums
