"""Per-token statistics from logits, computed in chunks over positions to bound memory.

Logits are (B, T, V): B sequences, T positions, V vocabulary entries (150k for Qwen).
A float32 copy of all of them at once is B*T*V*4 bytes (16 x 3,072 x 151,936 x 4 = 30 GB),
so each function upcasts and reduces ``chunk_size`` positions at a time: the temporaries
are B*chunk_size*V float32 values. Every result is float32 (B, T), whatever the logits'
dtype (bf16 log-softmax loses about 3 significant digits).

Under autograd the chunking bounds only the forward temporaries: backward still keeps
each chunk's float32 input. The gradient path (the policy's logprobs and, with an
entropy bonus, its entropy) therefore costs one float32 copy of the logits; the no-grad
paths (old/reference logprobs, the self-certainty and entropy rewards) stay bounded.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

DEFAULT_CHUNK = 128

__all__ = [
    "DEFAULT_CHUNK",
    "masked_sequence_mean",
    "token_entropy",
    "token_logprobs",
    "token_self_certainty",
]


def _check_logits(logits: Tensor, chunk_size: int) -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 3:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be (B, T, V), got {shape}")
    if not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def _chunked(logits: Tensor, chunk_size: int, fn: Callable[[Tensor, int], Tensor]) -> Tensor:
    """Apply ``fn(float32 chunk (B, c, V), start) -> (B, c)`` over T and concatenate."""
    _check_logits(logits, chunk_size)
    B, T, _ = logits.shape
    if T == 0:
        return logits.new_zeros((B, 0), dtype=torch.float32)
    parts = [fn(logits[:, s : s + chunk_size].float(), s) for s in range(0, T, chunk_size)]
    return torch.cat(parts, dim=1)


def token_logprobs(logits: Tensor, tokens: Tensor, *, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """log p(tokens[b, t] | context) = z[tokens] - logsumexp(z); (B, T, V), (B, T) -> (B, T).

    ``logits[:, t]`` must already be the distribution that produced ``tokens[:, t]``
    (shift by one before calling for causal LM outputs).
    """
    _check_logits(logits, chunk_size)
    if tokens.shape != logits.shape[:2]:
        raise ValueError(f"tokens {tuple(tokens.shape)} must be (B, T) = {tuple(logits.shape[:2])}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must be integer ids, got {tokens.dtype}")
    V = logits.shape[-1]
    if tokens.numel() and not (0 <= int(tokens.min()) and int(tokens.max()) < V):
        raise ValueError(f"token ids must lie in [0, {V}), got range "
                         f"[{int(tokens.min())}, {int(tokens.max())}]")
    ids = tokens.to(device=logits.device, dtype=torch.long)

    def chunk(z: Tensor, s: int) -> Tensor:
        picked = z.gather(-1, ids[:, s : s + z.shape[1], None]).squeeze(-1)
        return picked - torch.logsumexp(z, dim=-1)

    return _chunked(logits, chunk_size, chunk)


def token_entropy(logits: Tensor, *, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """Entropy of the next-token distribution, H = -sum_v p_v log p_v; (B, T, V) -> (B, T).

    Summed as -sum p (z - logsumexp z), not as logsumexp(z) - sum p z (verl's form):
    the latter subtracts two large numbers and loses ~1e-5 relative in float32 on
    peaked distributions. Logits of -inf (a masked vocabulary entry) have p = 0 and
    contribute 0, not NaN. Used for the entropy bonus and the entropy baseline reward
    (RENT / EM-RL).
    """

    def chunk(z: Tensor, s: int) -> Tensor:
        logp = z - torch.logsumexp(z, dim=-1, keepdim=True)
        p = torch.exp(logp)
        return -torch.where(p > 0, p * logp, torch.zeros((), device=z.device)).sum(-1)

    return _chunked(logits, chunk_size, chunk)


def token_self_certainty(logits: Tensor, *, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """Self-certainty per token, logsumexp(z) - mean_v z_v; (B, T, V) -> (B, T).

    Intuitor (arXiv 2505.19590) defines self-certainty as KL(U || p) with U uniform over
    the V entries: sum_v (1/V) log((1/V) / p_v) = logsumexp(z) - mean(z) - log V. The
    constant log V is dropped, as Intuitor's code does; it shifts every token equally
    and cancels in any within-group normalisation. A -inf logit gives +inf (p_v = 0
    makes KL(U || p) infinite).
    """

    def chunk(z: Tensor, s: int) -> Tensor:
        return torch.logsumexp(z, dim=-1) - z.mean(dim=-1)

    return _chunked(logits, chunk_size, chunk)


def masked_sequence_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of values over each sequence's masked-in positions; (B, T), (B, T) -> (B,).

    Turns per-token statistics into one number per response (the self-certainty and
    entropy rewards). A sequence with no position gives 0, not NaN, so one empty
    response cannot poison a batch's rewards; callers that must tell it apart check
    ``mask.any(-1)``.
    """
    if values.dim() != 2 or mask.shape != values.shape:
        raise ValueError(f"masked_sequence_mean needs values (B, T) and a mask of the same "
                         f"shape, got {tuple(values.shape)} and {tuple(mask.shape)}")
    on = mask.to(device=values.device) != 0
    total = torch.where(on, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return total.sum(-1) / on.sum(-1).clamp(min=1).to(values.dtype)
