"""Records that flow in and out of every reward.

A reward scores *policy* rollouts. Each rollout belongs to a group, the n rollouts of one
side of one pair: ``(pair_id, side)``, side 0 being the original question and 1..k its
rephrasings. Pseudo labels are voted in another group of rollouts (the twin's, a
teacher's, or the group itself), so every trainer and the server hand the reward the same
flat list of records and get back one ``Score`` per record, in order.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

PairId = Hashable  # str or int as the caller gave it; returned unchanged


@dataclass(frozen=True)
class Rollout:
    """One sampled response to one side of one pair.

    ``ground_truth`` is never used by a label-free reward; it only feeds accuracy
    metrics (and the ``ground_truth`` baseline). ``self_certainty`` and ``entropy`` are
    the response's mean per-token statistics (see ``nemo_coreward.rl.token_stats``),
    needed only by the logit-based baselines. ``answer`` is the final answer when the
    caller has already extracted it (``reward.graded.final_answer``, with the same
    fallbacks, as the server's client does); the response is then not read.
    """

    pair_id: PairId
    side: int
    response: str
    ground_truth: str | None = None
    self_certainty: float | None = None
    entropy: float | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Score:
    """The reward of one rollout and why.

    ``label`` is the pseudo label (or ground truth) the answer was compared with, ``""``
    when there was none. ``failure`` names why a rollout scored 0 for a reason other than
    disagreeing: ``"no_answer"``, ``"empty_label"``, ``"grader_timeout"``; ``None``
    otherwise.
    """

    reward: float
    answer: str
    label: str
    failure: str | None = None


@dataclass(frozen=True)
class ScoredBatch:
    """Scores in input order, plus collapse metrics for the whole batch."""

    scores: list[Score]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def rewards(self) -> list[float]:
        return [s.reward for s in self.scores]
