"""Prompts that start alike are run alike once: the shared-prefix layout and its forward pass.

Every prompt of a step starts with the same tokens (chat template, system turn, the
one-shot example): on the CPU demo 60-70 of a prompt's ~75 tokens. A causal model's keys
and values of those tokens depend only on the tokens and their positions, so they are
computed once (batch 1) and the cache is repeated for every prompt; only each prompt's
own tail runs per prompt. Under autograd the repeat is differentiable, so the gradient of
the shared part is the sum over the prompts that use it, as with separate forwards.

Layout (``regroup``): the longest common token prefix first, in the same columns for every
prompt, then each prompt's tail left-padded. The padding then sits in the middle of a row;
the attention mask hides it and position ids count real tokens only
(``positions``), so every real token sees exactly what it sees in an unpadded forward.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nemo_coreward.embedded.model import cache_kwarg, output_cache


def positions(mask: Tensor) -> Tensor:
    """Position ids of a padded batch: each real token's index among its row's real tokens
    (padding gets its neighbour's, unused since it is masked)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def trim_left(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop leading columns that are padding in every row."""
    used = mask.bool().any(0)
    start = int(used.float().argmax()) if bool(used.any()) else ids.shape[1]
    return ids[:, start:], mask[:, start:]


def shared_columns(ids: Tensor, mask: Tensor) -> int:
    """Leading columns that are real and equal in every row, leaving at least one column
    for the per-row pass."""
    same = mask.bool().all(0) & (ids == ids[:1]).all(0)
    run = int(same.long().cumprod(0).sum())
    return min(run, ids.shape[1] - 1)


def regroup(ids: Tensor, mask: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Left-padded (Q, P) prompts -> the shared-prefix layout above, same width."""
    rows = [row[m.bool()] for row, m in zip(ids, mask)]
    lists = [r.tolist() for r in rows]
    common = 0
    shortest = min(len(r) for r in lists)
    while common < shortest and all(r[common] == lists[0][common] for r in lists):
        common += 1
    out_ids = torch.full_like(ids, pad_id)
    out_mask = torch.zeros_like(mask)
    width = ids.shape[1]
    for q, row in enumerate(rows):
        tail = len(row) - common
        out_ids[q, :common] = row[:common]
        out_mask[q, :common] = 1
        out_ids[q, width - tail:] = row[common:]
        out_mask[q, width - tail:] = 1
    return out_ids, out_mask


def prefill(model: Any, ids: Tensor, mask: Tensor, repeats: int = 1) -> tuple[Any, Tensor]:
    """Run (Q, P) prompts, sharing their common leading columns; return the KV cache
    repeated ``repeats`` times per prompt (prompt-major, Q*repeats rows) and the logits
    of every prompt's last position, (Q*repeats, 1, V).

    The same function (and, under autograd, the same gradient) as one full forward per
    prompt and per repeat; tests compare both.
    """
    ids, mask = trim_left(ids, mask)
    pos = positions(mask)
    shared = shared_columns(ids, mask)
    extra: dict[str, Any] = {}
    if shared > 0:
        head = model(input_ids=ids[:1, :shared], attention_mask=mask[:1, :shared],
                     position_ids=pos[:1, :shared], use_cache=True, logits_to_keep=1)
        cache = output_cache(head)
        if ids.shape[0] > 1:
            cache.batch_repeat_interleave(ids.shape[0])
        extra[cache_kwarg(model)] = cache
    out = model(input_ids=ids[:, shared:], attention_mask=mask, position_ids=pos[:, shared:],
                use_cache=True, logits_to_keep=1, **extra)
    cache = output_cache(out)
    logits = out.logits[:, -1:]
    if repeats > 1:
        cache.batch_repeat_interleave(repeats)
        logits = logits.repeat_interleave(repeats, 0)
    return cache, logits


def last_positions(mask: Tensor, repeats: int = 1) -> Tensor:
    """(Q*repeats, 1) position id of each prompt's last token."""
    return positions(mask)[:, -1:].repeat_interleave(repeats, 0)


def continue_from(model: Any, cache: Any, ids: Tensor, attention_mask: Tensor,
                  start: Tensor, logits_to_keep: int | None = None) -> Any:
    """Feed ``ids`` (B, T) after a cache; ``start`` (B, 1) is the position id of the first
    of them; ``attention_mask`` covers the cache and ``ids``."""
    pos = start + torch.arange(ids.shape[1], device=ids.device)
    kwargs: dict[str, Any] = {cache_kwarg(model): cache}
    if logits_to_keep is not None:
        kwargs["logits_to_keep"] = logits_to_keep
    return model(input_ids=ids, attention_mask=attention_mask, position_ids=pos, **kwargs)
