"""Fingerprints may only ever prove answers DIFFERENT, and exact forms EQUAL, where
math-verify agrees."""
import pytest

from nemo_coreward.answers import Grader, normalize
from nemo_coreward.answers.exact import canonical
from nemo_coreward.answers.fingerprint import clearly_different, fingerprint


def fp(s):
    return fingerprint(normalize(s))


@pytest.mark.parametrize("a,b", [
    ("(x+3)^2", "x^2+9"), ("2\\sqrt{5}", "\\sqrt{5}"), ("[1,2)", "(1,2)"), ("[1,2)", "[1,2]"),
    ("(1,2)", "(1,2,3)"), ("(1,2)", "1"), ("x^2", "2"), ("\\frac{x}{2}", "2x"), ("3y", "3x"),
    ("\\frac{\\pi}{3}", "\\frac{2\\pi}{3}"), ("\\{1,2\\}", "\\{1,3\\}"), ("\\{1,2\\}", "2"),
    ("\\{2\\}", "3"), ("(-\\infty,3]", "(-\\infty,4]"), ("(-\\infty,3]", "(3,\\infty]"),
    ("\\frac{1}{0}", "1"), ("\\frac{1}{0}", "\\frac{2}{0}"), ("(\\frac{12}{2},-6)", "(6,6)"),
])
def test_different(a, b):
    assert clearly_different(fp(a), fp(b))


@pytest.mark.parametrize("a,b", [
    ("(x+3)^2", "x^2+6x+9"), ("2\\sqrt{5}", "\\sqrt{20}"), ("x^{2}", "x^2"), ("2x", "x2"),
    ("\\frac{1}{3}", "0.333333"),  # math-verify rounds to 6 places: never claim different
    ("\\{1,2\\}", "\\{2,1\\}"), ("\\{3\\}", "3"), ("(-\\infty,3]", "(-\\infty, 3]"),
    ("\\{1,2\\}", "(1,2)"),  # math-verify equates a 2-element set with an open interval
    ("\\{1,1\\}", "1"), ("(\\frac{12}{2},-6)", "(6,-6)"),
])
def test_not_claimed_different(a, b):
    assert not clearly_different(fp(a), fp(b))


@pytest.mark.parametrize("s", ["X", "e^x", "i", "\\sin x", "10^{10^{10^{10}}}", "\\{1,\\{2\\}\\}",
                               "x^{1000}", "", "a" * 300, "((1,2),3)", "(1,2]3)", "\\frac{x}{0}",
                               "(\\frac{1}{0},2)", "\\{\\infty,1\\}"])
def test_unsupported_have_no_fingerprint(s):
    assert fp(s) is None


def test_latex_single_token_exponent():
    # x^23 is x^2 * 3 in LaTeX
    assert not clearly_different(fp("x^23"), fp("3x^2"))


FORMS = ["(x+1)^2", "x^2+2x+1", "x^2+1", "(1+x)^2", "2x+2", "2(x+1)", "\\frac{x+1}{2}",
         "\\sqrt{8}", "2\\sqrt{2}", "2.828427", "[0,1)", "[0, 1)", "(0,1)", "[0,1]", "1", "0.5",
         "x", "(x+1)^2-x^2-x-1", "\\frac{\\pi}{3}", "\\frac13\\pi", "\\frac{2\\pi}{6}", "\\pi",
         "\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", "\\{1,2\\}", "\\{2,1\\}", "\\{1\\}",
         "(\\frac{4}{2},-1)", "(2,-1)", "(-1,2)", "(-\\infty,2]", "\\frac{1}{0}", "0.5x",
         "\\frac{x}{2}"]


def test_soundness_against_math_verify():
    """Every pair the fingerprint calls different, math-verify calls different too, and
    every pair the exact forms call equal, math-verify calls equal."""
    g = Grader("math_verify", timeout_s=30.0)  # a verdict, not a time-out, on a busy machine
    judge = g._judge
    different = equal = 0
    for a in FORMS:
        for b in FORMS:
            ka, kb = normalize(a), normalize(b)
            if ka == kb:  # equal keys are one answer before any fingerprint is looked at
                continue
            if clearly_different(fp(a), fp(b)):
                assert judge.equivalent(a, b) is False, (a, b)
                different += 1
            elif canonical(ka) is not None and canonical(ka) == canonical(kb):
                assert judge.equivalent(a, b) is True, (a, b)
                equal += 1
    # 34 forms, 34 * 34 = 1156 ordered pairs; 36 share a key (the 34 on the diagonal and
    # "[0,1)" / "[0, 1)" both ways). Of the other 1120 the fingerprints settle 1040 and the
    # exact forms 24 (counted over FORMS), so math-verify proper judges only 56.
    assert (len(FORMS), different, equal) == (34, 1040, 24)
    g.close()


@pytest.mark.parametrize("a,b", [
    ("(x+2)(x+3)", "x^2+5x+6"), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
    ("\\sqrt{12}", "2\\sqrt{3}"), ("\\frac{\\pi}{3}", "\\frac{1}{3}\\pi"),
    ("(\\frac{4}{2},-1)", "(2,-1)"), ("\\{1,2\\}", "\\{2,1\\}"), ("\\{3\\}", "3"),
    ("(\\sqrt{2}+1)^2", "3+2\\sqrt{2}"), ("(-\\infty,\\frac{6}{2}]", "(-\\infty,3]"),
])
def test_exact_forms_equal(a, b):
    assert canonical(normalize(a)) is not None
    assert canonical(normalize(a)) == canonical(normalize(b))


@pytest.mark.parametrize("s", [
    "x",  # math-verify compares a lone symbol by its text: x vs (x+1)^2-x^2-x-1 is False
    "0.5x",  # decimals are floats to math-verify
    "\\frac{1}{x}", "\\frac{1}{1+\\sqrt{2}}", "\\sqrt{x}", "x^{20}", "\\{x,1\\}", "\\frac{1}{0}",
])
def test_no_exact_form_where_math_verify_may_differ(s):
    assert canonical(normalize(s)) is None
