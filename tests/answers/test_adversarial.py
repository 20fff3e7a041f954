"""Hostile inputs: each is graded in under 2 s with a defined result; nothing crashes or hangs."""
import random
import time

import pytest

from nemo_coreward.reward import RewardConfig, Rollout, grader_for, score_rollouts

_rng = random.Random(0)
_UNICODE = "".join(chr(_rng.randint(0x20, 0x2FFF)) for _ in range(5000))

ADVERSARIAL = {
    "200k_chars": "x" * 200_000 + r"\boxed{5}",
    "200k_char_answer": r"\boxed{" + "1+" * 100_000 + "1}",
    "10k_nested_braces": r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
    "10k_unclosed_braces": r"\boxed{" + "{" * 10_000,
    "power_tower": r"\boxed{10^{10^{10^{10}}}}",
    "factorial_of_googol": r"\boxed{(10^{100})!}",
    "broken_latex": r"\boxed{\frac{1}{\sqrt{}}\left(}",
    "unbalanced_right": r"\boxed{\right) x^{ }",
    "unicode_answer": r"\boxed{" + _UNICODE[:300] + "}",
    "unicode_response": _UNICODE * 40,
    "null_bytes": "\x00\x01\boxed{\x00}",
    "hard_integral": r"\boxed{\int_0^\infty e^{-x^{x^x}} dx}",
}


@pytest.fixture(scope="module", autouse=True)
def started_engine():
    """math-verify's child starts (seconds, once per process) before anything is timed."""
    grader_for("math_verify", 1.0)._judge.parsable("x")


@pytest.mark.parametrize("mode", ["exact", "normalized", "math_verify"])
@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_answer_is_bounded(name, mode):
    rollouts = [
        Rollout("p", 0, ADVERSARIAL[name]),
        Rollout("p", 0, r"\boxed{5}"),
        Rollout("p", 1, r"\boxed{5}"),
        Rollout("p", 1, r"\boxed{x^2}"),
    ]
    start = time.monotonic()
    scored = score_rollouts(rollouts, RewardConfig("co_reward", mode))
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, f"{name} took {elapsed:.2f}s in {mode}"
    assert len(scored.scores) == 4
    assert all(s.reward in (0.0, 1.0) for s in scored.scores)
    # The sane rollouts still get the right rewards: side 1 votes "5" (first of a 1-1 tie).
    assert scored.scores[1].reward == 1.0
