"""The test cluster itself: two idle nodes, side-by-side steps, het jobs, a clean teardown.

These prove what the launch-script tests rely on, with jobs that need nothing but bash.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from .cluster import Cluster, proc_state, reap_daemon_zombies

JOBS = Path(__file__).parent / "jobs"
DONE = frozenset({"COMPLETED"})


def test_both_nodes_idle(slurm_cluster: Cluster) -> None:
    states = slurm_cluster.run("sinfo", "-h", "-N", "-o", "%N %t").split()
    assert states == ["n1", "idle", "n2", "idle"]


def test_two_steps_run_side_by_side(slurm_cluster: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "job.out"
    job = slurm_cluster.submit(JOBS / "two_steps.sbatch", f"--output={log}",
                               env={"OUT_DIR": str(tmp_path)})
    info = slurm_cluster.wait(job, DONE, timeout=60, log=log)
    assert info["ExitCode"] == "0:0"
    assert "second step on n1 beside the first" in log.read_text()
    assert (tmp_path / "hostnames").read_text().split() == ["n1"]


def test_het_job_puts_each_group_on_its_own_node(slurm_cluster: Cluster,
                                                  tmp_path: Path) -> None:
    log = tmp_path / "job.out"
    job = slurm_cluster.submit(JOBS / "het_hostnames.sbatch", f"--output={log}",
                               env={"OUT_DIR": str(tmp_path)})
    slurm_cluster.wait(job, DONE, timeout=60, log=log)
    group0 = (tmp_path / "group0").read_text().split()[-1]
    group1 = (tmp_path / "group1").read_text().split()[-1]
    assert {group0, group1} == {"n1", "n2"}
    assert (tmp_path / "server_node").read_text().strip() == group0


@pytest.mark.usefixtures("slurm_cluster")  # SLURM installed, this process a subreaper
def test_teardown_cancels_jobs_and_stops_every_daemon(tmp_path: Path) -> None:
    """A second cluster beside the session's: stop it with a job running, leave nothing."""
    cluster = Cluster.start(tmp_path / "cluster")
    try:
        job = cluster.submit(JOBS / "sleep.sbatch", f"--output={tmp_path / 'job.out'}",
                             env={"SLEEP_S": "6007"})
        cluster.wait(job, frozenset({"RUNNING"}), timeout=30)
        deadline = time.monotonic() + 30
        while f"{job}.0" not in cluster.run("squeue", "-h", "-s", "-j", job, "-o", "%i").split():
            assert time.monotonic() < deadline, f"job {job}'s step never started"
            time.sleep(0.2)
    finally:
        cluster.stop()
        reap_daemon_zombies()
    assert cluster.live_daemons() == {}
    assert all(proc_state(pid) is None for pid in cluster.daemon_pids.values())
    assert _processes_running("sleep 6007") == []


def _processes_running(cmdline: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if text == cmdline and proc_state(int(entry.name)) not in (None, "Z"):
            found.append(int(entry.name))
    return found
