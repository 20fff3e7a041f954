"""Batched sampling of n responses per prompt: a decode loop on a Hugging Face model.

The loop does what ``generate`` does (KV cache, temperature/top-k/top-p, stop at EOS) and
skips the work ``generate`` repeats:
- Shared prefill (``prefix.prefill``): the tokens every prompt starts with (template,
  system turn, one-shot example) run once per call, each prompt's own tail once per
  prompt, and the cache is repeated for the n rollouts.
- Room for the whole response is reserved in the KV cache once (``kvcache.reserve``)
  instead of every layer's cache being copied by concatenation at every token.
- Finished sequences leave the batch: once a response has its EOS, its rows are dropped
  from the cache, so a step costs the sequences still running, not the longest one.
- One uniform number per sequence per step (``sampler.draw``) instead of
  ``torch.multinomial``'s one exponential per vocabulary entry; drawn for every sequence
  whether running or not, so a sequence's tokens do not depend on which others finished.
- ``torch.inference_mode`` throughout; logits only for the last position.
- Token statistics (self-certainty, entropy) for the logit-based rewards are read off the
  raw next-token logits during the loop instead of a second forward pass.
A test checks the tokens against a plain loop of full forwards without a cache, and
greedy decoding against ``generate``.

Layout: prompts are (Q, P) in the shared-prefix layout of ``prefix.regroup``; responses
are right-padded (Q*n, R) in prompt-major order (the n rollouts of prompt 0, then of
prompt 1, ...). A response ends with its first EOS token, which is part of the response
(the policy chose it); what follows is padding, masked out.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nemo_coreward.embedded.kvcache import reserve
from nemo_coreward.embedded.prefix import continue_from, last_positions, prefill, regroup, trim_left
from nemo_coreward.embedded.sampler import draw, uniforms, warp
from nemo_coreward.rl import masked_sequence_mean, token_entropy, token_self_certainty

Autocast = Callable[[], contextlib.AbstractContextManager] | None
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class SamplingConfig:
    """n: rollouts per prompt. temperature/top_p/top_k: the sampler (top_k 0 = off).
    max_new_tokens: response budget. max_prompt_tokens: longer prompts are an error.
    batch_size: at most this many sequences decoded together. dtype: the weights
    generation runs with: auto (bfloat16 when training computes in bfloat16, else
    float32), float32 or bfloat16; a copy in that dtype is refreshed after every update
    when it differs from the trained weights' dtype."""

    n: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 3072
    max_prompt_tokens: int = 512
    batch_size: int = 64
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"rollout.dtype: {self.dtype!r} is not one of {tuple(DTYPES)}")
        if self.n < 1:
            raise ValueError(f"rollout.n must be >= 1, got {self.n}")
        if not self.temperature > 0:
            raise ValueError(f"rollout.temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"rollout.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"rollout.top_k must be >= 0, got {self.top_k}")
        for key in ("max_new_tokens", "max_prompt_tokens", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"rollout.{key} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class Rollouts:
    """Token ids and texts of Q prompts x n responses (see the module docstring)."""

    prompt_ids: Tensor  # (Q, P) long, left-padded
    prompt_mask: Tensor  # (Q, P) long
    response_ids: Tensor  # (Q*n, R) long, right-padded
    response_mask: Tensor  # (Q*n, R) bool, on up to and including the first EOS
    texts: list[str]
    n: int
    temperature: float = 1.0  # sampled from softmax(logits / temperature); the update's too
    self_certainty: Tensor | None = None  # (Q*n,) mean over response tokens
    entropy: Tensor | None = None  # (Q*n,)

    @property
    def num_tokens(self) -> int:
        return int(self.response_mask.sum())


def encode_prompts(tokenizer: Any, texts: list[str], max_tokens: int,
                   device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(Q, P) ids and mask in the shared-prefix layout (``prefix.regroup``). Chat-template
    text already holds its special tokens, so none are added again (Llama 3 would otherwise
    get two BOS)."""
    add_special = not getattr(tokenizer, "chat_template", None)
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special)
    lengths = enc["attention_mask"].sum(-1)
    if int(lengths.max()) > max_tokens:
        i = int(lengths.argmax())
        raise ValueError(f"prompt {i} has {int(lengths[i])} tokens, more than "
                         f"rollout.max_prompt_tokens={max_tokens}: {texts[i][:80]!r}...")
    ids, mask = regroup(enc["input_ids"], enc["attention_mask"], tokenizer.pad_token_id)
    return ids.to(device), mask.to(device)


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


def _response_mask(resp: Tensor, eos: list[int]) -> Tensor:
    is_eos = torch.isin(resp, torch.tensor(eos, device=resp.device))
    before = is_eos.long().cumsum(-1) - is_eos.long()  # EOS tokens strictly before t
    return before == 0


def _pad_cat(parts: list[Tensor], value: int | bool) -> Tensor:
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=value)
                      for p in parts])


def sample(
    model: Any,
    tokenizer: Any,
    prompt_ids: Tensor,
    prompt_mask: Tensor,
    cfg: SamplingConfig,
    *,
    n: int | None = None,
    greedy: bool = False,
    max_new_tokens: int | None = None,
    token_stats: bool = False,
    autocast: Autocast = None,
) -> Rollouts:
    """n responses per prompt (``cfg.n`` unless given; greedy implies one).

    Runs under ``torch.inference_mode``; the returned tensors are copied out of it,
    because inference tensors cannot be saved for the backward pass that the update later
    runs on these token ids. ``autocast`` is a factory of the precision context (Fabric's
    ``fabric.autocast``), entered once per batch of ``cfg.batch_size`` sequences.
    """
    n = 1 if greedy else (n or cfg.n)
    was_training = model.training
    model.eval()
    eos = eos_ids(model, tokenizer)
    try:
        with torch.inference_mode():
            parts = [
                _decode(model, prompt_ids[s:s + per_call], prompt_mask[s:s + per_call], cfg, n,
                        greedy, max_new_tokens or cfg.max_new_tokens, eos,
                        tokenizer.pad_token_id, token_stats, autocast)
                for per_call in [max(1, cfg.batch_size // n)]
                for s in range(0, prompt_ids.shape[0], per_call)
            ]
    finally:
        model.train(was_training)
    response_ids = _pad_cat([p[0] for p in parts], tokenizer.pad_token_id).clone()
    response_mask = _pad_cat([p[1] for p in parts], False).clone()
    keep = response_mask.any(0)
    width = int(keep.nonzero().max()) + 1 if bool(keep.any()) else 1
    response_ids, response_mask = response_ids[:, :width], response_mask[:, :width]
    texts = tokenizer.batch_decode(
        [row[m].tolist() for row, m in zip(response_ids, response_mask)], skip_special_tokens=True
    )
    stats = [torch.cat([p[k] for p in parts]).clone() if token_stats else None for k in (2, 3)]
    return Rollouts(prompt_ids=prompt_ids, prompt_mask=prompt_mask, response_ids=response_ids,
                    response_mask=response_mask, texts=texts, n=n,
                    temperature=1.0 if greedy else cfg.temperature,
                    self_certainty=stats[0], entropy=stats[1])


def _decode(model: Any, prompt_ids: Tensor, prompt_mask: Tensor, cfg: SamplingConfig, n: int,
            greedy: bool, max_new: int, eos: list[int], pad: int, token_stats: bool,
            autocast: Autocast) -> tuple[Tensor, Tensor, Any, Any]:
    """Q prompts x n responses: (ids (Q*n, R), mask, self-certainty, entropy or None)."""
    ids, mask = trim_left(prompt_ids, prompt_mask)
    rows = ids.shape[0] * n
    device = ids.device
    out = torch.full((rows, max_new), pad, dtype=torch.long, device=device)
    sc = torch.zeros(rows, max_new, device=device) if token_stats else None
    ent = torch.zeros(rows, max_new, device=device) if token_stats else None
    eos_t = torch.tensor(eos, device=device)
    with autocast() if autocast else contextlib.nullcontext():
        cache, logits = prefill(model, ids, mask, repeats=n)
        reserve(cache, max_new)
        logits = logits[:, -1]
        attn = mask.repeat_interleave(n, 0)
        pos = last_positions(mask, n)
        live = torch.arange(rows, device=device)  # batch row -> response row
        for t in range(max_new):
            u = None if greedy else uniforms(rows, device)[live]
            if token_stats:
                z = logits[:, None].float()
                sc[live, t] = token_self_certainty(z)[:, 0]
                ent[live, t] = token_entropy(z)[:, 0]
            nxt = logits.argmax(-1) if greedy else draw(
                warp(logits, cfg.temperature, cfg.top_k, cfg.top_p), u)
            out[live, t] = nxt
            going = ~torch.isin(nxt, eos_t)
            if t == max_new - 1 or not bool(going.any()):
                break
            if not bool(going.all()):
                keep = going.nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                live, nxt, attn, pos = live[keep], nxt[keep], attn[keep], pos[keep]
            attn = torch.cat([attn, attn.new_ones(attn.shape[0], 1)], 1)
            pos = pos + 1
            logits = continue_from(model, cache, nxt[:, None], attn, pos, logits_to_keep=1
                                   ).logits[:, -1]
    rmask = _response_mask(out, eos)
    if not token_stats:
        return out, rmask, None, None
    return out, rmask, masked_sequence_mean(sc, rmask), masked_sequence_mean(ent, rmask)
