"""A real ``coreward serve`` on free loopback ports for the session, and test batches."""
from __future__ import annotations

import math
import random

import pytest

from nemo_coreward.reward import Rollout, ScoredBatch

from .serverproc import ServerProcess, free_ports

# Forms that are equal under `normalized` but not under `exact`, plus empty answers.
FORMS = {
    "1/2": [r"\frac{1}{2}", r"\dfrac{1}{2}", "0.5", r"\frac12"],
    "3": ["3", "3.0", r"3\,", "x = 3"],
    "12": ["12", "12.00", r"\text{12}", "12"],
    "7": ["7", "7", "7.0", "7"],
}


def make_step(pairs: int, n: int, seed: int, sides: int = 2, ground_truth: bool = True,
              tag: str = "") -> list[Rollout]:
    """``pairs`` x ``sides`` x ``n`` rollouts with mixed answer forms and some empty answers.

    ``tag`` goes into every pair id, so batches made with different tags differ."""
    rng = random.Random(seed)
    out = []
    truths = list(FORMS)
    for p in range(pairs):
        truth = truths[(p + seed) % len(truths)]
        for side in range(sides):
            for _ in range(n):
                u = rng.random()
                if u < 0.1:
                    text = "I could not finish."
                else:
                    key = truth if u < 0.6 else rng.choice(truths)
                    text = (f"Work for {tag}{p}/{side}. "
                            f"So the answer is \\boxed{{{rng.choice(FORMS[key])}}}.")
                out.append(Rollout(f"{tag}q{p}", side, text, truth if ground_truth else None))
    return out


def assert_same(got: ScoredBatch, want: ScoredBatch) -> None:
    """Scores equal row by row; metrics equal key by key (NaN equals NaN)."""
    assert got.scores == want.scores
    assert set(got.metrics) == set(want.metrics)
    for k, v in want.metrics.items():
        w = got.metrics[k]
        assert (math.isnan(v) and math.isnan(w)) or v == w, (k, w, v)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = ServerProcess(tuple(free_ports(3)), tmp_path_factory.mktemp("server") / "serve.log")
    srv.start()
    try:
        yield srv
    finally:
        code, _ = srv.terminate()
        left = srv.wait_session_gone(30)
        if left:
            srv.kill_group()
    assert code == 0, srv.tail()
    assert not left, f"processes left after SIGTERM: {left}"
