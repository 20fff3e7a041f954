"""The rewrite prompt, its marker parser, each validation rule and the retry schedule."""
from __future__ import annotations

import pytest

from nemo_coreward.data.rephrase import prompt as P
from nemo_coreward.data.rephrase import validate as V
from nemo_coreward.llm.client import BackendError, RetryableError, _chat_url
from nemo_coreward.retry import call_with_retries

CFG = V.ValidationConfig()


def test_default_prompt_is_the_papers():
    text = P.Template().render("  What is 3 + 4?  ")
    assert text.endswith("\n\nWhat is 3 + 4?")
    assert "different wording and a different real-world scenario" in text
    for marker in (P.START, P.ORIGINAL, P.REWRITE, P.END):
        assert marker in text


def test_user_template(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Rewrite, keep $\\frac{a}{b}$ braces: {question}")
    assert P.load_template(path).render("Q?") == "Rewrite, keep $\\frac{a}{b}$ braces: Q?"
    path.write_text("no slot here")
    with pytest.raises(ValueError, match=rf"{path}: a rephrase template needs exactly one"):
        P.load_template(path)


@pytest.mark.parametrize(
    "text, original, rewrite",
    [
        ("### RESULT_START\nORIGINAL:\nQ\nREWRITE:\nR two\n### RESULT_END", "Q", "R two"),
        ("Sure.\n### RESULT_START\nORIGINAL: Q\nREWRITE: R\n### RESULT_END\nDone.", "Q", "R"),
        ("<think>I will write ### RESULT_START ... ### RESULT_END</think>\n"
         "### RESULT_START\nORIGINAL:\nQ\nREWRITE:\nR\n### RESULT_END", "Q", "R"),
        ("### RESULT_START\nORIGINAL:\nQ\nREWRITE:\nR with REWRITE: inside\n### RESULT_END",
         "Q", "R with REWRITE: inside"),
    ],
)
def test_parse_result(text, original, rewrite):
    assert P.parse_result(text) == P.ParsedRewrite(original, rewrite)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Here is a rewrite: R", "no '### RESULT_START' marker"),
        ("### RESULT_START\nORIGINAL:\nQ\nREWRITE:\nR", "no '### RESULT_END' marker"),
        ("### RESULT_START\nORIGINAL:\nQ\nR\n### RESULT_END", "no 'REWRITE:' section"),
    ],
)
def test_parse_failures_say_why(text, reason):
    with pytest.raises(P.ParseError, match=reason):
        P.parse_result(text)


def test_copy_overlap_by_hand():
    # rewrite words: a b c d e -> trigrams abc bcd cde; original a b c x y has abc only
    assert V.copy_overlap("a b c x y", "a b c d e") == pytest.approx(1 / 3)
    assert V.copy_overlap("a b", "a b") == 1.0  # shorter than n: compared whole
    assert V.copy_overlap("a b", "b a") == 0.0
    q = "Tom has 3 apples and gets 4 more. How many apples does he have now?"
    assert V.check_copy(q, q.upper(), CFG).reason == "identical to the original"
    near = "Tom has 3 apples and gets 4 more. How many apples does Tom have?"
    assert V.check_copy(q, near, CFG).rule == "copy"
    fresh = "A shelf holds 3 books; a librarian adds 4. Count the books on the shelf."
    assert V.check_copy(q, fresh, CFG) is None


def test_numbers_rule():
    q = "A farm has 1,200 cows and sells 3.5% of them in 2 days."
    assert V.numbers_in(q) == ["1200", "3.5", "2"]
    assert V.check_numbers(q, "Of 1200 sheep, 3.5% go in 2 days.", CFG) is None
    assert V.check_numbers(q, "Of 1200 sheep, 3.5% go in two days.", CFG).reason == \
        "missing 2 from the question"
    off = V.ValidationConfig(require_numbers=False)
    assert V.check_numbers(q, "no numbers", off) is None
    assert V.check_numbers("x_2 + y^3", "x_2 and y^3", CFG) is None


def test_length_rule():
    short = "What is 3 + 4?"  # 14 chars: up to 14 + 300 allowed, at least 7
    assert V.check_length(short, "x" * 314, CFG) is None
    assert V.check_length(short, "x" * 315, CFG).reason == \
        "315 chars, longer than 314 (original 14)"
    assert V.check_length(short, "x" * 6, CFG).reason == "6 chars, shorter than 7 (original 14)"
    long = "y" * 1000
    assert V.check_length(long, "z" * 3000, CFG) is None
    assert V.check_length(long, "z" * 3001, CFG).rule == "length"


def test_check_static_order_and_result():
    q = "What is 3 + 4?"
    good = "### RESULT_START\nORIGINAL:\nWhat is 3 + 4?\nREWRITE:\nSam owns 3 kites and buys 4." \
           "\n### RESULT_END"
    assert V.check_static(q, good, CFG) == ("Sam owns 3 kites and buys 4.", None)
    empty = "### RESULT_START\nORIGINAL:\nq\nREWRITE:\n   \n### RESULT_END"
    assert V.check_static(q, empty, CFG)[1].rule == "empty"
    assert V.check_static(q, "nothing", CFG) == (None, V.Rejection("markers",
                                                                    "no '### RESULT_START' marker"))


def test_majority_and_answer_rule():
    boxed = lambda x: f"so \\boxed{{{x}}}"  # noqa: E731
    assert V.majority_answer([boxed(3), "no answer", boxed(5), boxed(5)]) == "5"
    assert V.majority_answer([boxed(3), boxed(5)]) == "3"  # tie: first seen
    assert V.majority_answer(["none", "either"]) == ""
    assert V.check_answer("5", [boxed(5), boxed(4), boxed(5)]) is None
    assert V.check_answer("5", [boxed(4)]).reason == \
        "majority answer '4' differs from the original's '5'"
    assert V.check_answer("", [boxed(4)]).rule == "answer"


def test_retries_back_off_exponentially():
    waits, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise RetryableError("503")
        return "ok"

    assert call_with_retries(flaky, retry_on=RetryableError, retries=4, backoff_s=0.5,
                             backoff_max_s=1.5, sleep=waits.append) == "ok"
    assert waits == [0.5, 1.0, 1.5]
    with pytest.raises(RetryableError):
        call_with_retries(lambda: (_ for _ in ()).throw(RetryableError("down")),
                          retry_on=RetryableError, retries=2, backoff_s=1, backoff_max_s=9,
                          sleep=waits.append)
    assert waits[3:] == [1, 2]

    def refused():
        calls.append(1)
        raise BackendError("400")

    n = len(calls)
    with pytest.raises(BackendError):
        call_with_retries(refused, retry_on=RetryableError, retries=5, backoff_s=1,
                          backoff_max_s=1, sleep=waits.append)
    assert len(calls) == n + 1  # not retried


def test_base_url_forms():
    assert _chat_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1/chat/completions"
    assert _chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert _chat_url("https://gw.example/nim/v1") == "https://gw.example/nim/v1/chat/completions"
    with pytest.raises(ValueError, match="base URL must look like"):
        _chat_url("127.0.0.1:8000")
