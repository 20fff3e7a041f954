"""Fingerprints may only ever prove answers DIFFERENT where math-verify agrees."""
import pytest

from nemo_coreward.answers import Grader, normalize
from nemo_coreward.answers.fingerprint import clearly_different, fingerprint


def fp(s):
    return fingerprint(normalize(s))


@pytest.mark.parametrize("a,b", [
    ("(x+3)^2", "x^2+9"), ("2\\sqrt{5}", "\\sqrt{5}"), ("[1,2)", "(1,2)"), ("[1,2)", "[1,2]"),
    ("(1,2)", "(1,2,3)"), ("(1,2)", "1"), ("x^2", "2"), ("\\frac{x}{2}", "2x"), ("3y", "3x"),
])
def test_different(a, b):
    assert clearly_different(fp(a), fp(b))


@pytest.mark.parametrize("a,b", [
    ("(x+3)^2", "x^2+6x+9"), ("2\\sqrt{5}", "\\sqrt{20}"), ("x^{2}", "x^2"), ("2x", "x2"),
    ("\\frac{1}{3}", "0.333333"),  # math-verify rounds to 6 places: never claim different
])
def test_not_claimed_different(a, b):
    assert not clearly_different(fp(a), fp(b))


@pytest.mark.parametrize("s", ["X", "e^x", "i", "\\pi", "\\sin x", "10^{10^{10^{10}}}", "\\{1,2\\}",
                               "x^{1000}", "", "a" * 300, "((1,2),3)"])
def test_unsupported_have_no_fingerprint(s):
    assert fp(s) is None


def test_latex_single_token_exponent():
    # x^23 is x^2 * 3 in LaTeX
    assert not clearly_different(fp("x^23"), fp("3x^2"))


def test_soundness_against_math_verify():
    """Every pair the fingerprint calls different, math-verify calls different too."""
    forms = ["(x+1)^2", "x^2+2x+1", "x^2+1", "(1+x)^2", "2x+2", "2(x+1)", "\\frac{x+1}{2}",
             "\\sqrt{8}", "2\\sqrt{2}", "2.828427", "[0,1)", "[0, 1)", "(0,1)", "[0,1]", "1", "0.5"]
    g = Grader("math_verify")
    judge = g._judge
    for a in forms:
        for b in forms:
            if clearly_different(fp(a), fp(b)):
                assert judge.equivalent(a, b) is False, (a, b)
    g.close()
