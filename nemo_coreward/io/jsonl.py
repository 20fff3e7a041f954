"""JSON Lines: the one reader, appender and cutter every file of rows goes through.

One policy for damage, whoever reads:

- A **torn last line** (no newline at the end and not valid JSON: a writer killed
  mid-write, or still writing) is skipped with a warning naming the file and line. It never
  stops a reader. ``JsonlAppender`` cuts it off before appending, so the next row starts on
  a line of its own. An unterminated last line that *is* valid JSON (a hand-written file
  without a final newline) is a row like any other.
- A bad line **anywhere else** is an error (``JsonlError``) naming the file and line: that
  is not a crash but a damaged or foreign file, and silently skipping it would lose data.
- **Text that is not valid Unicode** is repaired, not fatal: bytes that are not UTF-8 and
  JSON escapes of lone surrogates (``"\\udbf9"``, which Python decodes but cannot encode
  again) become U+FFFD. The number of repaired lines is returned so commands can report it,
  and ``dumps_line`` repairs too, so no writer ever dies on such text after the work is done.

Appends are flushed and fsynced per batch: a SIGKILL loses at most the batch being written.
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nemo_coreward.io.atomic import atomic_file
from nemo_coreward.io.text import decode_utf8, repair_text

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class JsonlError(ValueError):
    """A line that is not a JSON row, not at the end of the file; names file and line."""


def repair_json(value: Any) -> tuple[Any, int]:
    """A parsed JSON value with every string (keys included) repaired by
    ``text.repair_text``, and how many strings were repaired."""
    if isinstance(value, str):
        fixed, changed = repair_text(value)
        return fixed, int(changed)
    if isinstance(value, list):
        total, out = 0, []
        for item in value:
            fixed, n = repair_json(item)
            out.append(fixed)
            total += n
        return out, total
    if isinstance(value, dict):
        total, obj = 0, {}
        for key, item in value.items():
            fkey, n1 = repair_json(key)
            fitem, n2 = repair_json(item)
            obj[fkey] = fitem
            total += n1 + n2
        return obj, total
    return value, 0


def loads_line(text: str) -> tuple[Any, bool]:
    """One parsed JSON value and whether its text had to be repaired (lone surrogates).
    Raises ``json.JSONDecodeError`` for text that is not JSON."""
    value = json.loads(text)
    if _SURROGATE_ESCAPE.search(text):
        value, n = repair_json(value)
        return value, n > 0
    return value, False


def dumps_line(row: Any) -> str:
    """One JSONL line, newline included; non-ASCII kept readable. Lone surrogates (text
    that came from elsewhere) are replaced by U+FFFD rather than failing the write."""
    text = json.dumps(row, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(repair_json(row)[0], ensure_ascii=False)
    return text + "\n"


@dataclass
class JsonlRows:
    """What ``read_jsonl`` found: the rows, each row's line number, how many lines had
    invalid Unicode repaired, the line number of a skipped torn last line and, with
    ``skip_bad``, the bad lines skipped."""

    path: Path
    rows: list[Any] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    repaired: int = 0
    torn_line: int | None = None
    skipped: list[str] = field(default_factory=list)  # messages of bad lines (skip_bad)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def read_jsonl(path: str | os.PathLike, *, objects: bool = True, skip_bad: bool = False,
               warn: Callable[[str], None] | None = _warn) -> JsonlRows:
    """Every row of ``path`` (none when it does not exist), by the policy above.

    ``objects``: each row must be a JSON object (``JsonlError`` names the line otherwise).
    ``skip_bad``: a bad line is recorded in ``skipped`` (its one-line message) instead of
    raising. Blank lines are skipped. ``warn`` receives the one-line notices (torn line,
    repaired text); ``None`` silences them.
    """
    path = Path(path)
    if not path.is_file():
        return JsonlRows(path)
    return parse_jsonl(path.read_bytes(), path, objects=objects, skip_bad=skip_bad, warn=warn)


def parse_jsonl(data: bytes, name: str | os.PathLike, *, objects: bool = True,
                skip_bad: bool = False,
                warn: Callable[[str], None] | None = _warn) -> JsonlRows:
    """``read_jsonl`` on bytes already read (standard input); ``name`` is used in messages."""
    found = JsonlRows(Path(name))
    raw_lines = data.splitlines(keepends=True)
    for lineno, raw in enumerate(raw_lines, start=1):
        last = lineno == len(raw_lines)
        text, bad_bytes = decode_utf8(raw)
        problem = None
        if text.strip():
            try:
                row, repaired = loads_line(text)
            except json.JSONDecodeError as exc:
                if last and not raw.endswith(b"\n"):
                    found.torn_line = lineno
                    if warn is not None:
                        warn(f"{name}:{lineno}: skipping a torn last line ({len(raw)} bytes; "
                             "a write was cut off)")
                    break
                problem = f"not valid JSON ({exc.msg}, column {exc.colno})"
            else:
                if objects and not isinstance(row, dict):
                    problem = f"expected a JSON object, got {type(row).__name__}"
            if problem is not None:
                message = f"{name}:{lineno}: {problem}"
                if not skip_bad:
                    raise JsonlError(f"{message}; fix or remove that line")
                found.skipped.append(message)
            else:
                found.repaired += bool(repaired or bad_bytes)
                found.rows.append(row)
                found.lines.append(lineno)
    if found.repaired and warn is not None:
        warn(f"{name}: {found.repaired} line(s) held text that is not valid Unicode; "
             "replaced with U+FFFD")
    return found


def mend_tail(path: str | os.PathLike,
              warn: Callable[[str], None] | None = _warn) -> None:
    """Make ``path`` end on a whole line so appending can go on: a torn last line is cut
    off (with the reader's warning), a good row without its newline gets one. Only the
    tail is read, so appending to a long file stays cheap."""
    path = Path(path)
    if not path.is_file():
        return
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        start, chunk = size, 1 << 16
        while start > 0:  # find the start of the last line
            start = max(0, start - chunk)
            fh.seek(start)
            cut = fh.read(size - start).rfind(b"\n")
            if cut >= 0:
                start += cut + 1
                break
        fh.seek(start)
        tail = fh.read()
        lineno = None
        try:
            loads_line(tail.decode("utf-8", errors="replace"))
            fh.write(b"\n")
        except json.JSONDecodeError:
            fh.truncate(start)
            if warn is not None:
                fh.seek(0)
                lineno = fh.read(start).count(b"\n") + 1
                warn(f"{path}:{lineno}: cutting off a torn last line ({len(tail)} bytes; a "
                     "write was cut off)")
        fh.flush()
        os.fsync(fh.fileno())


class JsonlAppender:
    """Appends rows to a JSONL file, fsynced per ``write`` call. Opening mends the tail
    first (``mend_tail``); with ``read=True`` the rows already there are read (by the
    policy above) into ``existing``, for a resuming writer that skips what is done."""

    def __init__(self, path: str | os.PathLike, *, read: bool = True,
                 warn: Callable[[str], None] | None = _warn) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.existing = read_jsonl(self.path, warn=None) if read else JsonlRows(self.path)
        mend_tail(self.path, warn=warn)
        self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")

    def write(self, rows: Iterable[Any]) -> None:
        """Append ``rows`` and make them durable (flush + fsync) before returning."""
        if self._fh is None:
            raise ValueError(f"{self.path}: appender is closed")
        self._fh.write("".join(dumps_line(row) for row in rows))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def append_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    """Append ``rows`` to ``path`` durably (a torn last line is cut off first)."""
    with JsonlAppender(path, read=False) as out:
        out.write(rows)


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> Path:
    """Replace ``path`` with ``rows`` atomically (``atomic_file``)."""
    with atomic_file(path, "w") as fh:
        for row in rows:
            fh.write(dumps_line(row))
    return Path(path)


def cut_after(path: str | os.PathLike, step: int, key: str = "step") -> int:
    """Keep only rows whose ``key`` is at most ``step`` (a resumed run repeats the steps
    after its checkpoint), rewriting the file atomically; a torn last line goes too.
    Returns the number of rows dropped. Rows without ``key`` are kept."""
    path = Path(path)
    if not path.is_file():
        return 0
    found = read_jsonl(path)
    kept = [r for r in found.rows if not isinstance(r.get(key), (int, float)) or r[key] <= step]
    if len(kept) != len(found.rows) or found.torn_line is not None:
        write_jsonl(path, kept)
    return len(found.rows) - len(kept)
