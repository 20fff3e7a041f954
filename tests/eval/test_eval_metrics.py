"""Metric functions against hand-computed values."""
from __future__ import annotations

import itertools
from math import comb

import pytest

from nemo_coreward.answers import Grader
from nemo_coreward.eval.metrics import (
    ItemScores,
    aggregate,
    avg_at_k,
    breakdown,
    is_correct,
    maj_at_k,
    majority_index,
    pass_at_k,
    pass_k_values,
)

EXACT = Grader("exact")
NORMALIZED = Grader("normalized")


# pass@k = 1 - C(n-c, k) / C(n, k), worked by hand:
PASS_AT_K_CASES = [
    # (n, c, k, expected)
    (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (5, 2, 1, 0.4),  # 1 - C(3,1)/C(5,1) = 1 - 3/5 = c/n
    (5, 0, 3, 0.0),  # no correct sample
    (5, 5, 1, 1.0),
    (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (8, 1, 4, 0.5),  # 1 - C(7,4)/C(8,4) = 1 - 35/70
    (10, 3, 5, 11 / 12),  # 1 - C(7,5)/C(10,5) = 1 - 21/252
    (3, 2, 2, 1.0),  # n - c = 1 < k: every draw of 2 holds a correct one
]


@pytest.mark.parametrize("n,c,k,expected", PASS_AT_K_CASES)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_binomial_formula_and_enumeration():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                formula = 1 - comb(n - c, k) / comb(n, k)
                # Enumerate every k-subset of n samples whose first c are correct.
                subsets = list(itertools.combinations(range(n), k))
                hit = sum(any(i < c for i in s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(formula, abs=1e-12)
                assert pass_at_k(n, c, k) == pytest.approx(hit, abs=1e-12)


@pytest.mark.parametrize("n,c,k", [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_avg_at_k():
    assert avg_at_k([True, False, False, True]) == 0.5
    assert avg_at_k([False] * 8) == 0.0
    assert avg_at_k([True, True, True]) == 1.0
    with pytest.raises(ValueError):
        avg_at_k([])


def test_maj_at_k_plain_majority():
    answers = ["3", "4", "4", "", "4", "3"]
    correct = [a == "4" for a in answers]
    assert maj_at_k(answers, correct, EXACT) is True
    assert maj_at_k(answers, [a == "3" for a in answers], EXACT) is False


def test_maj_at_k_tie_goes_to_the_answer_seen_first():
    # "7" and "9" both have two votes; "7" appears first, so "7" wins.
    answers = ["7", "9", "9", "7"]
    assert majority_index(answers, EXACT) == 0
    assert maj_at_k(answers, [a == "7" for a in answers], EXACT) is True
    assert maj_at_k(answers, [a == "9" for a in answers], EXACT) is False
    # Reordered so "9" comes first: now "9" wins.
    answers = ["9", "7", "7", "9"]
    assert majority_index(answers, EXACT) == 0
    assert maj_at_k(answers, [a == "9" for a in answers], EXACT) is True


def test_maj_at_k_empty_answers_never_win():
    answers = ["", "", "", "5"]
    assert majority_index(answers, EXACT) == 3
    assert maj_at_k(answers, [False, False, False, True], EXACT) is True
    assert majority_index(["", ""], EXACT) is None
    assert maj_at_k(["", ""], [False, False], EXACT) is False


def test_maj_at_k_votes_over_equivalence_classes():
    # Exact strings: "1/3" has 2 votes, each spelling of one half has 1, so "1/3" wins.
    # Normalised: \frac{1}{2}, \dfrac{1}{2} and 0.5 are one class of 3 votes and win.
    answers = ["\\frac{1}{2}", "1/3", "\\dfrac{1}{2}", "1/3", "0.5"]
    correct = [True, False, True, False, True]
    assert majority_index(answers, EXACT) == 1
    assert maj_at_k(answers, correct, EXACT) is False
    assert majority_index(answers, NORMALIZED) == 0
    assert maj_at_k(answers, correct, NORMALIZED) is True


def test_maj_at_k_checks_lengths():
    with pytest.raises(ValueError):
        maj_at_k(["1"], [True, False], EXACT)
    with pytest.raises(ValueError):
        maj_at_k([], [], EXACT)


def test_is_correct_needs_gold_and_answer():
    assert is_correct("4", "4", EXACT)
    assert not is_correct("", "4", EXACT)
    assert not is_correct("4", None, EXACT)
    assert not is_correct("4.0", "4", EXACT)
    assert is_correct("4.0", "4", NORMALIZED)


def test_pass_k_values():
    assert pass_k_values(1) == (1,)
    assert pass_k_values(8) == (1, 2, 4, 8)
    assert pass_k_values(5) == (1, 2, 4, 5)


def test_aggregate_and_breakdown():
    items = [
        # greedy right; 4 samples with 2 right; majority wrong
        ItemScores(greedy=True, samples=(True, False, True, False), majority=False, level="1"),
        # greedy wrong; 4 samples with 1 right; majority right
        ItemScores(greedy=False, samples=(False, False, True, False), majority=True, level="2"),
    ]
    out = aggregate(items)
    assert out["n"] == 2
    assert out["pass@1_greedy"] == 0.5
    assert out["avg@4"] == pytest.approx((0.5 + 0.25) / 2)
    assert out["pass@1"] == pytest.approx(out["avg@4"])
    assert out["maj@4"] == 0.5
    # pass@2: item 1: 1 - C(2,2)/C(4,2) = 5/6; item 2: 1 - C(3,2)/C(4,2) = 1/2
    assert out["pass@2"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert out["pass@4"] == 1.0
    levels = breakdown(items)
    assert list(levels) == ["1", "2"]
    assert levels["1"]["pass@1_greedy"] == 1.0 and levels["2"]["maj@4"] == 1.0


def test_breakdown_orders_levels_numerically_and_skips_missing():
    items = [ItemScores(True, (), None, level=lv) for lv in ("10", "2", None, "1")]
    assert list(breakdown(items)) == ["1", "2", "10"]


def test_aggregate_keeps_different_sample_counts_apart():
    items = [ItemScores(None, (True,), True), ItemScores(None, (False, False), False)]
    out = aggregate(items)
    assert out["avg@1"] == 1.0 and out["avg@2"] == 0.0
    assert "pass@1_greedy" not in out
