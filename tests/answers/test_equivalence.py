"""Grouping answers into classes, per mode; (a, b, expected) tables by source."""
import pytest

from nemo_coreward.answers import Grader


@pytest.fixture(scope="module")
def mv():
    g = Grader("math_verify")
    yield g
    g.close()


def test_exact_is_plain_string_equality():
    g = Grader("exact")
    assert g.group(["1/2", r"\frac{1}{2}", "1/2", " ", ""]).class_ids == [0, 1, 0, -1, -1]
    assert not g.equivalent("0.5", "1/2")
    assert g.equivalent(" 5", " 5") and not g.equivalent(" 5", "5")


def test_normalized_merges_surface_forms_only():
    g = Grader("normalized")
    grouping = g.group([r"\dfrac12", "0.5", "x^2+2x+1", "(x+1)^2", "", "1/2"])
    assert grouping.class_ids == [0, 0, 1, 2, -1, 0]
    assert grouping.representatives == [r"\dfrac12", "x^2+2x+1", "(x+1)^2"]


# Cases math-verify decides; (a, b, expected) as math-verify itself answers.
SYMBOLIC = [
    ("(x+1)^2", "x^2+2x+1", True),
    (r"\sqrt{8}", r"2\sqrt{2}", True),
    (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}", True),
    (r"[1, 2)", r"[1,2)", True),
    (r"[1, 2)", r"(1, 2)", False),
    (r"\{1, 2\}", r"\{2, 1\}", True),
    ("x+1", "x-1", False),
    (r"\pi", "3.14", False),
    (r"\sin^2 x + \cos^2 x", "1", True),
    ("0.333333", r"\frac13", True),  # math-verify rounds floats to 6 places
    ("0.33", r"\frac13", False),
]


@pytest.mark.parametrize("a,b,expected", SYMBOLIC)
def test_math_verify_symbolic(mv, a, b, expected):
    assert mv.equivalent(a, b) is expected


def test_math_verify_groups_across_keys(mv):
    grouping = mv.group(["(x+1)^2", "3", "x^2+2x+1", "", "3.0", r"\sqrt{9}"])
    assert grouping.class_ids == [0, 1, 0, -1, 1, 1]


def test_numbers_never_reach_the_engine(mv):
    before = mv._judge.calls
    mv.group(["1", "2", "0.5", r"\frac{1}{2}", "3/4", "1,000", "-7", "2.25"])
    assert mv._judge.calls == before


def test_unknown_mode_lists_valid():
    with pytest.raises(ValueError, match="exact, normalized, math_verify"):
        Grader("fuzzy")


def test_judge_works_off_the_main_thread(mv):
    import threading

    out = []
    t = threading.Thread(target=lambda: out.append(mv.equivalent("2x+2", "2(x+1)")))
    t.start()
    t.join(30)
    assert out == [True]


# A stand-in for the math-verify child that hangs, signals or not, on the answer "hang".
HANGING_CHILD = r"""
import json, sys, time
sys.stdout.write('{"ready": true}\n'); sys.stdout.flush()
for line in sys.stdin:
    request = json.loads(line)
    while request.get("parse") == "hang":
        time.sleep(1)
    sys.stdout.write(json.dumps({"eq": request.get("parse") != "broken"}) + "\n"); sys.stdout.flush()
"""  # noqa: E501 (a line of the raw-string child script above; wrapping would edit it)


def test_probes_are_batched_and_a_hanging_answer_costs_only_itself():
    """One exchange per batch; an answer that hangs the child is killed at its own
    deadline and the rest of the batch goes to the replacement child."""
    import subprocess
    import sys

    from nemo_coreward.answers.symbolic import SymbolicJudge

    judge = SymbolicJudge(timeout_s=0.5)
    judge._popen = lambda: subprocess.Popen([sys.executable, "-c", HANGING_CHILD],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    exchanges = []
    ask_batch = judge._ask_batch
    judge._ask_batch = lambda requests: exchanges.append(len(requests)) or ask_batch(requests)
    try:
        judge.probe_all(["a", "hang", "b", "broken", "c", "a"])
        assert judge._parses == {"a": True, "hang": False, "b": True, "broken": False, "c": True}
        assert judge.timeouts == 1 and exchanges == [5, 3]
        judge.probe_all(["b", "c"])  # cached: no exchange
        assert exchanges == [5, 3]
    finally:
        judge.close()
