"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Every whole-file write of the project (results, settings, summaries, record files, run
directory JSON, checkpoints, teacher snapshots) goes through here. The data is written to a
temporary file in the target's folder, flushed and fsynced, renamed over the target, and the
folder is fsynced too: without the first fsync a power loss after the rename can leave an
empty file under the new name, without the second the rename itself can be lost.

A process killed mid-write (SIGKILL, the OOM killer) leaves its temporary file behind,
named ``.<target name>.<random>.tmp``; ``leftover_temporaries`` finds such files so that
a writer that knows it is alone in a folder (a run's checkpoints) can delete them.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in ``folder`` durable (no-op where folders cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TEMP_SUFFIX = ".tmp"


def leftover_temporaries(folder: str | os.PathLike, pattern: str = "*") -> list[Path]:
    """Temporary files of ``atomic_file`` in ``folder`` whose target's name matches the glob
    ``pattern``: the leftovers of writers killed mid-write, or of writers still writing.
    Deleting them is only safe for a caller that knows no other process writes there."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f".{pattern}.*{_TEMP_SUFFIX}") if p.is_file())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the block ends without error.

    ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``. On an exception the temporary file is
    removed and ``path`` is left as it was. For writers that stream (``torch.save``), so
    nothing large is held in memory.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file: mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_TEMP_SUFFIX,
                               dir=target.parent)
    try:
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Replace ``path`` with ``data`` (text is written as UTF-8) atomically and durably."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    return Path(path)
