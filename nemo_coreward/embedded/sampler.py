"""Next-token choice: Hugging Face's warpers, then one uniform number per sequence.

``warp`` is the distribution Hugging Face ``generate`` samples from (temperature, then
top-k, then top-p, the order and tie rules of its ``TemperatureLogitsWarper``,
``TopKLogitsWarper`` and ``TopPLogitsWarper``; a test compares them).

``draw`` inverts the cumulative distribution at u * total, u uniform in (0, 1]: token i
is chosen when u * total falls in (cdf[i-1], cdf[i]], i.e. with probability p_i, and a
token of probability 0 never (u > 0). ``torch.multinomial``, which ``generate`` uses,
draws one exponential number per vocabulary entry (49k per sequence per token on
SmolLM2, most of a small model's sampling cost on a CPU); here each sequence takes one
number per step, drawn for every sequence of the batch whether it is still running or
not, so what a sequence samples does not depend on which others have finished.
"""
from __future__ import annotations

import torch
from torch import Tensor


def warp(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
         ) -> Tensor:
    """(B, V) raw logits -> float32 logits of the sampling distribution (-inf = removed)."""
    z = logits.float() / temperature
    if 0 < top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p < 1.0:
        sorted_z, order = torch.sort(z, descending=False, dim=-1)
        cum = sorted_z.softmax(-1).cumsum(-1)
        drop = cum <= 1 - top_p
        drop[..., -1:] = False  # keep at least one token
        z = z.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return z


def draw(z: Tensor, u: Tensor) -> Tensor:
    """(B, V) warped logits, (B,) uniforms in (0, 1] -> (B,) token ids with probability
    softmax(z)."""
    probs = torch.softmax(z, dim=-1).double()
    cdf = probs.cumsum(-1)
    target = (u.double() * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target).squeeze(-1).clamp(max=z.shape[-1] - 1)


def uniforms(n: int, device: torch.device | str = "cpu") -> Tensor:
    """n numbers uniform in (0, 1] from torch's global generator."""
    return 1.0 - torch.rand(n, device=device, dtype=torch.float64)
