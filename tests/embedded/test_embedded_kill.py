"""Hard kills (SIGKILL, the OOM killer) of ``coreward train``: nothing finished is lost.

The first test kills the trainer from outside at a random moment and tears its last metrics
row by hand. The others make it kill itself at a named point (``COREWARD_KILL_AT``, see
``nemo_coreward.embedded.killpoint``), check what the kill left, rerun the same command and
check that the run finishes exactly as an uninterrupted one of the same config did: the same
metric rows (the wall-time measures left out), samples, held-out evaluations, printed
summary and exported weights, bit for bit (CPU runs are deterministic).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from nemo_coreward.embedded import killpoint
from nemo_coreward.embedded.checkpoint import checkpoint_dir, list_checkpoints
from nemo_coreward.embedded.rundir import read_metrics
from nemo_coreward.io.atomic import leftover_temporaries
from nemo_coreward.io.jsonl import read_jsonl
from tests.embedded.trainproc import train_command, wait_for_rows


@pytest.mark.slow
def test_sigkill_with_a_torn_metrics_line_resumes(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(train_command(tiny_model_dir, run, 500, 1),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(proc, run, 3, timeout_s=180, poll_s=0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    logged = len(read_metrics(run))
    saved = list_checkpoints(run)[-1][0]
    assert 3 <= logged < 500 and saved >= 2
    # The kill landed between two writes; make it land inside one, as it can.
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write(f'{{"step": {logged + 1}, "reward_mean": 0.')

    steps = saved + 2
    rerun = subprocess.run(train_command(tiny_model_dir, run, steps, 1),
                           capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Traceback" not in rerun.stderr
    assert f"done after step {steps}" in rerun.stdout
    # Rows after the checkpoint were dropped and logged again: each step once, in order.
    assert [r["step"] for r in read_metrics(run)] == list(range(1, steps + 1))


# Four steps, a checkpoint every two, held-out evaluation and export: every kind of file a
# run writes. An entropy bonus makes every step move the weights (a random model's rewards
# are mostly zero), so a resume that restored the wrong state would show.
STEPS, EVERY = 4, 2
CONFIG = ["loss.entropy_coef=0.01", "reward.name=self_certainty"]
SUMMARY = ("held-out after:", "done after step", "held-out greedy accuracy:")


def _train(model_dir: Path, run: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, killpoint.ENV: kill_at} if kill_at else None
    return subprocess.run(train_command(model_dir, run, STEPS, EVERY, *CONFIG, evaluate=True,
                                        export=True),
                          capture_output=True, text=True, timeout=600, env=env, check=False)


@dataclass
class Finished:
    """What a finished run left that must not depend on whether it was killed."""

    rows: list[dict]
    samples: list[dict]
    evals: dict
    summary: list[str]
    weights: dict[str, torch.Tensor]

    @classmethod
    def of(cls, run: Path, stdout: str) -> Finished:
        from safetensors.torch import load_file

        rows = [{k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"}
                for r in read_metrics(run)]
        return cls(rows, read_jsonl(run / "samples.jsonl").rows,
                   json.loads((run / "eval.json").read_text()),
                   [line for line in stdout.splitlines() if line.startswith(SUMMARY)],
                   load_file(str(run / "final" / "model.safetensors")))

    def assert_same(self, other: Finished) -> None:
        assert self.rows == other.rows
        assert self.samples == other.samples
        assert self.evals == other.evals
        assert self.summary == other.summary and len(self.summary) == len(SUMMARY)
        assert self.weights.keys() == other.weights.keys()
        for name, value in self.weights.items():
            assert torch.equal(value, other.weights[name]), name


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory) -> Finished:
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = _train(tiny_model_dir, run)
    assert done.returncode == 0, done.stderr[-2000:]
    return Finished.of(run, done.stdout)


@dataclass(frozen=True)
class Kill:
    """Where the trainer kills itself, and the complete metric rows and checkpoints left."""

    point: str
    step: int
    rows: int
    saved: tuple[int, ...]
    why: str


KILLS = [
    Kill("generate", 4, 3, (2,), "row 3 was logged after the last checkpoint: dropped, redone"),
    Kill("update", 3, 2, (2,), "weights and optimiser changed in memory, not on disk"),
    Kill("checkpoint", 4, 4, (2,), "a partial temporary of step 4's checkpoint; rows 3-4 redone"),
    Kill("metrics", 3, 2, (2,), "half of row 3 written: a torn last line"),
    Kill("final_eval", 4, 4, (2, 4), "every step done and exported, the final evaluation not"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kill", KILLS, ids=lambda k: f"{k.point}@{k.step}")
def test_sigkill_at_a_trainer_point_then_the_rerun_finishes_as_if_uninterrupted(
        tiny_model_dir, tmp_path, uninterrupted, kill):
    run = tmp_path / "run"
    killed = _train(tiny_model_dir, run, kill_at=f"{kill.point}:{kill.step}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [r["step"] for r in read_metrics(run)] == list(range(1, kill.rows + 1)), kill.why
    assert tuple(step for step, _ in list_checkpoints(run)) == kill.saved, kill.why
    left = leftover_temporaries(checkpoint_dir(run), "step_*.ckpt")
    if kill.point == "checkpoint":
        (partial,) = left
        assert partial.name.startswith(f".step_{kill.step:06d}.ckpt.")
        assert partial.stat().st_size >= 1 << 20
    else:
        assert left == []
    torn = not (run / "metrics.jsonl").read_bytes().endswith(b"\n")
    assert torn is (kill.point == "metrics")
    evals = json.loads((run / "eval.json").read_text())
    assert set(evals) == {"before"}  # the final evaluation never finished
    assert (run / "final").is_dir() is (kill.point == "final_eval")

    rerun = _train(tiny_model_dir, run)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"(resumed after step {kill.saved[-1]})" in rerun.stdout
    assert leftover_temporaries(checkpoint_dir(run), "step_*.ckpt") == []
    Finished.of(run, rerun.stdout).assert_same(uninterrupted)
