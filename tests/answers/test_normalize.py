"""Canonical keys: surface forms of one value share a key; different values never do."""
import pytest

from nemo_coreward.answers import normalize, numeric_value

SAME = [
    # fractions (Hendrycks fix_fracs, \dfrac), decimals, slashes
    [r"\frac{1}{2}", r"\dfrac12", r"\tfrac{1}{2}", "1/2", "0.5", ".5", r"\frac1{2}"],
    # trailing .0, thousands separators, signs
    ["2", "2.0", "2.00", "+2"],
    ["1000", "1,000", "1000.0"],
    [r"-\frac{3}{4}", "-0.75", "-3/4"],
    # units, degrees, percent, dollars
    [r"5", r"5 \text{ cm}", r"5\text{cm}", r"5 \mbox{ meters}"],
    ["30", r"30^\circ", r"30^{\circ}", "30°"],
    ["50", r"50\%", "50%"],
    ["4.5", r"\$4.50", "$4.5$"],
    # \left/\right, spacing, lhs assignment
    [r"(1,2)", r"\left( 1, 2 \right)", r"( 1 ,2 )"],
    ["3", "x = 3", "x=3"],
    [r"\sqrt{2}", r"\sqrt2"],
    [r"\text{(A)}", "(A)"],
]
DIFFERENT = [
    ("1/2", "1/3"), ("0.5", "0.05"), ("2", "-2"), (r"\sqrt{2}", r"\sqrt{3}"),
    ("(1,2)", "[1,2]"), ("x+1", "x-1"), ("1000", "100"),
]


@pytest.mark.parametrize("forms", SAME, ids=[f[0] for f in SAME])
def test_same_value_same_key(forms):
    keys = {normalize(f) for f in forms}
    assert len(keys) == 1, keys


@pytest.mark.parametrize("a,b", DIFFERENT)
def test_different_values_different_keys(a, b):
    assert normalize(a) != normalize(b)


def test_empty_and_whitespace():
    assert normalize("") == "" and normalize("   \n") == ""


def test_numeric_value():
    from fractions import Fraction
    assert numeric_value("1/2") == Fraction(1, 2)
    assert numeric_value("-3") == -3
    assert numeric_value(r"\frac{1}{0}") is None
    assert numeric_value("x") is None


def test_long_answer_is_bounded():
    # A 200k-character answer is keyed without the regex passes.
    key = normalize("1 " * 100_000)
    assert key == "1" * 100_000
