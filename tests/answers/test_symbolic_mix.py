"""The fast ``math_verify`` path gives the all-pairs math-verify grader's rewards on the
benchmark's symbolic mix (expanded and factored polynomials, radicals, multiples of pi,
tuples, intervals, sets, fraction spellings, wrong, empty and pathological answers)."""
import importlib.util
import sys
from pathlib import Path

import pytest

from nemo_coreward.reward import RewardConfig, score_rollouts

pytestmark = pytest.mark.slow
BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "reward_throughput.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARK.parent))  # its sibling module machine.py
    spec = importlib.util.spec_from_file_location("reward_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Rewards (of 192) on which math_verify and the canonical keys disagree, counted once per
# seeded step: the mix exercises equivalence beyond canonical keys, or this proves nothing.
BEYOND_KEYS = {0: 59, 11: 52}


@pytest.mark.parametrize("seed", [0, 11])
def test_fast_path_equals_all_pairs_math_verify(bench, seed):
    step = bench.make_step(pairs=12, rollouts=8, seed=seed, words=10, mix="symbolic")
    # A generous time limit: a comparison cut short on a busy machine is not a drift.
    ours = score_rollouts(step, RewardConfig("co_reward", "math_verify", timeout_s=30.0))
    assert ours.rewards == bench.naive_rewards(step)
    keyed = score_rollouts(step, RewardConfig("co_reward", "normalized"))
    assert len(step) == 192  # 12 pairs x 2 sides x 8 rollouts
    assert sum(a != b for a, b in zip(ours.rewards, keyed.rewards)) == BEYOND_KEYS[seed]
