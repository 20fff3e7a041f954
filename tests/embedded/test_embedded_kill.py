"""A hard kill of ``coreward train`` (SIGKILL, the OOM killer) while it writes its metrics:
the rerun resumes from the newest checkpoint, whatever half-line the kill left behind."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from nemo_coreward.embedded.checkpoint import list_checkpoints
from nemo_coreward.embedded.rundir import read_metrics


@pytest.mark.slow
def test_sigkill_with_a_torn_metrics_line_resumes(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "nemo_coreward.cli", "train", "--config-name", "tiny",
            f"model.path={tiny_model_dir}", f"run_dir={run}", "train.steps=500",
            "train.checkpoint_every=1", "eval.enabled=false", "train.export=false"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(read_metrics(run)) < 3:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    logged = len(read_metrics(run))
    saved = list_checkpoints(run)[-1][0]
    assert 3 <= logged < 500 and saved >= 2
    # The kill landed between two writes; make it land inside one, as it can.
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write(f'{{"step": {logged + 1}, "reward_mean": 0.')

    steps = saved + 2
    rerun = subprocess.run([*args[:-4], f"train.steps={steps}", *args[-3:]],
                           capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Traceback" not in rerun.stderr
    assert f"done after step {steps}" in rerun.stdout
    # Rows after the checkpoint were dropped and logged again: each step once, in order.
    assert [r["step"] for r in read_metrics(run)] == list(range(1, steps + 1))
