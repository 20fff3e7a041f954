"""Test-only: a trainer that SIGKILLs itself at a named point, to test hard kills there.

A hard kill (SIGKILL, the OOM killer, a node lost) cannot be caught, so the only proof that
a run survives one is to kill it and rerun it. Sending the signal from outside lands at a
random point; the tests of ``tests/embedded/test_embedded_kill.py`` need precise ones, so
the trainer calls this module where a kill would hurt most and the process kills itself
there when the environment asks::

    COREWARD_KILL_AT=update:3 coreward train ...   # dies in step 3's update

Points: ``generate`` (after a step's rollouts were sampled), ``update`` (after the
optimiser step, before the step is logged), ``checkpoint`` (after part of the step's
checkpoint reached its temporary file), ``metrics`` (after part of the step's metrics row
reached ``metrics.jsonl``) and ``final_eval`` (as the final held-out evaluation starts; the
step is the run's last). Unset, every call is one dictionary lookup.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import IO, Any, NoReturn

from nemo_coreward.io.jsonl import dumps_line

ENV = "COREWARD_KILL_AT"
POINTS = ("generate", "update", "checkpoint", "metrics", "final_eval")


def armed(point: str, step: int) -> bool:
    """Whether ``COREWARD_KILL_AT`` names ``point`` at ``step`` (``point:step``)."""
    spec = os.environ.get(ENV)
    if not spec:
        return False
    name, _, at = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}={spec!r}: unknown point {name!r}; points: {', '.join(POINTS)}")
    return name == point and int(at) == step


def die() -> NoReturn:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: SIGKILL was sent")  # pragma: no cover


def maybe_die(point: str, step: int) -> None:
    if armed(point, step):
        die()


class _TornFile:
    """A binary file that passes writes through until ``after`` bytes are written, then
    writes half of the write that crosses it, makes that durable and dies: the file a
    kill mid-write leaves behind."""

    def __init__(self, fh: IO[bytes], after: int) -> None:
        self.fh, self.left = fh, after

    def write(self, data: Any) -> int:
        data = bytes(data)
        if len(data) < self.left:
            self.left -= len(data)
            return self.fh.write(data)
        self.fh.write(data[:self.left + (len(data) - self.left) // 2])
        self.fh.flush()
        os.fsync(self.fh.fileno())
        die()

    def flush(self) -> None:
        self.fh.flush()


def torn(fh: IO[bytes], point: str, step: int, after: int = 1 << 20) -> IO[bytes]:
    """``fh`` itself, or when armed, a file that dies once ``after`` bytes are written."""
    return _TornFile(fh, after) if armed(point, step) else fh  # type: ignore[return-value]


def tear_row(path: Path, row: dict, point: str, step: int) -> None:
    """When armed: append the first half of ``row``'s JSONL line to ``path`` and die."""
    if armed(point, step):
        with path.open("ab") as fh:
            torn(fh, point, step, after=0).write(dumps_line(row).encode("utf-8"))
