"""Every reward, registered by name with one signature: ``fn(GradedBatch) -> list[Score]``.

A voting reward is only a rule for *where its label is voted*: in the twin's group
(Co-Reward), in the group itself (majority / TTRL), in a teacher's group on the same
question (Co-rewarding-II) or on the twin (the combined variant). They all share
``_score_by_vote``, so extraction, equivalence and tie-breaking are identical for all.

A spec also says which sides of a pair each model rolls out, so a trainer reads the
rollout shape off the spec and never branches on a reward's name.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nemo_coreward.registry import Registry
from nemo_coreward.reward.graded import GradedBatch, GroupKey
from nemo_coreward.reward.types import Score


@dataclass(frozen=True)
class RewardSpec:
    """A registered reward and what it needs from the caller."""

    name: str
    fn: Callable[[GradedBatch], list[Score]]
    needs_twins: bool = False
    needs_teacher: bool = False
    needs_token_stats: bool = False
    needs_ground_truth: bool = False
    summary: str = ""
    # Which sides the policy rolls out: "all" (every side the data gives) or "original"
    # (side 0 only); and the teacher: "same" (the policy's sides) or "twins" (sides >= 1).
    policy_sides: str = "all"
    teacher_sides: str = "same"

    def __post_init__(self) -> None:
        if self.policy_sides not in ("all", "original"):
            raise ValueError(f"{self.name}: policy_sides must be all or original")
        if self.teacher_sides not in ("same", "twins"):
            raise ValueError(f"{self.name}: teacher_sides must be same or twins")

    def __call__(self, batch: GradedBatch) -> list[Score]:
        return self.fn(batch)

    def policy_rolls_out(self, side: int) -> bool:
        return self.policy_sides == "all" or side == 0

    def teacher_rolls_out(self, side: int) -> bool:
        """Whether the teacher rolls out this side (only rewards with a teacher ask)."""
        return side > 0 if self.teacher_sides == "twins" else self.policy_rolls_out(side)


REWARDS: Registry[RewardSpec] = Registry("reward")


def register(name: str, summary: str, **needs: bool | str) -> Callable[[Callable], Callable]:
    def decorator(fn: Callable[[GradedBatch], list[Score]]) -> Callable:
        REWARDS.register(name)(RewardSpec(name, fn, summary=summary, **needs))  # type: ignore[arg-type]
        return fn

    return decorator


def reward_spec(name: str) -> RewardSpec:
    return REWARDS.get(name)


def _binary(answer_class: int, label_class: int, answer: str, label: str) -> Score:
    if label_class < 0:
        return Score(0.0, answer, label, "empty_label")
    if answer_class < 0:
        return Score(0.0, answer, label, "no_answer")
    return Score(1.0 if answer_class == label_class else 0.0, answer, label)


def _score_by_vote(
    batch: GradedBatch, label_groups: Callable[[GroupKey], tuple[str, Sequence[GroupKey]]]
) -> list[Score]:
    """Score each policy group against the majority of ``label_groups(group)``.

    ``label_groups`` returns which pool ("policy" or "teacher") and which of its groups
    vote this group's label.
    """
    pol = batch.policy
    scores: list[Score | None] = [None] * len(pol.rollouts)
    for key, members in pol.groups.items():
        pool_name, voter_keys = label_groups(key)
        pool = batch.teacher if pool_name == "teacher" else pol
        vote, voters = pool.vote(voter_keys)
        label = pool.label_text(vote, voters)
        batch.label_class[key] = vote.winner
        for i in members:
            scores[i] = _binary(pol.class_ids[i], vote.winner, pol.answers[i], label)
    return scores  # type: ignore[return-value]


def _twin_keys(batch: GradedBatch, key: GroupKey) -> list[GroupKey]:
    pair_id, side = key
    others = [(pair_id, s) for s in batch.sides[pair_id] if s != side]
    if not others:
        raise ValueError(
            f"pair {pair_id!r} has rollouts for side {side} only; a twin reward needs the "
            "original and at least one rephrasing of every pair in the same batch"
        )
    return others


def _require_teacher(batch: GradedBatch, keys: Sequence[GroupKey], name: str) -> None:
    missing = [k for k in keys if k not in batch.teacher.groups]
    if missing:
        raise ValueError(
            f"{name} needs teacher rollouts for every labelling group; none for "
            f"(pair_id, side) {missing[0]!r} ({len(missing)} missing)"
        )


@register("co_reward", "1 when the answer matches the majority of the OTHER sides of its pair "
          "(Co-Reward / Co-rewarding-I)", needs_twins=True)
def co_reward(batch: GradedBatch) -> list[Score]:
    return _score_by_vote(batch, lambda key: ("policy", _twin_keys(batch, key)))


@register("majority", "1 when the answer matches its own group's majority (TTRL-style "
          "self-consistency)")
def majority(batch: GradedBatch) -> list[Score]:
    return _score_by_vote(batch, lambda key: ("policy", [key]))


@register("co_rewarding_ii", "1 when the answer matches the majority of a slowly updated "
          "teacher's rollouts on the same question (Co-rewarding-II)", needs_teacher=True)
def co_rewarding_ii(batch: GradedBatch) -> list[Score]:
    _require_teacher(batch, list(batch.policy.groups), "co_rewarding_ii")
    return _score_by_vote(batch, lambda key: ("teacher", [key]))


@register("co_rewarding_combined", "1 when the answer matches the majority of the teacher's "
          "rollouts on the OTHER sides of its pair (Co-rewarding-II's rephrased-batch path: "
          "the policy rolls out the question, the teacher its rephrasings)",
          needs_twins=True, needs_teacher=True, policy_sides="original", teacher_sides="twins")
def co_rewarding_combined(batch: GradedBatch) -> list[Score]:
    """Official shape: policy groups ``(p, 0)``, teacher groups ``(p, 1..k)``; the label of
    ``(p, 0)`` is the teacher's majority pooled over ``(p, 1..k)``. A policy group of any
    other side is labelled by the teacher's groups on the remaining sides of its pair."""
    teacher_sides: dict[object, list[int]] = {}
    for pair_id, side in batch.teacher.groups:
        teacher_sides.setdefault(pair_id, []).append(side)

    def label_keys(key: GroupKey) -> list[GroupKey]:
        pair_id, side = key
        others = [(pair_id, s) for s in sorted(teacher_sides.get(pair_id, ())) if s != side]
        if not others:
            raise ValueError(
                f"co_rewarding_combined: pair {pair_id!r} side {side} needs the teacher's "
                "rollouts on another side of its pair (a rephrasing); none were given")
        return others

    for key in batch.policy.groups:
        label_keys(key)  # refuse before scoring anything
    return _score_by_vote(batch, lambda key: ("teacher", label_keys(key)))


