"""The config sections both trainers read, under the same names.

The embedded trainer (``conf/embedded``) and the NeMo-Aligner trainer (``coreward:`` in
``conf/gpt_grpo_coreward*.yaml``) spell a setting the same way: ``advantage.*``, ``kl.*``,
``loss.*`` and ``teacher.*`` (``TeacherConfig``). Each trainer adds only what it alone
does, in a subclass beside its code: the embedded trainer ``loss.entropy_coef``, the
NeMo-Aligner trainer ``loss.ppo_clip``, ``loss.truncated`` and ``teacher.keep_checkpoints``.
The maths takes a ``LossConfig``; ``loss_config`` builds it from the sections.
Errors name the key as ``section.key``, the section's name in both trainers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from nemo_coreward.registry import check_name
from nemo_coreward.rl.advantages import ADVANTAGES
from nemo_coreward.rl.losses import AGGREGATIONS, KL_PENALTIES, LossConfig, _check_clip

KL_MODES = ("loss", "reward", "none")

__all__ = ["KL_MODES", "AdvantageSection", "KLSection", "LossSection", "loss_config"]


@dataclass(frozen=True)
class AdvantageSection:
    """estimator: an ``ADVANTAGES`` name (grpo, dr_grpo, rloo), groups = (pair, side).
    eps: GRPO's std epsilon."""

    estimator: str = "grpo"
    eps: float = 1e-6

    def __post_init__(self) -> None:
        check_name("advantage.estimator", self.estimator, ADVANTAGES)
        if not (0 <= self.eps < math.inf):
            raise ValueError(f"advantage.eps must be finite and >= 0, got {self.eps!r}")


@dataclass(frozen=True)
class KLSection:
    """mode: "loss" (a KL term in the actor loss, the paper's choice), "reward"
    (subtracted from the reward, NeMo-Aligner's way; that trainer only) or "none".
    coef: its weight; 0 (or mode none) keeps no reference log-probs.
    type: a ``KL_PENALTIES`` name (k1, k2, k3/low_var_kl, abs)."""

    mode: str = "loss"
    coef: float = 0.005
    type: str = "low_var_kl"

    def __post_init__(self) -> None:
        check_name("kl.mode", self.mode, KL_MODES)
        if not (0 <= self.coef < math.inf):
            raise ValueError(f"kl.coef must be finite and >= 0, got {self.coef!r}")
        check_name("kl.type", self.type, KL_PENALTIES)

    @property
    def needs_reference(self) -> bool:
        """Reference log-probs are needed: a KL term with a positive weight."""
        return self.mode != "none" and self.coef > 0

    @property
    def loss_coef(self) -> float:
        """The weight of the KL term in the loss (0 unless mode is "loss")."""
        return self.coef if self.mode == "loss" else 0.0


@dataclass(frozen=True)
class LossSection:
    """The loss keys both trainers share.

    clip_low/clip_high: PPO clip range [1 - clip_low, 1 + clip_high].
    agg: an ``AGGREGATIONS`` name for every loss term, exact over each optimiser step's
    batch (side-token-mean-sum is the official J_original + J_rephrased).
    """

    clip_low: float = 0.2
    clip_high: float = 0.2
    agg: str = "token-mean"

    def __post_init__(self) -> None:
        try:
            _check_clip(self.clip_low, self.clip_high)
        except ValueError as err:
            raise ValueError(f"loss.{err}") from None
        check_name("loss.agg", self.agg, AGGREGATIONS)


def loss_config(loss: LossSection, kl: KLSection, entropy_coef: float = 0.0) -> LossConfig:
    """The maths' ``LossConfig`` of a trainer's ``loss`` and ``kl`` sections: the KL weight
    is ``kl.coef`` in mode "loss" and 0 otherwise (mode "reward" shapes the reward instead)."""
    return LossConfig(clip_low=loss.clip_low, clip_high=loss.clip_high, kl_coef=kl.loss_coef,
                      kl_type=kl.type, entropy_coef=entropy_coef, agg=loss.agg)
