"""Extract and group every answer of a batch once, for any reward and for the metrics.

All answers of one pair (policy rollouts of every side, then teacher rollouts, then the
ground truths) are grouped together, so a class id means the same answer whichever group
voted for it: the twin's label can be compared with this side's answers, and a label
with the known answer, without grading anything twice.

Text that is not valid Unicode (a lone surrogate) is repaired with U+FFFD before its
answer is extracted, and counted (``text_repairs``), so one bad response never costs a
step; ``final_answer`` is that one path, also used by the server's client when it
extracts answers itself.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from nemo_coreward.answers import Grader, extract_answer
from nemo_coreward.answers.text import repair_text
from nemo_coreward.reward.types import PairId, Rollout
from nemo_coreward.reward.voting import Vote, majority_vote

GroupKey = tuple[Hashable, int]  # (pair_id, side)


@dataclass
class Pool:
    """One population of rollouts (the policy's or the teacher's) after grading."""

    rollouts: Sequence[Rollout]
    answers: list[str]
    class_ids: list[int]
    groups: dict[GroupKey, list[int]]  # indices into ``rollouts``, in input order

    def group_classes(self, key: GroupKey) -> list[int]:
        return [self.class_ids[i] for i in self.groups.get(key, [])]

    def vote(self, keys: Sequence[GroupKey]) -> tuple[Vote, list[int]]:
        """Majority over the union of groups ``keys``, and the voters' indices."""
        idx = [i for k in keys for i in self.groups.get(k, [])]
        return majority_vote([self.class_ids[i] for i in idx]), idx

    def label_text(self, vote: Vote, voters: Sequence[int]) -> str:
        """The winning class as first written among the voters ("" for no winner)."""
        for i in voters:
            if self.class_ids[i] == vote.winner >= 0:
                return self.answers[i]
        return ""


@dataclass
class GradedBatch:
    policy: Pool
    teacher: Pool
    gt_class: dict[PairId, int]  # -1 when the pair's ground truth is empty; absent if unknown
    sides: dict[PairId, list[int]]  # sorted sides present in the policy rollouts
    grader: Grader
    # Filled by a voting reward: the class each policy group was scored against.
    label_class: dict[GroupKey, int] = field(default_factory=dict)
    grader_timeouts: int = 0  # symbolic comparisons that timed out while grading this batch
    text_repairs: int = 0  # responses, answers and ground truths that were not valid Unicode

    def group_keys(self) -> list[GroupKey]:
        return list(self.policy.groups)


def _index(rollouts: Sequence[Rollout], where: str) -> dict[GroupKey, list[int]]:
    groups: dict[GroupKey, list[int]] = {}
    for i, r in enumerate(rollouts):
        if not isinstance(r.side, int) or isinstance(r.side, bool) or r.side < 0:
            raise ValueError(f"{where} rollout {i}: side must be an integer >= 0, got {r.side!r}")
        try:
            hash(r.pair_id)
        except TypeError:
            raise ValueError(f"{where} rollout {i}: pair_id must be hashable, "
                             f"got {r.pair_id!r}") from None
        groups.setdefault((r.pair_id, r.side), []).append(i)
    return groups


def final_answer(rollout: Rollout, fallbacks: Sequence[str] = ()) -> tuple[str, bool]:
    """The rollout's final answer (``rollout.answer`` when the caller extracted it, else
    extracted from the response), and whether its text needed a Unicode repair."""
    if rollout.answer is not None:
        return repair_text(rollout.answer)
    response, repaired = repair_text(rollout.response)
    return extract_answer(response, fallbacks), repaired


def grade(
    rollouts: Sequence[Rollout],
    teacher: Sequence[Rollout],
    grader: Grader,
    fallbacks: Sequence[str] = (),
) -> GradedBatch:
    timeouts_before = grader.timeouts
    policy_groups = _index(rollouts, "policy")
    teacher_groups = _index(teacher, "teacher")
    found = [final_answer(r, fallbacks) for r in rollouts]
    t_found = [final_answer(r, fallbacks) for r in teacher]
    answers = [a for a, _ in found]
    t_answers = [a for a, _ in t_found]
    repairs = sum(bad for _, bad in found) + sum(bad for _, bad in t_found)

    by_pair: dict[PairId, tuple[list[int], list[int], list[str]]] = {}
    for i, r in enumerate(rollouts):
        entry = by_pair.setdefault(r.pair_id, ([], [], []))
        entry[0].append(i)
        if r.ground_truth is not None:
            truth, bad = repair_text(r.ground_truth)
            repairs += bad
            if truth not in entry[2]:
                entry[2].append(truth)
    for j, r in enumerate(teacher):
        by_pair.setdefault(r.pair_id, ([], [], []))[1].append(j)

    class_ids = [-1] * len(rollouts)
    t_class_ids = [-1] * len(teacher)
    gt_class: dict[PairId, int] = {}
    pools = {}
    for pair_id, (p_idx, t_idx, gts) in by_pair.items():
        if len(gts) > 1:
            raise ValueError(f"pair {pair_id!r}: rollouts disagree on ground_truth: {gts!r}")
        pools[pair_id] = [answers[i] for i in p_idx] + [t_answers[j] for j in t_idx] + gts
    grader.prepare(list(pools.values()))
    for pair_id, (p_idx, t_idx, gts) in by_pair.items():
        ids = grader.group(pools[pair_id]).class_ids
        for n, i in enumerate(p_idx):
            class_ids[i] = ids[n]
        for n, j in enumerate(t_idx):
            t_class_ids[j] = ids[len(p_idx) + n]
        if gts:
            gt_class[pair_id] = ids[-1]

    sides: dict[PairId, list[int]] = {}
    for pair_id, side in policy_groups:
        sides.setdefault(pair_id, []).append(side)
    for s in sides.values():
        s.sort()
    return GradedBatch(
        policy=Pool(rollouts, answers, class_ids, policy_groups),
        teacher=Pool(teacher, t_answers, t_class_ids, teacher_groups),
        gt_class=gt_class,
        sides=sides,
        grader=grader,
        grader_timeouts=grader.timeouts - timeouts_before,
        text_repairs=repairs,
    )
