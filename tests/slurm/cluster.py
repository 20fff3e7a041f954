"""Drive the test cluster of scripts/slurm_test_cluster.sh from Python: submit, poll, cancel.

Job state comes from ``scontrol show job -o ID`` (the test cluster keeps no accounting, so
``sacct`` has nothing); every wait is bounded and, on a timeout, says what the job was doing.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm_test_cluster.sh"
DAEMONS = ("munged", "slurmctld", "slurmd", "slurmstepd")
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                      "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})
_PR_SET_CHILD_SUBREAPER = 36


def why_unavailable() -> str | None:
    """The reason the test cluster cannot be built here, or None when it can."""
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"  # daemons live in sbin
    if all(shutil.which(tool, path=path) for tool in ("sbatch", "slurmctld", "munged")):
        return None
    if os.geteuid() != 0:
        return "SLURM is not installed and installing it needs root (apt-get)"
    if not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is unavailable to install it"
    return None


def install() -> None:
    """Debian's slurm-wlm and munge, when missing (``apt-get update`` once, then install)."""
    subprocess.run(["bash", str(SCRIPT), "install"], check=True, timeout=600)


def set_subreaper(on: bool) -> None:
    """Adopt the daemons' orphans so teardown can reap them instead of leaving zombies.

    munged, slurmctld and slurmd daemonise and slurmd forks slurmstepd; their parents exit,
    and on machines whose init never reaps they would stay zombies after they stop.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def proc_state(pid: int) -> str | None:
    """The one-letter State of /proc/PID/status ("Z" for a zombie), None when gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^State:\s+(\S)", text, re.MULTILINE)
    return match.group(1) if match else None


def reap_daemon_zombies() -> None:
    """waitpid our adopted SLURM/munge zombies; other children are left to their owners."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if (fields.get("PPid", "").strip() == me and fields.get("State", "").startswith("Z")
                and fields.get("Name", "").strip() in DAEMONS):
            try:
                os.waitpid(int(entry.name), os.WNOHANG)
            except ChildProcessError:
                pass


@dataclass(frozen=True)
class Cluster:
    """A running test cluster: its folder, config and the daemons' pids at start."""

    dir: Path
    conf: Path
    daemon_pids: dict[str, int]

    @classmethod
    def start(cls, folder: Path) -> Cluster:
        subprocess.run(["bash", str(SCRIPT), "start", str(folder)], check=True, timeout=120)
        pids = {p.stem: int(p.read_text()) for p in sorted((folder / "run").glob("*.pid"))}
        return cls(dir=folder, conf=folder / "etc" / "slurm.conf", daemon_pids=pids)

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.dir)], check=True, timeout=120)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a client (and, through sbatch, a job) runs with."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *argv: str, timeout: float = 30) -> str:
        done = subprocess.run(argv, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def submit(self, script: Path, *sbatch_args: str, env: dict[str, str] | None = None) -> str:
        """sbatch SCRIPT; returns the job id. ``env`` reaches the job (sbatch exports all)."""
        done = subprocess.run(["sbatch", "--parsable", *sbatch_args, str(script)],
                              env=self.env(**(env or {})), capture_output=True, text=True,
                              timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch {script} failed ({done.returncode}): {done.stderr}")
        return done.stdout.strip().split(";")[0]

    def components(self, job_id: str) -> list[dict[str, str]]:
        """``scontrol show job -o``'s fields, one dict per het component (one for a plain job)."""
        lines = self.run("scontrol", "show", "job", "-o", job_id).splitlines()
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines if line.strip()]

    def job(self, job_id: str) -> dict[str, str]:
        """The job's fields (a het job's leader, whose state is the whole job's)."""
        return self.components(job_id)[0]

    def wait(self, job_id: str, states: frozenset[str] | set[str], timeout: float,
             log: Path | None = None) -> dict[str, str]:
        """Poll until the job's state is in ``states``; fail on timeout or another end state."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            state = info.get("JobState", "")
            if state in states:
                return info
            if state in FINISHED or time.monotonic() > deadline:
                tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
                why = "timed out" if state not in FINISHED else "ended"
                raise AssertionError(
                    f"job {job_id} {why} in {state} (wanted {sorted(states)}; "
                    f"reason {info.get('Reason')}, exit {info.get('ExitCode')})\n{tail}")
            time.sleep(0.25)

    def cancel(self, job_id: str) -> None:
        self.run("scancel", job_id)

    def live_daemons(self) -> dict[str, int]:
        """Daemons from start that still run (zombies count as stopped)."""
        return {name: pid for name, pid in self.daemon_pids.items()
                if proc_state(pid) not in (None, "Z")}
