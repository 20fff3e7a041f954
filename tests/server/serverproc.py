"""Start and stop a real ``coreward serve`` in a child process on loopback.

The child gets an environment WITHOUT ``LD_LIBRARY_PATH``, so every test that talks to
it also checks that the server sets up the library path for Triton by itself. It runs in
its own session so a failed teardown can still reach Triton's children.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


@dataclass
class ServerProcess:
    ports: tuple[int, int, int]
    log: Path
    proc: subprocess.Popen | None = None
    workers: int = 2
    instances: int = 2

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.ports[1]}"

    def start(self, ready_timeout_s: float = 120.0) -> None:
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        http, grpc, metrics = self.ports
        cmd = [sys.executable, "-m", "nemo_coreward.cli", "serve", f"http_port={http}",
               f"grpc_port={grpc}", f"metrics_port={metrics}", f"workers={self.workers}",
               f"instances={self.instances}", "request_timeout_s=60"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} at start; "
                                   f"log: {self.log}\n{self.tail()}")
            if http_status(f"{self.http_url}/v2/models/co_reward/ready") == 200:
                return
            time.sleep(0.3)
        self.kill_group()
        raise RuntimeError(f"server not ready after {ready_timeout_s} s; "
                           f"log: {self.log}\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def terminate(self, timeout_s: float = 60.0) -> tuple[int | None, float]:
        """SIGTERM; returns (exit code or None if it had to be killed, seconds taken)."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill_group()
            return None, time.monotonic() - start
        return code, time.monotonic() - start

    def crash(self) -> None:
        """SIGKILL every process of the server at once, as a dying node, container or
        SLURM step does. A SIGKILL of the server process alone is not a clean test:
        Triton gets SIGTERM through its parent-death signal and its Python-backend stubs
        can hang finalising against the dead process (a PyTriton limitation, see
        docs/server.md)."""
        self.kill_group()

    def kill_group(self) -> None:
        """SIGKILL the server's whole session, then remove the shared memory its processes
        had mapped (nobody is left to unlink it)."""
        if self.proc is None:
            return
        shm = set()
        for pid in self.session_processes():
            try:
                with open(f"/proc/{pid}/maps") as f:
                    shm.update(line.split()[-1] for line in f if " /dev/shm/" in line)
            except OSError:
                continue
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self.wait_session_gone(30)
        for path in shm:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def session_processes(self) -> list[int]:
        """Pids still in the server's session (Triton, its stubs, the scoring workers)."""
        assert self.proc is not None
        sid = self.proc.pid
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
        return pids

    def wait_session_gone(self, timeout_s: float) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            left = self.session_processes()
            if not left:
                return []
            time.sleep(0.2)
        return self.session_processes()
