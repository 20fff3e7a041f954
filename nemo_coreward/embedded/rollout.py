"""Batched sampling of n responses per prompt with Hugging Face ``generate``.

Speed on a small CPU comes from not repeating work, not from a custom decoder:
- Shared prefill: the n rollouts of a prompt share its KV cache. The prompt (all but its
  last token) is run once per prompt, the cache is repeated n times
  (``Cache.batch_repeat_interleave``) and ``generate`` continues from it, so prefill costs
  1/n of what ``num_return_sequences=n`` costs (on SmolLM2 with a one-shot prompt,
  prefill is most of the work of a 40-token rollout).
- ``torch.inference_mode`` throughout; logits only for the last position.
- Token statistics (self-certainty, entropy) for the logit-based rewards are read off the
  raw next-token logits *during* generation by a logits processor that runs before the
  temperature/top-k/top-p warpers, instead of a second forward pass.

Layout: prompts are left-padded (Q, P); responses are right-padded (Q*n, R) in
prompt-major order (the n rollouts of prompt 0, then of prompt 1, ...). A response ends
with its first EOS token, which is part of the response (the policy chose it); what
follows is padding, masked out.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Optional

import torch
from torch import Tensor

from nemo_coreward.embedded.model import cache_kwarg, output_cache
from nemo_coreward.rl import masked_sequence_mean, token_entropy, token_self_certainty

Autocast = Optional[Callable[[], ContextManager]]
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class SamplingConfig:
    """n: rollouts per prompt. temperature/top_p/top_k: the sampler (top_k 0 = off).
    max_new_tokens: response budget. max_prompt_tokens: longer prompts are an error.
    batch_size: at most this many sequences per ``generate`` call. dtype: the weights
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
    self_certainty: Optional[Tensor] = None  # (Q*n,) mean over response tokens
    entropy: Optional[Tensor] = None  # (Q*n,)

    @property
    def num_tokens(self) -> int:
        return int(self.response_mask.sum())


def encode_prompts(tokenizer: Any, texts: list[str], max_tokens: int,
                   device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Left-padded (Q, P) ids and mask. Chat-template text already holds its special
    tokens, so none are added again (Llama 3 would otherwise get two BOS)."""
    add_special = not getattr(tokenizer, "chat_template", None)
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special)
    lengths = enc["attention_mask"].sum(-1)
    if int(lengths.max()) > max_tokens:
        i = int(lengths.argmax())
        raise ValueError(f"prompt {i} has {int(lengths[i])} tokens, more than "
                         f"rollout.max_prompt_tokens={max_tokens}: {texts[i][:80]!r}...")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def trim_left(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop leading columns that are padding in every row."""
    used = mask.bool().any(0)
    start = int(used.float().argmax()) if bool(used.any()) else ids.shape[1]
    return ids[:, start:], mask[:, start:]


def positions(mask: Tensor) -> Tensor:
    """Position ids of a left-padded batch: 0 at each row's first real token."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class _StatsRecorder:
    """Logits processor that records per-token self-certainty and entropy of the raw
    next-token distribution, (B,) per step, and returns the scores unchanged."""

    def __init__(self) -> None:
        self.self_certainty: list[Tensor] = []
        self.entropy: list[Tensor] = []

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        z = scores[:, None, :]
        self.self_certainty.append(token_self_certainty(z)[:, 0])
        self.entropy.append(token_entropy(z)[:, 0])
        return scores


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


def _generation_config(cfg: SamplingConfig, greedy: bool, max_new: int, eos: list[int],
                       pad: int) -> Any:
    from transformers import GenerationConfig

    if greedy:
        return GenerationConfig(do_sample=False, max_new_tokens=max_new, eos_token_id=eos,
                                pad_token_id=pad)
    return GenerationConfig(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                            top_k=cfg.top_k, max_new_tokens=max_new, eos_token_id=eos,
                            pad_token_id=pad)


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
    n: Optional[int] = None,
    greedy: bool = False,
    max_new_tokens: Optional[int] = None,
    token_stats: bool = False,
    autocast: Autocast = None,
) -> Rollouts:
    """n responses per prompt (``cfg.n`` unless given; greedy implies one).

    Generation runs under ``torch.inference_mode``; the returned tensors are copied out
    of it, because inference tensors cannot be saved for the backward pass that the
    update later runs on these token ids. ``autocast`` is a factory of the precision
    context (Fabric's ``fabric.autocast``), entered once per ``generate`` call.
    """
    n = 1 if greedy else (n or cfg.n)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [
                _sample_chunk(model, tokenizer, prompt_ids[s:s + per_call],
                              prompt_mask[s:s + per_call], cfg, n, greedy,
                              max_new_tokens or cfg.max_new_tokens, token_stats, autocast)
                for per_call in [max(1, cfg.batch_size // n)]
                for s in range(0, prompt_ids.shape[0], per_call)
            ]
    finally:
        model.train(was_training)
    pad = tokenizer.pad_token_id
    response_ids = _pad_cat([p[0] for p in parts], pad).clone()
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
                    self_certainty=stats[0], entropy=stats[1])


def _sample_chunk(model: Any, tokenizer: Any, prompt_ids: Tensor, prompt_mask: Tensor,
                  cfg: SamplingConfig, n: int, greedy: bool, max_new: int, token_stats: bool,
                  autocast: Autocast) -> tuple[Tensor, Tensor, Any, Any]:
    """One ``generate`` call: (response ids, response mask, self-certainty, entropy)."""
    eos = eos_ids(model, tokenizer)
    gen_cfg = _generation_config(cfg, greedy, max_new, eos, tokenizer.pad_token_id)
    ids, mask = trim_left(prompt_ids, prompt_mask)
    recorder = _StatsRecorder() if token_stats else None
    processors = None
    if recorder is not None:
        from transformers import LogitsProcessorList

        processors = LogitsProcessorList([recorder])
    with autocast() if autocast else contextlib.nullcontext():
        extra: dict[str, Any] = {}
        if ids.shape[1] > 1:  # shared prefill of all but the last prompt token
            head = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
                         position_ids=positions(mask[:, :-1]), use_cache=True, logits_to_keep=1)
            cache = output_cache(head)
            if n > 1:
                cache.batch_repeat_interleave(n)
            extra[cache_kwarg(model)] = cache
        out = model.generate(
            input_ids=ids.repeat_interleave(n, 0),
            attention_mask=mask.repeat_interleave(n, 0),
            generation_config=gen_cfg,
            logits_processor=processors,
            **extra,
        )
    resp = out[:, ids.shape[1]:]
    rmask = _response_mask(resp, eos)
    if recorder is None:
        return resp, rmask, None, None
    steps = resp.shape[1]
    sc = masked_sequence_mean(torch.stack(recorder.self_certainty[:steps], 1).float(), rmask)
    ent = masked_sequence_mean(torch.stack(recorder.entropy[:steps], 1).float(), rmask)
    return resp, rmask, sc, ent
