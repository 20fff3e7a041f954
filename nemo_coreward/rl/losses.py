"""Policy-gradient losses: PPO clip with asymmetric bounds, KL estimators, aggregation.

All per-token inputs are (B, T): B responses, T response positions, with a response
mask (B, T) (bool or 0/1) that is on for real response tokens. Log-probabilities are of
the sampled tokens. Semantics follow verl's ``core_algos`` (the code Co-Reward and
Co-rewarding-II train with); deviations are named where they occur. Masked positions
never reach a sum (``torch.where``, not multiplication), so a NaN or inf in padding
cannot poison the loss.

Registries: ``AGGREGATIONS`` (``fn(on (B, T) float64 0/1, sides (B,) | None) -> token
weights (B, T)``) and ``KL_PENALTIES`` (``fn(logp, ref_logp) -> (B, T)``), so configs name
them and trainers never branch.

Aggregation API (both trainers):

- ``token_weights(mask, mode="token-mean", sides=None) -> (B, T) float64``: computed ONCE
  on the whole batch of an optimiser step;
- ``weighted_sum(values, mask, weights) -> scalar``: one piece's share;
- ``aggregate(values, mask, mode="token-mean", sides=None) -> scalar``: the whole-batch
  case, = weighted_sum(values, mask, token_weights(mask, mode, sides));
- ``compute_policy_loss(..., weights=None)``: every loss term aggregated by ``weights``.

Splitting a batch into micro-batches or data-parallel shards and summing each piece's
``weighted_sum`` over its rows of the weights gives exactly the whole batch's aggregate,
so a "token-mean" is a token mean over the optimiser step's batch, not a mean of
per-micro-batch means. A trainer whose framework divides each micro-batch's loss by
the micro-batch count (Megatron-core) and averages gradients over data-parallel ranks
multiplies the piece's loss by both counts to cancel them (``aligner/loss.py``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nemo_coreward.registry import Registry, check_name
from nemo_coreward.rl.advantages import expand_to_tokens

AGGREGATIONS: Registry[Callable[[Tensor, Tensor], Tensor]] = Registry("loss aggregation")
KL_PENALTIES: Registry[Callable[[Tensor, Tensor], Tensor]] = Registry("KL estimator")

# exp(20) ~ 4.9e8 is finite in float32 and bfloat16 (logprobs should not be float16, whose
# range ends at 65504); a ratio that large is clipped (A > 0) or already a numerical
# accident. verl uses the same bound.
LOG_RATIO_BOUND = 20.0
# k3 is clamped to [-10, 10] as verl's "low_var_kl": one token far off the reference
# cannot dominate the KL loss (e^20 would otherwise enter the sum).
K3_BOUND = 10.0

__all__ = [
    "AGGREGATIONS",
    "KL_PENALTIES",
    "K3_BOUND",
    "LOG_RATIO_BOUND",
    "LossConfig",
    "aggregate",
    "compute_policy_loss",
    "kl_penalty",
    "ppo_clip_loss",
    "token_weights",
    "weighted_sum",
]


def _on(mask: Tensor, like: Tensor) -> Tensor:
    if mask.shape != like.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match values {tuple(like.shape)}")
    return mask.to(device=like.device) != 0


def _masked(values: Tensor, on: Tensor) -> Tensor:
    return torch.where(on, values, torch.zeros((), dtype=values.dtype, device=values.device))


@AGGREGATIONS.register("token-mean")
def _weights_token_mean(on: Tensor, sides: Tensor | None) -> Tensor:
    return on / on.sum().clamp(min=1)


@AGGREGATIONS.register("seq-mean-token-mean")
def _weights_seq_mean_token_mean(on: Tensor, sides: Tensor | None) -> Tensor:
    per_seq = on.sum(-1, keepdim=True)
    return on / per_seq.clamp(min=1) / on.any(-1).sum().clamp(min=1)


@AGGREGATIONS.register("seq-mean-token-sum")
def _weights_seq_mean_token_sum(on: Tensor, sides: Tensor | None) -> Tensor:
    return on / on.any(-1).sum().clamp(min=1)


@AGGREGATIONS.register("side-token-mean-sum")
def _weights_side_token_mean_sum(on: Tensor, sides: Tensor | None) -> Tensor:
    if sides is None:
        raise ValueError("side-token-mean-sum needs sides (B,): 0 for an original question, "
                         ">= 1 for a rephrasing (compute_policy_loss: pass "
                         "weights=token_weights(mask, 'side-token-mean-sum', sides))")
    if sides.shape != on.shape[:1]:
        raise ValueError(f"sides {tuple(sides.shape)} must be (B,) for mask {tuple(on.shape)}")
    sides = sides.to(device=on.device).long()
    _, inverse = torch.unique(sides, return_inverse=True)
    per_side = torch.zeros(int(inverse.max()) + 1 if sides.numel() else 0, dtype=on.dtype,
                           device=on.device).index_add_(0, inverse, on.sum(-1))
    return on / per_side[inverse].clamp(min=1)[:, None]


def token_weights(mask: Tensor, mode: str = "token-mean", sides: Tensor | None = None) -> Tensor:
    """Per-token weights w (B, T), float64, with aggregate(v, mask, mode, sides) = sum_{b,t} m v w.

    Computed once on the whole (global) batch, the weights make any split of it, into
    micro-batches or data-parallel shards, add up to the batch's aggregate: each piece
    contributes ``weighted_sum(v, mask, w)`` over its own rows. Zero off the mask.
    ``sides`` (B,) integer is needed by "side-token-mean-sum" only.
    """
    if mask.dim() != 2:
        raise ValueError(f"token_weights expects a mask (B, T), got shape {tuple(mask.shape)}")
    on = (mask != 0).to(torch.float64)
    return AGGREGATIONS.get(mode)(on, sides)


def weighted_sum(values: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
    """sum_{b,t} m v w in float32 or wider (in bf16 the weights 1/N would be rounded).

    Masked positions never enter the sum, so a NaN or inf there stays out.
    Shapes: values, mask, weights (B, T).
    """
    on = _on(mask, values)
    if weights.shape != values.shape:
        raise ValueError(f"weights {tuple(weights.shape)} do not match values "
                         f"{tuple(values.shape)}")
    dtype = torch.promote_types(values.dtype, torch.float32)
    weighted = values.to(dtype) * weights.to(device=values.device, dtype=dtype)
    return _masked(weighted, on).sum()


def _token_mean(values: Tensor, on: Tensor) -> Tensor:
    return _masked(values, on).sum() / on.sum().clamp(min=1)


def aggregate(values: Tensor, mask: Tensor, mode: str = "token-mean",
              sides: Tensor | None = None) -> Tensor:
    """Reduce per-token values (B, T) under mask (B, T) to a scalar, as verl's ``agg_loss``.

    - "token-mean":          sum_{b,t} m v / sum_{b,t} m  (every token weighs the same;
                             DAPO, verl's default).
    - "seq-mean-token-mean": mean over sequences of (sum_t m v / sum_t m)  (every response
                             weighs the same; the original GRPO objective).
    - "seq-mean-token-sum":  mean over sequences of sum_t m v  (Dr. GRPO's unnormalised
                             token sum, arXiv 2503.20783).
    - "side-token-mean-sum": sum over sides s of (token mean over the rows with side s);
                             side 0 the original questions, s >= 1 the rephrasings. The
                             official Co-Reward trainer's J_original + J_rephrased
                             (arXiv 2508.00410); needs ``sides`` (B,).

    Equals ``weighted_sum(values, mask, token_weights(mask, mode, sides))``.
    Deviations from verl, all at degenerate inputs only: an empty mask gives 0 (verl:
    0 / 1e-8 = 0 for token-mean, NaN for the seq modes), and sequences with no token are
    left out of the sequence mean (as recent verl does for seq-mean-token-mean), so
    padding rows added to even out micro-batches do not change the loss. The token-mean
    denominator is the exact token count (verl adds 1e-8).
    """
    if values.dim() != 2:
        raise ValueError(f"aggregate expects values (B, T), got shape {tuple(values.shape)}")
    return weighted_sum(values, mask, token_weights(_on(mask, values), mode, sides))


@KL_PENALTIES.register("k1")
def _kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return logp - ref_logp


@KL_PENALTIES.register("k2")
def _kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return 0.5 * (logp - ref_logp).square()


@KL_PENALTIES.register("k3")
@KL_PENALTIES.register("low_var_kl")
def _kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    d = (ref_logp - logp).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    return (torch.exp(d) - d - 1.0).clamp(-K3_BOUND, K3_BOUND)


@KL_PENALTIES.register("abs")
def _kl_abs(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return (logp - ref_logp).abs()


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: str = "low_var_kl") -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled from pi; (B, T) -> (B, T).

    With d = log pi_ref(x) - log pi(x) (Schulman, "Approximating KL Divergence", 2020):
    - "k1":  -d                 unbiased, high variance, can be negative.
    - "k2":  d^2 / 2            biased, low variance, >= 0.
    - "k3" / "low_var_kl": e^d - d - 1, unbiased and >= 0; d clamped to +-20 before exp
      and the result to [-10, 10], as verl (Co-Reward uses it with coefficient 0.005,
      Co-rewarding-II with 0.001).
    - "abs": |d|                verl's "abs" penalty.
    """
    if logp.shape != ref_logp.shape:
        raise ValueError(
            f"logp {tuple(logp.shape)} and ref_logp {tuple(ref_logp.shape)} differ in shape"
        )
    return KL_PENALTIES.get(kind)(logp, ref_logp)


def _ppo_clip(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
    clip_low: float, clip_high: float, weights: Tensor,
) -> tuple[Tensor, dict[str, Tensor]]:
    _check_clip(clip_low, clip_high)
    if logp.dim() != 2 or old_logp.shape != logp.shape:
        raise ValueError(
            f"logp and old_logp must both be (B, T), got {tuple(logp.shape)} and "
            f"{tuple(old_logp.shape)}"
        )
    if advantages.dim() == 1:
        advantages = expand_to_tokens(advantages, mask)
    if advantages.shape != logp.shape:
        raise ValueError(f"advantages {tuple(advantages.shape)} must be (B,) or (B, T) "
                         f"matching logp {tuple(logp.shape)}")
    on = _on(mask, logp)
    adv = advantages.detach()
    log_ratio = (logp - old_logp.detach()).clamp(-LOG_RATIO_BOUND, LOG_RATIO_BOUND)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = weighted_sum(torch.maximum(unclipped, clipped), mask, weights)
    with torch.no_grad():
        metrics = {
            "clipfrac": _token_mean((clipped > unclipped).to(ratio.dtype), on),
            "approx_kl": _token_mean(-log_ratio, on),
            "ratio_mean": _token_mean(ratio, on),
        }
    return loss, metrics


def _check_clip(clip_low: float, clip_high: float) -> None:
    if not 0.0 <= clip_low < 1.0:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low!r}")
    if not (0.0 <= clip_high < math.inf):
        raise ValueError(f"clip_high must be a finite number >= 0, got {clip_high!r}")


