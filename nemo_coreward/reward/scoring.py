"""The one entry point every trainer and the server use to score rollouts."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from nemo_coreward.answers import FALLBACKS, MODES, Grader
from nemo_coreward.reward.graded import grade
from nemo_coreward.reward.metrics import collapse_metrics
from nemo_coreward.reward.rewards import REWARDS, reward_spec
from nemo_coreward.reward.types import Rollout, ScoredBatch


@dataclass(frozen=True)
class RewardConfig:
    """Which reward, which answer equivalence, which extraction fallbacks.

    ``timeout_s`` bounds each symbolic comparison (``math_verify`` mode only).
    The defaults reproduce the official Co-Reward reward exactly.
    """

    name: str = "co_reward"
    equivalence: str = "exact"
    fallbacks: tuple[str, ...] = ()
    timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in REWARDS:
            raise ValueError(f"reward.name: unknown reward {self.name!r}; "
                             f"valid: {', '.join(REWARDS.names())}")
        if self.equivalence not in MODES:
            raise ValueError(f"reward.equivalence: unknown mode {self.equivalence!r}; "
                             f"valid: {', '.join(MODES)}")
        bad = [f for f in self.fallbacks if f not in FALLBACKS]
        if bad:
            raise ValueError(f"reward.fallbacks: unknown {bad[0]!r}; valid: {', '.join(FALLBACKS)}")
        if not self.timeout_s > 0:
            raise ValueError(f"reward.timeout_s must be > 0, got {self.timeout_s}")
        object.__setattr__(self, "fallbacks", tuple(self.fallbacks))


_graders: dict[tuple[str, float], Grader] = {}
_graders_lock = threading.Lock()


def grader_for(equivalence: str, timeout_s: float) -> Grader:
    """A process-wide grader per mode, so math-verify's child process and caches are reused."""
    with _graders_lock:
        key = (equivalence, timeout_s)
        if key not in _graders:
            _graders[key] = Grader(equivalence, timeout_s)
        return _graders[key]


def score_rollouts(
    rollouts: Sequence[Rollout],
    config: RewardConfig = RewardConfig(),
    teacher: Sequence[Rollout] | None = None,
) -> ScoredBatch:
    """Score policy ``rollouts`` (any order) with the configured reward.

    ``teacher`` rollouts supply labels for the Co-rewarding-II rewards. Inconsistent
    input (a twin reward with a pair missing a side, no teacher rollouts where needed,
    a missing ground truth or token statistic) raises ``ValueError`` naming the rollout.
    """
    spec = reward_spec(config.name)
    if not rollouts:
        return ScoredBatch([], {"n_rollouts": 0.0})
    if spec.needs_teacher and not teacher:
        raise ValueError(f"reward {config.name!r} needs teacher rollouts; none were given")
    batch = grade(rollouts, teacher or (), grader_for(config.equivalence, config.timeout_s),
                  config.fallbacks)
    scores = spec(batch)
    return ScoredBatch(scores, collapse_metrics(batch, scores))
