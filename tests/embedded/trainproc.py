"""``coreward train`` as a child process on the tiny config, for the tests that interrupt it
(SIGTERM, SIGKILL) and check that the rerun resumes."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from nemo_coreward.embedded.rundir import read_metrics


def train_command(model_dir: Path, run: Path, steps: int, checkpoint_every: int,
                  *overrides: str, evaluate: bool = False, export: bool = False) -> list[str]:
    """The command line of a tiny run in ``run`` (by default no held-out evaluation and no
    export, the slow parts of a tiny run)."""
    return [sys.executable, "-m", "nemo_coreward.cli", "train", "--config-name", "tiny",
            f"model.path={model_dir}", f"run_dir={run}", f"train.steps={steps}",
            f"train.checkpoint_every={checkpoint_every}", f"eval.enabled={str(evaluate).lower()}",
            f"train.export={str(export).lower()}", *overrides]


def wait_for_rows(proc: subprocess.Popen, run: Path, rows: int, timeout_s: float,
                  poll_s: float) -> None:
    """Wait until ``run``'s metrics hold ``rows`` rows; the run must still be going."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(read_metrics(run)) < rows:
        assert proc.poll() is None, proc.communicate()
        time.sleep(poll_s)