def _floats(metrics: dict[str, Tensor]) -> dict[str, float]:
    """One device sync for all metrics instead of one ``.item()`` each."""
    values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).tolist()
    return dict(zip(metrics, values))


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    agg: str = "token-mean",
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate with asymmetric bounds (PPO, arXiv 1707.06347; DAPO's
    clip-higher, arXiv 2503.14476).

    rho = exp(clamp(logp - old_logp, -20, 20)), per token
    L_t = max(-A rho, -A clip(rho, 1 - clip_low, 1 + clip_high)), loss = aggregate(L, mask, agg)

    Shapes: logp, old_logp, mask (B, T); advantages (B,) (broadcast over tokens) or
    (B, T). old_logp and advantages are treated as constants (detached). The log-ratio
    clamp (``LOG_RATIO_BOUND`` = 20, verl's value) keeps exp finite; beyond it the
    gradient is 0, which only happens when the policy has already moved absurdly far.
    Metrics (token means under the mask, whatever ``agg``): ``clipfrac`` (share of
    tokens where the clipped branch binds), ``approx_kl`` (mean of old_logp - logp, k1
    estimate of KL(old || new), as verl's ppo_kl) and ``ratio_mean``. verl's optional
    dual clip (a bound for A < 0) is not included: the recipe takes one optimiser step
    per batch, so rho = 1 and it never binds.
    """
    loss, metrics = _ppo_clip(logp, old_logp, advantages, mask, clip_low, clip_high,
                              token_weights(_on(mask, logp), agg))
    return loss, _floats(metrics)


@dataclass(frozen=True)
class LossConfig:
    """Knobs of the policy loss; defaults are the Co-Reward recipe (math_co_reward.sh).

    clip_low/clip_high: PPO clip range [1 - clip_low, 1 + clip_high] (DAPO uses 0.2/0.28).
    kl_coef: weight of the KL-to-reference loss; 0 disables it (no ref logprobs needed).
    kl_type: a ``KL_PENALTIES`` name. entropy_coef: weight of the entropy bonus
    (subtracted; a negative value minimises entropy). agg: an ``AGGREGATIONS`` name, used
    for the policy, KL and entropy terms alike, as verl does (the official Co-Reward
    J_original + J_rephrased is "side-token-mean-sum", which needs weights from the sides).
    """

    clip_low: float = 0.2
    clip_high: float = 0.2
    kl_coef: float = 0.005
    kl_type: str = "low_var_kl"
    entropy_coef: float = 0.0
    agg: str = "token-mean"

    def __post_init__(self) -> None:
        try:
            _check_clip(self.clip_low, self.clip_high)
        except ValueError as err:
            raise ValueError(f"LossConfig: {err}") from None
        if not 0.0 <= self.kl_coef < math.inf:
            raise ValueError(f"LossConfig.kl_coef must be finite and >= 0, got {self.kl_coef!r}")
        if not math.isfinite(self.entropy_coef):
            raise ValueError(f"LossConfig.entropy_coef must be finite, got {self.entropy_coef!r}")
        check_name("LossConfig.kl_type", self.kl_type, KL_PENALTIES)
        check_name("LossConfig.agg", self.agg, AGGREGATIONS)


def compute_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    cfg: LossConfig,
    entropy: Tensor | None = None,
    weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """loss = PPO-clip + kl_coef * agg(KL(pi || ref)) - entropy_coef * agg(H), as verl's actor.

    Shapes: logp, old_logp, ref_logp, mask, entropy, weights (B, T); advantages (B,) or
    (B, T). Every term is aggregated as ``weighted_sum(term, mask, weights)``; without
    ``weights`` they are ``token_weights(mask, cfg.agg)``, the aggregate over these B rows.
    A caller that splits a batch (micro-batches, data-parallel shards) passes each piece
    its rows of the weights computed once on the whole batch, and the pieces' losses add
    up to the whole batch's; "side-token-mean-sum" always needs them (it needs the sides).
    The KL term (a loss, not a reward penalty, as in GRPO) is added only when
    ``cfg.kl_coef > 0``; ref_logp is then required. When ref_logp is given with
    kl_coef = 0 the KL is still reported as a metric, without gradient. Likewise the
    entropy term needs ``entropy`` only when entropy_coef != 0.
    Metrics: loss, pg_loss, kl_loss, entropy (weighted like the loss: a piece's share),
    and clipfrac, approx_kl, ratio_mean (token means over these rows).
    """
    if weights is None:
        weights = token_weights(_on(mask, logp), cfg.agg)
    loss, metrics = _ppo_clip(logp, old_logp, advantages, mask, cfg.clip_low, cfg.clip_high,
                              weights)
    metrics = {"pg_loss": loss.detach(), **metrics}
    if cfg.kl_coef > 0 and ref_logp is None:
        raise ValueError("compute_policy_loss: kl_coef > 0 needs ref_logp")
    if ref_logp is not None:
        with torch.set_grad_enabled(cfg.kl_coef > 0 and torch.is_grad_enabled()):
            kl = weighted_sum(kl_penalty(logp, ref_logp.detach(), cfg.kl_type), mask, weights)
        if cfg.kl_coef > 0:
            loss = loss + cfg.kl_coef * kl
        metrics["kl_loss"] = kl.detach()
    if cfg.entropy_coef != 0 and entropy is None:
        raise ValueError("compute_policy_loss: entropy_coef != 0 needs entropy")
    if entropy is not None:
        if entropy.shape != logp.shape:
            raise ValueError(f"entropy {tuple(entropy.shape)} must match logp {tuple(logp.shape)}")
        ent = weighted_sum(entropy, mask, weights)
        if cfg.entropy_coef != 0:
            loss = loss - cfg.entropy_coef * ent
        metrics["entropy"] = ent.detach()
    metrics["loss"] = loss.detach()
    return loss, _floats(metrics)
