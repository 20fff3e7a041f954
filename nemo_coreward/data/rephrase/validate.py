"""Rules a candidate rephrasing must pass; each returns ``None`` or the reason it failed.

A twin that changes the maths poisons Co-Reward: the two sides then vote for different
answers and the cross reward punishes correct rollouts. The paper only dropped outputs
whose markers did not parse; the rules here add cheap checks for the failure modes seen in
practice (empty output, the original echoed back, runaway or truncated text, a number
dropped or changed) and an optional, costly one that solves both phrasings.

Rules, in the order applied (the first failure is recorded, as ``rule: reason``):

- ``markers``: the completion parses (see ``prompt.parse_result``).
- ``empty``: the rewrite has text.
- ``copy``: not the original again: the share of the rewrite's word ``copy_ngram``-grams
  found in the original stays below ``max_copy_overlap`` (identical texts always fail).
- ``length``: ``min_length_ratio * len(q) <= len(rewrite) <= max(max_length_ratio * len(q),
  len(q) + max_extra_chars)``, in characters; the additive allowance lets a one-line sum
  grow into a short story.
- ``numbers``: every number written in the question appears in the rewrite
  (``require_numbers``; numbers compared as written, thousands commas ignored).
- ``answer``: optional (``answer_consistency``): the backend solves each phrasing
  ``consistency_samples`` times; the majority final answers (last ``\\boxed{}``, empty
  answers not voting) must be equal.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from nemo_coreward.answers import Grader, extract_answer
from nemo_coreward.data.rephrase.prompt import ParseError, parse_result
from nemo_coreward.reward.voting import majority_vote


@dataclass(frozen=True)
class ValidationConfig:
    copy_ngram: int = 3
    max_copy_overlap: float = 0.7
    min_length_ratio: float = 0.5
    max_length_ratio: float = 3.0
    max_extra_chars: int = 300
    require_numbers: bool = True
    answer_consistency: bool = False
    consistency_samples: int = 4

    def __post_init__(self) -> None:
        if self.copy_ngram < 1:
            raise ValueError(f"copy_ngram must be >= 1, got {self.copy_ngram}")
        if not 0 < self.max_copy_overlap <= 1:
            raise ValueError(f"max_copy_overlap must be in (0, 1], got {self.max_copy_overlap}")
        if not 0 <= self.min_length_ratio <= self.max_length_ratio:
            raise ValueError("need 0 <= min_length_ratio <= max_length_ratio")
        if self.consistency_samples < 1:
            raise ValueError(f"consistency_samples must be >= 1, got {self.consistency_samples}")


@dataclass(frozen=True)
class Rejection:
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.reason}"


_WORD = re.compile(r"\w+|[^\w\s]")
_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def copy_overlap(original: str, rewrite: str, n: int = 3) -> float:
    """Share of the rewrite's word n-grams that also occur in the original (0..1).

    Texts shorter than ``n`` words are compared as whole word sequences (1.0 if equal).
    """
    a, b = _words(original), _words(rewrite)
    if len(b) < n or len(a) < n:
        return 1.0 if a == b else 0.0
    grams = _ngrams(b, n)
    return len(grams & _ngrams(a, n)) / len(grams)


def numbers_in(text: str) -> list[str]:
    """Numbers as written (``1,000`` -> ``1000``; ``3.50`` kept as ``3.50``)."""
    return [m.replace(",", "") for m in _NUMBER.findall(text)]


def check_markers(completion: str) -> tuple[str | None, Rejection | None]:
    try:
        return parse_result(completion).rewrite, None
    except ParseError as exc:
        return None, Rejection("markers", str(exc))


def check_empty(rewrite: str) -> Rejection | None:
    return None if rewrite.strip() else Rejection("empty", "the rewrite is empty")


def check_copy(original: str, rewrite: str, config: ValidationConfig) -> Rejection | None:
    if " ".join(_words(original)) == " ".join(_words(rewrite)):
        return Rejection("copy", "identical to the original")
    overlap = copy_overlap(original, rewrite, config.copy_ngram)
    if overlap >= config.max_copy_overlap:
        return Rejection(
            "copy", f"{overlap:.0%} of its {config.copy_ngram}-grams are in the original "
            f"(limit {config.max_copy_overlap:.0%})"
        )
    return None


def check_length(original: str, rewrite: str, config: ValidationConfig) -> Rejection | None:
    n, m = len(original.strip()), len(rewrite.strip())
    low = config.min_length_ratio * n
    high = max(config.max_length_ratio * n, n + config.max_extra_chars)
    if m < low:
        return Rejection("length", f"{m} chars, shorter than {low:.0f} (original {n})")
    if m > high:
        return Rejection("length", f"{m} chars, longer than {high:.0f} (original {n})")
    return None


def check_numbers(original: str, rewrite: str, config: ValidationConfig) -> Rejection | None:
    if not config.require_numbers:
        return None
    present = Counter(numbers_in(rewrite))
    missing = [x for x in dict.fromkeys(numbers_in(original)) if present[x] == 0]
    if missing:
        return Rejection("numbers", f"missing {', '.join(missing)} from the question")
    return None


def check_static(original: str, completion: str,
                 config: ValidationConfig) -> tuple[str | None, Rejection | None]:
    """All rules that need no model: the parsed rewrite, or the first rejection."""
    rewrite, rejection = check_markers(completion)
    if rejection is not None:
        return None, rejection
    for rule in (lambda: check_empty(rewrite), lambda: check_copy(original, rewrite, config),
                 lambda: check_length(original, rewrite, config),
                 lambda: check_numbers(original, rewrite, config)):
        rejection = rule()
        if rejection is not None:
            return rewrite, rejection
    return rewrite, None


def majority_answer(completions: Sequence[str], grader: Grader | None = None) -> str:
    """Majority final answer of ``completions`` as first written; "" when none.

    The reward's own vote (empty answers do not vote, ties go to the first seen) over
    the reward's equivalence classes, ``normalized`` by default so ``0.5`` and
    ``\\frac12`` count as one answer.
    """
    grader = grader or Grader("normalized")
    answers = [extract_answer(c) for c in completions]
    grouping = grader.group(answers)
    vote = majority_vote(grouping.class_ids)
    return next((a for a, c in zip(answers, grouping.class_ids) if c == vote.winner >= 0), "")


def check_answer(original_majority: str, rewrite_completions: Sequence[str]) -> Rejection | None:
    """Compare the rewrite's majority answer with the original's (solved once per record)."""
    if not original_majority:
        return Rejection("answer", "no final answer when solving the original")
    grader = Grader("normalized")
    rewrite_majority = majority_answer(rewrite_completions, grader)
    if not grader.equivalent(rewrite_majority, original_majority):
        shown = rewrite_majority or "(none)"
        return Rejection(
            "answer", f"majority answer {shown!r} differs from the original's "
            f"{original_majority!r}"
        )
    return None
