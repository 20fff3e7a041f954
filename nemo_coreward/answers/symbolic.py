"""Symbolic equivalence with math-verify, under a hard time limit that works anywhere.

math-verify bounds its own work with ``signal.alarm``, which only works on the main
thread and cannot interrupt sympy stuck inside C code (``10^{10^{10^{10}}}`` builds an
integer of 10^10^10 digits). So comparisons run in a child process
(``python -m nemo_coreward.answers.symbolic_worker``) spoken to over pipes: on a
deadline the child is killed and restarted on the next call. This works on any thread,
inside daemon processes and pool workers, where ``multiprocessing`` children cannot be
created. The child keeps its own parse cache; the parent caches verdicts.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import threading
from collections import OrderedDict

MAX_SYMBOLIC_CHARS = 512  # longer answers are never parsed: compared by key only
STARTUP_TIMEOUT_S = 60.0


class SymbolicJudge:
    """``equivalent(gold, pred) -> bool | None`` (``None``: timed out or failed)."""

    def __init__(self, timeout_s: float = 2.0, cache_size: int = 65536) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], bool | None] = OrderedDict()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self.timeouts = 0
        self.calls = 0

    # -- child process management -------------------------------------------------
    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nemo_coreward.answers.symbolic_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        # Importing sympy takes a second or two; that is not the comparison's time.
        if self._read_line(proc, STARTUP_TIMEOUT_S) is None:
            proc.kill()
            proc.wait()
            raise RuntimeError("math-verify worker did not start; is math-verify installed?")
        return proc

    @staticmethod
    def _read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> bytes | None:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            if not sel.select(timeout_s):
                return None
        return proc.stdout.readline() or None  # type: ignore[union-attr]

    def _child(self) -> subprocess.Popen[bytes]:
        # A forked copy of this object must not share the parent's pipes.
        if self._proc is None or self._proc.poll() is not None or self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            self._proc = self._start()
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._owner_pid == os.getpid():
                try:
                    self._proc.stdin.close()  # type: ignore[union-attr]
                    self._proc.wait(timeout=2)
                except Exception:
                    self._kill()
            self._proc = None

    def __del__(self) -> None:  # best effort; never raise at interpreter exit
        try:
            if self._proc is not None and self._owner_pid == os.getpid():
                self._proc.kill()
        except Exception:
            pass

    # -- comparisons ---------------------------------------------------------------
    def _ask(self, gold: str, pred: str) -> bool | None:
        proc = self._child()
        line = json.dumps({"gold": gold, "pred": pred}).encode() + b"\n"
        try:
            proc.stdin.write(line)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            self._kill()
            return None
        reply = self._read_line(proc, self.timeout_s)
        if reply is None:
            self.timeouts += 1
            self._kill()
            return None
        return json.loads(reply).get("eq")

    def equivalent(self, gold: str, pred: str) -> bool | None:
        if len(gold) > MAX_SYMBOLIC_CHARS or len(pred) > MAX_SYMBOLIC_CHARS:
            return None
        key = (gold, pred)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            self.calls += 1
            verdict = self._ask(gold, pred)
            self._cache[key] = verdict
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return verdict
