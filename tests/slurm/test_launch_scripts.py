"""The sbatch files of examples/slurm/, submitted unchanged to the test cluster.

With CONTAINER empty they run on the host with the project's environment (this Python's
prefix): the reward server (``coreward serve``) in one job step, the embedded trainer
(``coreward train``, the tiny config on CPU) in another, finding the server through
``scontrol show hostnames``. Each job gets its own free ports, run directory and output file.
"""
from __future__ import annotations

import json
import re
import socket
import sys
import time
from pathlib import Path

import pytest

from .cluster import REPO, Cluster

SCRIPTS = REPO / "examples" / "slurm"
SINGLE = SCRIPTS / "coreward_embedded.sbatch"
HET = SCRIPTS / "coreward_embedded_het.sbatch"
DONE = frozenset({"COMPLETED"})
STEPS = 3
# One Triton model instance: PyTriton 0.7.0's extra instances fetch their config from a
# unix socket that can exist before it listens, a start-up race that a loaded machine hits.
SERVER_ARGS = "instances=1"
# Bounds, not expectations: a run takes ~25 s (server ready in ~6 s, a tiny step well under
# a second), several times that on a 2-core machine busy with other work.
JOB_TIMEOUT_S = 240

pytestmark = pytest.mark.slow


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _submit(cluster: Cluster, script: Path, tmp_path: Path, model: Path, run_dir: Path,
            name: str = "job", **env: str) -> tuple[str, Path]:
    """sbatch SCRIPT with the tiny run's variables; returns (job id, output file)."""
    http, grpc, metrics = _free_ports(3)
    out = tmp_path / f"{name}.out"
    variables = {
        "PROJECT_DIR": str(REPO), "VENV": sys.prefix, "CONTAINER": "", "RUN_DIR": str(run_dir),
        "SERVER_HTTP_PORT": str(http), "SERVER_GRPC_PORT": str(grpc),
        "SERVER_METRICS_PORT": str(metrics), "SERVER_WORKERS": "1", "SERVER_ARGS": SERVER_ARGS,
        "SERVER_BIND": "", "SERVER_READY_TIMEOUT": "180",
        "TRAIN_CONFIG": "tiny", "MODEL": str(model), "DEVICE": "cpu", "STEPS": str(STEPS),
        "TRAIN_ARGS": "eval.enabled=false",
        **env,
    }
    job = cluster.submit(script, f"--output={out}", f"--chdir={tmp_path}", env=variables)
    return job, out


def _metric_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def _checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in (run_dir / "checkpoints").glob("step_*.ckpt")
                  if (m := re.fullmatch(r"step_(\d+)\.ckpt", p.name)))


def _assert_trained_through_server(out: Path, run_dir: Path, steps: list[int]) -> None:
    log = out.read_text()
    assert _metric_steps(run_dir) == steps, log[-3000:]
    # one scoring request per step reached the server (the server's own log line)
    assert len(re.findall(r"scored \d+ of \d+ rollouts", log)) >= len(steps), log[-3000:]
    config = (run_dir / "config.yaml").read_text()
    assert re.search(r"server_url: http://127\.0\.0\.1:\d+", config), config
    assert "stopping the reward server" in log


def test_single_allocation_trains_through_the_server(slurm_cluster: Cluster, tmp_path: Path,
                                                     tiny_model_dir: Path) -> None:
    run_dir = tmp_path / "run"
    job, out = _submit(slurm_cluster, SINGLE, tmp_path, tiny_model_dir, run_dir)
    info = slurm_cluster.wait(job, DONE, timeout=JOB_TIMEOUT_S, log=out)
    assert info["ExitCode"] == "0:0"
    assert "reward server on n1" in out.read_text()
    _assert_trained_through_server(out, run_dir, list(range(1, STEPS + 1)))


def test_het_job_runs_server_and_actor_on_their_own_nodes(
        slurm_cluster: Cluster, tmp_path: Path, tiny_model_dir: Path) -> None:
    run_dir = tmp_path / "run"
    job, out = _submit(slurm_cluster, HET, tmp_path, tiny_model_dir, run_dir)
    slurm_cluster.wait(job, DONE, timeout=JOB_TIMEOUT_S, log=out)
    groups = slurm_cluster.components(job)
    assert [g["JobState"] for g in groups] == ["COMPLETED", "COMPLETED"]
    assert [g["NodeList"] for g in groups] == ["n1", "n2"]
    assert "reward server on n1" in out.read_text()
    _assert_trained_through_server(out, run_dir, list(range(1, STEPS + 1)))


