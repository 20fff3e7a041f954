"""Score a step's rollouts with the shared reward, in-process or through the reward server.

The trainer never computes a reward itself: it turns decoded responses into ``Rollout``
records and calls ``nemo_coreward.reward.score_rollouts`` (or the server client, which
returns the same ``ScoredBatch``). What a reward needs beyond the policy's responses is
declared by ``reward_spec(name)``; the trainer reads those flags and never branches on a
reward's name.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nemo_coreward.embedded.data import Prompt
from nemo_coreward.embedded.rollout import Rollouts
from nemo_coreward.reward import REWARDS, RewardConfig, Rollout, ScoredBatch


@dataclass(frozen=True)
class RewardSection:
    """The ``reward`` section: a ``RewardConfig`` plus where it runs.

    server_url: null scores in-process; an address (http://127.0.0.1:5590) sends the
    rollouts to ``coreward serve`` with ``server_timeout_s`` per request and
    ``server_retries`` retries.
    """

    name: str = "co_reward"
    equivalence: str = "exact"
    fallbacks: tuple[str, ...] = ()
    timeout_s: float = 1.0
    server_url: str | None = None
    server_timeout_s: float = 60.0
    server_retries: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "fallbacks", tuple(self.fallbacks))
        if self.name not in REWARDS:
            raise ValueError(f"reward.name: unknown reward {self.name!r}; valid: "
                             f"{', '.join(REWARDS.names())}")
        self.reward_config()  # validates equivalence, fallbacks, timeout_s
        if self.server_retries < 0:
            raise ValueError(f"reward.server_retries must be >= 0, got {self.server_retries}")

    def reward_config(self) -> RewardConfig:
        return RewardConfig(name=self.name, equivalence=self.equivalence,
                            fallbacks=self.fallbacks, timeout_s=self.timeout_s)


def to_rollouts(prompts: Sequence[Prompt], rollouts: Rollouts) -> list[Rollout]:
    """Reward records in the rollouts' order (prompt-major, n per prompt)."""
    if len(rollouts.texts) != len(prompts) * rollouts.n:
        raise ValueError(f"{len(rollouts.texts)} responses for {len(prompts)} prompts x "
                         f"n={rollouts.n}")
    sc = rollouts.self_certainty.tolist() if rollouts.self_certainty is not None else None
    ent = rollouts.entropy.tolist() if rollouts.entropy is not None else None
    out = []
    for i, text in enumerate(rollouts.texts):
        p = prompts[i // rollouts.n]
        out.append(Rollout(pair_id=p.pair_id, side=p.side, response=text, ground_truth=p.answer,
                           self_certainty=sc[i] if sc else None,
                           entropy=ent[i] if ent else None))
    return out


class Scorer:
    """``score(policy, teacher)`` with this run's reward, through ``server.make_scorer``'s
    backend: the reward server when ``server_url`` is set, in-process otherwise."""

    def __init__(self, section: RewardSection) -> None:
        from nemo_coreward.server.client import make_scorer

        self.section = section
        self.config = section.reward_config()
        options = ({"timeout_s": section.server_timeout_s, "retries": section.server_retries}
                   if section.server_url else {})
        self._backend = make_scorer(section.server_url, **options)

    def score(self, policy: Sequence[Rollout],
              teacher: Sequence[Rollout] | None = None) -> ScoredBatch:
        return self._backend.score(policy, self.config, teacher=teacher)
