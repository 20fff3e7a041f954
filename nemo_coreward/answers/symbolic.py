"""Symbolic equivalence with math-verify, under a hard time limit that works anywhere.

math-verify bounds its own work with ``signal.alarm``, which only works on the main
thread and cannot interrupt sympy stuck inside C code (``10^{10^{10^{10}}}`` builds an
integer of 10^10^10 digits). So comparisons run in a child process
(``python -m nemo_coreward.answers.symbolic_worker``) spoken to over pipes: on a
deadline the child is killed and restarted on the next call. This works on any thread,
inside daemon processes and pool workers, where ``multiprocessing`` children cannot be
created. The child keeps its own parse cache; the parent caches verdicts.

Work is sent in batches (``probe_all`` parses every answer of a step that may need the
engine in one exchange): the child answers each item on its own line as it finishes,
and each line has its own deadline, so the time limit still holds per item; on a
deadline the child is killed and the rest of the batch goes to its replacement.
"""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

MAX_SYMBOLIC_CHARS = 512  # longer answers are never parsed: compared by key only
MAX_BATCH_BYTES = 32768  # below a pipe's buffer, so writing a batch never blocks
STARTUP_TIMEOUT_S = 60.0
CHILD_BUDGET_SHARE = 0.75  # the child stops itself at 75% of the limit; the kill is the rest


class SymbolicJudge:
    """``equivalent(gold, pred) -> bool | None`` (``None``: timed out or failed).

    The child answers ``None`` itself when math-verify's own limit fired (it then returns
    False, which would be a guess); the parent kills the child when even that limit does
    not bring an answer back within ``timeout_s``.
    """

    def __init__(self, timeout_s: float = 1.0, cache_size: int = 65536) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], bool | None] = OrderedDict()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._spare: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._pending = b""  # read from the child beyond the last full line
        self._parses: dict[str, bool] = {}
        self._owner_pid = os.getpid()
        self.timeouts = 0
        self.calls = 0

    # -- child process management -------------------------------------------------
    # A warm spare child is kept so that killing a stuck child costs no import time.
    def _popen(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "nemo_coreward.answers.symbolic_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def _child(self) -> subprocess.Popen[bytes]:
        if self._owner_pid != os.getpid():  # a forked copy must not share the parent's pipes
            self._proc = self._spare = None
            self._owner_pid = os.getpid()
        if self._proc is None or self._proc.poll() is not None:
            self._proc, self._ready, self._pending = self._spare or self._popen(), False, b""
            self._spare = self._popen()
        if not self._ready:
            # Importing sympy takes a second or two; that is not the comparison's time.
            if self._read_line(self._proc, STARTUP_TIMEOUT_S) is None:
                self._kill()
                raise RuntimeError("math-verify worker did not start; is math-verify installed?")
            self._ready = True
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            self._pending = b""

    def _read_line(self, proc: subprocess.Popen[bytes], timeout_s: float) -> bytes | None:
        """The child's next line, or ``None`` at the deadline or end of output. Reads the
        descriptor itself: a buffered reader would hide lines already read from select."""
        deadline = time.monotonic() + timeout_s
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def close(self) -> None:
        with self._lock:
            if self._owner_pid == os.getpid():
                for proc in (self._proc, self._spare):
                    if proc is not None:
                        proc.kill()
                        proc.wait()
            self._proc = self._spare = None

    def __del__(self) -> None:  # best effort; never raise at interpreter exit
        try:
            if self._owner_pid == os.getpid():
                for proc in (self._proc, self._spare):
                    if proc is not None:
                        proc.kill()
        except Exception:
            pass

    # -- comparisons ---------------------------------------------------------------
    def _ask_batch(self, requests: list[dict]) -> list[bool | None]:
        """Verdicts for a prefix of ``requests``: all of them, or up to and including the
        first that missed its deadline (``None``; the child is then killed)."""
        proc = self._child()
        budget = self.timeout_s * CHILD_BUDGET_SHARE
        lines = b"".join(json.dumps(dict(r, budget_s=budget)).encode() + b"\n" for r in requests)
        try:
            proc.stdin.write(lines)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            self._kill()
            return [None]
        verdicts: list[bool | None] = []
        for _ in requests:
            reply = self._read_line(proc, self.timeout_s)
            if reply is None:
                self.timeouts += 1
                self._kill()
                return verdicts + [None]
            verdicts.append(json.loads(reply).get("eq"))
        return verdicts

    def _ask(self, request: dict) -> bool | None:
        return self._ask_batch([request])[0]

    def probe_all(self, answers: Sequence[str]) -> None:
        """``parsable`` for many answers at once: one exchange with the child per
        ``MAX_BATCH_BYTES`` of answers instead of one per answer."""
        with self._lock:
            todo = [a for a in dict.fromkeys(answers)
                    if len(a) <= MAX_SYMBOLIC_CHARS and a not in self._parses]
            while todo:
                batch, size = [], 0
                for a in todo:
                    size += len(a.encode("utf-8", "replace")) + 64
                    if batch and size > MAX_BATCH_BYTES:
                        break
                    batch.append(a)
                verdicts = self._ask_batch([{"parse": a} for a in batch])
                for a, verdict in zip(batch, verdicts):
                    self._parses[a] = bool(verdict)
                todo = todo[len(verdicts):]
            while len(self._parses) > self.cache_size:
                self._parses.pop(next(iter(self._parses)))

    def parsable(self, answer: str) -> bool:
        """Whether ``answer`` parses to a sympy object within the time limit; cached per
        answer. One that does not (no parse, or only its text, which math-verify then
        compares as text) equals nothing but itself, which keys already decide."""
        if len(answer) > MAX_SYMBOLIC_CHARS:
            return False
        if answer not in self._parses:
            self._parses[answer] = bool(self._ask({"parse": answer}))
            if len(self._parses) > self.cache_size:
                self._parses.pop(next(iter(self._parses)))
        return self._parses[answer]

    def equivalent(self, gold: str, pred: str, probe: bool = True) -> bool | None:
        """Whether math-verify equates ``gold`` and ``pred``; ``probe=False`` skips the
        single-answer parse probes for answers known to be small and bounded."""
        key = (gold, pred)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            # Parse each side alone first: a pathological answer then fails once, by
            # itself, instead of costing a time-out in every comparison it meets.
            if probe and not (self.parsable(gold) and self.parsable(pred)):
                verdict: bool | None = False
            else:
                self.calls += 1
                verdict = self._ask({"gold": gold, "pred": pred})
            self._cache[key] = verdict
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return verdict