def test_server_that_exits_fails_the_job_fast(slurm_cluster: Cluster, tmp_path: Path,
                                              tiny_model_dir: Path) -> None:
    run_dir = tmp_path / "run"
    start = time.monotonic()
    job, out = _submit(slurm_cluster, SINGLE, tmp_path, tiny_model_dir, run_dir,
                       SERVER_ARGS=f"{SERVER_ARGS} no_such_key=1")
    info = slurm_cluster.wait(job, frozenset({"FAILED"}), timeout=60, log=out)
    log = out.read_text()
    assert info["ExitCode"] == "1:0"
    assert "ERROR: the reward server step exited (status 2) before it was ready" in log
    assert "no_such_key" in log  # the server's own complaint is in the job's output
    assert "actor:" not in log and not run_dir.exists()
    assert time.monotonic() - start < 30


def test_server_never_ready_times_out_and_fails_the_job(
        slurm_cluster: Cluster, tmp_path: Path, tiny_model_dir: Path) -> None:
    """The server listens where the actor does not look (127.0.0.2): a bounded wait, then
    FAILED with the reason, and the server step is stopped rather than left running."""
    run_dir = tmp_path / "run"
    job, out = _submit(slurm_cluster, HET, tmp_path, tiny_model_dir, run_dir,
                       SERVER_BIND="127.0.0.2", SERVER_READY_TIMEOUT="8")
    info = slurm_cluster.wait(job, frozenset({"FAILED"}), timeout=60, log=out)
    log = out.read_text()
    assert info["ExitCode"] == "1:0"
    assert re.search(r"ERROR: the reward server at http://127\.0\.0\.1:\d+ was not ready "
                     r"within 8s", log), log[-3000:]
    assert "stopping the reward server" in log
    assert not run_dir.exists()
    assert slurm_cluster.run("squeue", "-h", "-s", "-j", job).strip() == ""


def test_cancelled_run_resumes_from_its_checkpoint(slurm_cluster: Cluster, tmp_path: Path,
                                                   tiny_model_dir: Path) -> None:
    run_dir = tmp_path / "run"
    job, out = _submit(slurm_cluster, SINGLE, tmp_path, tiny_model_dir, run_dir,
                       name="first", STEPS="200")
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while len(_checkpoint_steps(run_dir)) < 2:  # the file names only: the run is writing
        assert time.monotonic() < deadline, out.read_text()[-3000:]
        assert slurm_cluster.job(job)["JobState"] in ("PENDING", "RUNNING"), out.read_text()
        time.sleep(0.25)
    slurm_cluster.cancel(job)
    slurm_cluster.wait(job, frozenset({"CANCELLED"}), timeout=30, log=out)
    _wait_for_no_steps(slurm_cluster, job)
    saved = _checkpoint_steps(run_dir)[-1]
    assert 2 <= saved < 200

    total = saved + 2
    job2, out2 = _submit(slurm_cluster, SINGLE, tmp_path, tiny_model_dir, run_dir,
                         name="second", STEPS=str(total))
    slurm_cluster.wait(job2, DONE, timeout=JOB_TIMEOUT_S, log=out2)
    log = out2.read_text()
    assert "resuming from the newest checkpoint" in log
    assert f"resumed after step {saved}" in log
    # steps after the checkpoint are dropped and redone once: 1..total, each exactly once
    assert _metric_steps(run_dir) == list(range(1, total + 1)), log[-3000:]
    assert _checkpoint_steps(run_dir)[-1] == total


def _wait_for_no_steps(cluster: Cluster, job: str, timeout: float = 60) -> None:
    """A cancelled job's steps take up to KillWait to die; the next run must not race them."""
    deadline = time.monotonic() + timeout
    while cluster.run("squeue", "-h", "-s", "-j", job).strip():
        assert time.monotonic() < deadline, f"steps of cancelled job {job} still running"
        time.sleep(0.25)
