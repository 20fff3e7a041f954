"""A hard kill of ``coreward train`` (SIGKILL, the OOM killer) while it writes its metrics:
the rerun resumes from the newest checkpoint, whatever half-line the kill left behind."""
from __future__ import annotations

import signal
import subprocess

import pytest

from nemo_coreward.embedded.checkpoint import list_checkpoints
from nemo_coreward.embedded.rundir import read_metrics
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