@register("ground_truth", "1 when the answer is equivalent to the known answer (RLVR)",
          needs_ground_truth=True)
def ground_truth(batch: GradedBatch) -> list[Score]:
    pol = batch.policy
    for i, r in enumerate(pol.rollouts):
        if r.ground_truth is None:
            raise ValueError(f"rollout {i} (pair {r.pair_id!r}) has no ground_truth")
    scores = []
    for i, r in enumerate(pol.rollouts):
        label_class = batch.gt_class[r.pair_id]
        batch.label_class[(r.pair_id, r.side)] = label_class
        scores.append(_binary(pol.class_ids[i], label_class, pol.answers[i], r.ground_truth or ""))
    return scores


def _stat_reward(batch: GradedBatch, field: str, sign: float) -> list[Score]:
    pol = batch.policy
    scores = []
    for i, r in enumerate(pol.rollouts):
        value = getattr(r, field)
        if value is None:
            raise ValueError(f"rollout {i} (pair {r.pair_id!r}) has no {field}; the trainer "
                             "must compute per-token statistics for this reward")
        scores.append(Score(sign * float(value), pol.answers[i], ""))
    return scores


@register("self_certainty", "mean per-token KL(uniform || p) of the response (Intuitor); "
          "normalised within the group by the advantage", needs_token_stats=True)
def self_certainty(batch: GradedBatch) -> list[Score]:
    return _stat_reward(batch, "self_certainty", 1.0)


@register("entropy", "negative mean per-token entropy of the response (RENT / EM-RL)",
          needs_token_stats=True)
def entropy(batch: GradedBatch) -> list[Score]:
    return _stat_reward(batch, "entropy", -1.0)
