"""Benchmark metrics over graded samples: pass@k, avg@k, maj@k, greedy pass@1, breakdowns.

Pure functions, no torch. Every sample is graded by the project's own answer checker
(``extract_answer`` then ``Grader``), the same code that rewards rollouts in training, so
an evaluation number and a training reward mean the same thing by "correct".

Definitions, for one problem with ``n`` samples of which ``c`` are correct:

- ``pass@k`` (Chen et al. 2021, "Evaluating Large Language Models Trained on Code",
  eq. 1): the unbiased estimate of the chance that at least one of ``k`` samples drawn
  without replacement from the ``n`` is correct, ``1 - C(n-c, k) / C(n, k)``; 1 when
  ``n - c < k``. Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` to avoid huge binomials.
- ``avg@k``: the mean correctness of the ``k`` samples (``c / k``); the paper's AMC metric.
  It equals the unbiased pass@1 estimate from ``k`` samples.
- ``maj@k``: whether the majority answer of the ``k`` samples is correct. Answers are put
  into equivalence classes by ``Grader.group`` (the same classes a training reward votes
  over) and voted with ``nemo_coreward.reward.majority_vote``: empty answers never vote,
  and a tie goes to the class whose first member comes earliest in sample order. All
  answers empty means the vote has no winner and maj@k is 0.
- ``pass@1 (greedy)``: whether the one greedy (temperature 0) response is correct.

A benchmark's score is the mean of the per-problem values; ``breakdown`` gives the same
means per level (MATH levels, synthetic difficulty levels) or any other meta key.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean

from nemo_coreward.answers import Grader
from nemo_coreward.reward.voting import majority_vote


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c,k)/C(n,k)``.

    ``pass_at_k(5, 2, 2) = 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7``.
    """
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError(f"pass_at_k takes integers, got n={n!r}, c={c!r}, k={k!r}")
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def avg_at_k(correct: Sequence[bool]) -> float:
    """Mean correctness of the samples (``c / k``)."""
    if not correct:
        raise ValueError("avg_at_k needs at least one sample")
    return sum(bool(x) for x in correct) / len(correct)


def majority_index(answers: Sequence[str], grader: Grader) -> int | None:
    """Index of the first sample in the winning answer class, ``None`` if all are empty.

    Classes come from ``grader.group`` (first appearance order) and the vote from
    ``majority_vote``: ties go to the class that appeared first, so the result depends only
    on the samples' order, never on hashing or set order.
    """
    class_ids = grader.group(list(answers)).class_ids
    vote = majority_vote(class_ids)
    if vote.winner < 0:
        return None
    return class_ids.index(vote.winner)


def maj_at_k(answers: Sequence[str], correct: Sequence[bool], grader: Grader) -> bool:
    """Whether the majority answer is correct; ``correct[i]`` grades ``answers[i]``.

    The winning class is represented by its first member, whose grade decides.
    """
    if len(answers) != len(correct):
        raise ValueError(f"maj_at_k: {len(answers)} answers but {len(correct)} grades")
    if not answers:
        raise ValueError("maj_at_k needs at least one sample")
    winner = majority_index(answers, grader)
    return False if winner is None else bool(correct[winner])


def is_correct(answer: str, gold: str | None, grader: Grader) -> bool:
    """``answer`` is non-empty and equivalent to ``gold`` (``Grader`` takes gold first,
    which math-verify treats as the reference). No gold answer means nothing is correct."""
    if gold is None or not answer:
        return False
    return grader.equivalent(gold, answer)


def pass_k_values(n: int) -> tuple[int, ...]:
    """The k for which pass@k is reported from ``n`` samples: powers of two up to n, and n."""
    ks = [1]
    while ks[-1] * 2 <= n:
        ks.append(ks[-1] * 2)
    if ks[-1] != n:
        ks.append(n)
    return tuple(k for k in ks if k <= n)


@dataclass(frozen=True)
class ItemScores:
    """One problem's grades: the greedy response's (``None`` when greedy was not run) and
    the samples' (empty when none were drawn), plus maj@k over the samples."""

    greedy: bool | None
    samples: tuple[bool, ...]
    majority: bool | None
    level: str | None = None


def item_metrics(item: ItemScores) -> dict[str, float]:
    """Per-problem metric values; the benchmark score is their mean over problems.

    Keys: ``pass@1_greedy`` (the greedy response), and from ``n`` samples ``avg@n``,
    ``maj@n`` and ``pass@k`` for k in ``pass_k_values(n)``; ``pass@1`` (sampled) equals
    ``avg@n``, kept under both names because papers report it under both.
    """
    out: dict[str, float] = {}
    if item.greedy is not None:
        out["pass@1_greedy"] = float(item.greedy)
    n = len(item.samples)
    if n:
        c = sum(item.samples)
        out[f"avg@{n}"] = avg_at_k(item.samples)
        if item.majority is not None:
            out[f"maj@{n}"] = float(item.majority)
        for k in pass_k_values(n):
            out[f"pass@{k}"] = pass_at_k(n, c, k)
    return out


def aggregate(items: Iterable[ItemScores]) -> dict[str, float]:
    """Mean of each metric over the problems that have it, plus ``n`` (problem count).

    Items with different sample counts give separate keys (``avg@4`` and ``avg@8``), never
    a mean that mixes them.
    """
    sums: dict[str, list[float]] = {}
    count = 0
    for item in items:
        count += 1
        for key, value in item_metrics(item).items():
            sums.setdefault(key, []).append(value)
    out = {key: fmean(values) for key, values in sums.items()}
    out["n"] = float(count)
    return out


def breakdown(items: Iterable[ItemScores]) -> dict[str, dict[str, float]]:
    """``aggregate`` per ``level`` (items with no level are left out), levels sorted."""
    by_level: dict[str, list[ItemScores]] = {}
    for item in items:
        if item.level is not None:
            by_level.setdefault(str(item.level), []).append(item)
    return {level: aggregate(by_level[level]) for level in sorted(by_level, key=_level_order)}


def _level_order(level: str) -> tuple[int, float, str]:
    digits = "".join(ch for ch in level if ch.isdigit() or ch == ".")
    try:
        return (0, float(digits), level)
    except ValueError:
        return (1, 0.0, level)


def headline(metrics: Mapping[str, float], preferred: Sequence[str]) -> tuple[str, float] | None:
    """The first of ``preferred`` present in ``metrics`` (the number a table shows)."""
    for key in preferred:
        if key in metrics:
            return key, metrics[key]
    return None
