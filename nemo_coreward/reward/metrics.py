"""Collapse diagnostics for one scored batch.

Reward alone hides collapse: a policy that agrees with itself on a wrong answer earns
full reward. These metrics show it as it happens. The ground truth, when present, is
used here only, never for a label-free reward.

Definitions (groups are the rollouts of one side of one pair):
- ``majority_ratio``: mean over groups of (votes for the group's own majority) / size.
- ``answer_entropy``: mean over groups of the entropy (nats) of the answer-class
  distribution, empty answers counted as one more class.
- ``zero_spread_group_rate``: share of groups whose rewards are all equal (no signal).
- ``twin_agreement``: share of pairs with >= 2 sides whose sides' own majorities are the
  same non-empty class.
- ``shared_answer_rate``: how far the pairs' majority answers collapse onto one answer:
  (pairs whose majority, on some side, is the most common such answer, minus 1) / (pairs
  minus 1), over pairs with a non-empty majority; 0 when every question gets its own
  answer, 1 when all get the same. Different questions rarely share an answer, and a
  policy that answers every question alike agrees with its twins too, so twin agreement
  cannot show that collapse (answers compared as extracted, across pairs).
- ``label_nonempty_rate``: share of groups whose label is not empty.
- ``pseudo_label_accuracy``: share of groups whose label equals the known answer;
  ``reward_accuracy``: share of rollouts whose binary reward equals their correctness;
  ``answer_accuracy``: share of rollouts that are correct; ``self_majority_accuracy``:
  share of groups whose own majority is correct.
- Teacher (Co-rewarding-II): ``teacher_label_accuracy``, ``teacher_majority_ratio``,
  ``teacher_policy_agreement`` (teacher and policy majorities equal, per group).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from statistics import fmean, pstdev

from nemo_coreward.reward.graded import GradedBatch
from nemo_coreward.reward.types import Score


def _entropy(class_ids: Sequence[int]) -> float:
    counts: dict[int, int] = {}
    for c in class_ids:
        counts[c] = counts.get(c, 0) + 1
    n = len(class_ids)
    return -sum(k / n * math.log(k / n) for k in counts.values()) if n else 0.0


def _mean(values: Sequence[float]) -> float:
    return fmean(values) if values else float("nan")


def collapse_metrics(batch: GradedBatch, scores: Sequence[Score]) -> dict[str, float]:
    pol, teacher = batch.policy, batch.teacher
    binary = bool(batch.label_class)  # a label-based (0/1) reward filled the labels
    rewards = [s.reward for s in scores]
    out: dict[str, float] = {
        "n_rollouts": float(len(rewards)),
        "n_groups": float(len(pol.groups)),
        "reward_mean": _mean(rewards),
        "reward_std": pstdev(rewards) if len(rewards) > 1 else 0.0,
        "empty_answer_rate": _mean([1.0 if c < 0 else 0.0 for c in pol.class_ids]),
        "grader_timeouts": float(batch.grader_timeouts),
        "text_repairs": float(batch.text_repairs),
    }
    own_vote = {key: pol.vote([key])[0] for key in pol.groups}
    out["majority_ratio"] = _mean([v.ratio for v in own_vote.values()])
    out["answer_entropy"] = _mean([_entropy(pol.group_classes(k)) for k in pol.groups])
    out["zero_spread_group_rate"] = _mean(
        [1.0 if len({rewards[i] for i in idx}) == 1 else 0.0 for idx in pol.groups.values()]
    )
    multi = [p for p, s in batch.sides.items() if len(s) > 1]
    if multi:
        out["twin_agreement"] = _mean([
            1.0 if len({own_vote[(p, s)].winner for s in batch.sides[p]}) == 1
            and own_vote[(p, batch.sides[p][0])].winner >= 0 else 0.0
            for p in multi
        ])
    per_pair: dict[object, set[str]] = {}
    for key, vote in own_vote.items():
        if vote.winner >= 0:
            per_pair.setdefault(key[0], set()).add(pol.label_text(vote, pol.groups[key]))
    if len(per_pair) >= 2:
        mode = max(Counter(a for answers in per_pair.values() for a in answers).values())
        out["shared_answer_rate"] = (mode - 1) / (len(per_pair) - 1)
    if batch.label_class:
        out["label_nonempty_rate"] = _mean([1.0 if c >= 0 else 0.0
                                            for c in batch.label_class.values()])

    known = [k for k in pol.groups if k[0] in batch.gt_class]
    if known:
        def correct(c: int, pair_id: object) -> bool:
            return c >= 0 and c == batch.gt_class[pair_id]

        rows = [i for k in known for i in pol.groups[k]]
        ok = {i: correct(pol.class_ids[i], pol.rollouts[i].pair_id) for i in rows}
        out["answer_accuracy"] = _mean([1.0 if ok[i] else 0.0 for i in rows])
        out["self_majority_accuracy"] = _mean(
            [1.0 if correct(own_vote[k].winner, k[0]) else 0.0 for k in known]
        )
        labelled = [k for k in known if k in batch.label_class]
        if labelled:
            out["pseudo_label_accuracy"] = _mean([
                1.0 if correct(batch.label_class[k], k[0]) else 0.0 for k in labelled
            ])
        if binary:
            out["reward_accuracy"] = _mean([1.0 if (rewards[i] >= 0.5) == ok[i] else 0.0
                                            for i in rows])
    if teacher.rollouts:
        t_vote = {key: teacher.vote([key])[0] for key in teacher.groups}
        out["teacher_majority_ratio"] = _mean([v.ratio for v in t_vote.values()])
        shared = [k for k in pol.groups if k in t_vote]
        if shared:
            out["teacher_policy_agreement"] = _mean(
                [1.0 if t_vote[k].winner >= 0 and t_vote[k].winner == own_vote[k].winner else 0.0
                 for k in shared]
            )
        t_known = [k for k in t_vote if k[0] in batch.gt_class]
        if t_known:
            out["teacher_label_accuracy"] = _mean([
                1.0 if t_vote[k].winner >= 0 and t_vote[k].winner == batch.gt_class[k[0]] else 0.0
                for k in t_known
            ])
    return out

