"""Extraction tables: (response, expected answer), grouped by where the case comes from."""
import pytest

from nemo_coreward.answers import extract_answer, last_boxed

# Forms the official Co-Reward extractor handles; ours must agree.
OFFICIAL_FORMS = [
    (r"so the answer is \boxed{42}.", "42"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"first \boxed{1} then \boxed{2}", "2"),
    (r"nested \boxed{a{b{c}}d} end", "a{b{c}}d"),
    (r"$\boxed 7$ done", "7"),
    (r"\boxed{}", ""),
    (r"\boxed{ }", " "),
    ("no box here, 42", ""),
    (r"\boxed{3} then truncated \boxed{4", ""),
    (r"\boxedx{5}", ""),
    ("", ""),
]


@pytest.mark.parametrize("text,expected", OFFICIAL_FORMS)
def test_official_forms(text, expected):
    assert extract_answer(text) == expected


# Forms where the official code returns "" or garbage and ours does better, on purpose.
@pytest.mark.parametrize("text,expected", [
    (r"\fbox{7}", "7"),
    (r"\boxed 5$ and later \boxed{6}", "6"),
])
def test_documented_improvements(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text,fallbacks,expected", [
    ("The answer is 16.", ("answer_is",), "16"),
    ("So the final answer: $3/4$\n", ("answer_is",), "3/4"),
    ("I get 3 and then 4 apples", ("last_number",), "4"),
    ("Total: 1,250 dollars", ("last_number",), "1,250"),
    ("The answer is 16.", (), ""),
    (r"\boxed{2} but the answer is 3", ("answer_is",), "2"),  # the box wins
    ("nothing", ("answer_is", "last_number"), ""),
])
def test_fallbacks(text, fallbacks, expected):
    assert extract_answer(text, fallbacks) == expected


def test_unknown_fallback_lists_valid_names():
    with pytest.raises(ValueError, match="answer_is, last_number"):
        extract_answer("x", ("guess",))


def test_last_boxed_none_vs_empty():
    assert last_boxed("plain") is None
    assert last_boxed(r"\boxed{}") == ""
