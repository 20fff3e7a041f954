"""The paired-record schema every trainer, the rephraser and the evaluator read.

Co-Reward needs each training question together with its rephrased twin(s), so the unit of
data is a pair record, not a question: ``id``, ``question``, ``rephrasings`` (zero or more
twins; zero means "not rephrased yet"), an optional ``answer`` (used only for metrics and
evaluation, never for a label-free reward), the ``source`` it came from and free ``meta``
(level, type, family, ...).

Files are JSON Lines (one object per line) or parquet. Loading validates every row and
names the file, the line (JSONL) or row (parquet) and the key at fault, because a typo in a
hand-written file (``"rephrasing"`` for ``"rephrasings"``) would otherwise silently train on
records with no twin. Writing is atomic (temporary file, then ``os.replace``) so a crash
never leaves a half-written data set behind; reading follows ``nemo_coreward.io.jsonl``'s
policy (a torn last line skipped with a warning, invalid Unicode repaired and counted).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_coreward.io.atomic import atomic_file
from nemo_coreward.io.jsonl import JsonlError, read_jsonl, repair_json, write_jsonl

REQUIRED_KEYS = ("id", "question")
OPTIONAL_KEYS = ("rephrasings", "answer", "source", "meta")
ALL_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS


class RecordError(ValueError):
    """A row that does not fit the schema; the message names file, line/row and key."""


@dataclass(frozen=True)
class PairRecord:
    """One question and its twins.

    ``rephrasings`` is a tuple so the record stays immutable; ``meta`` must be a dict of
    JSON-serialisable values with string keys.
    """

    id: str
    question: str
    rephrasings: tuple[str, ...] = ()
    answer: str | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.rephrasings, list):
            object.__setattr__(self, "rephrasings", tuple(self.rephrasings))
        problem = _check_fields(self)
        if problem is not None:
            key, message = problem
            raise RecordError(f"key {key!r}: {message}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "rephrasings": list(self.rephrasings),
            "answer": self.answer,
            "source": self.source,
            "meta": self.meta,
        }


def _check_fields(rec: PairRecord) -> tuple[str, str] | None:
    if not isinstance(rec.id, str) or not rec.id.strip():
        return "id", f"must be a non-empty string, got {rec.id!r}"
    if not isinstance(rec.question, str) or not rec.question.strip():
        return "question", "must be a non-empty string"
    if not isinstance(rec.rephrasings, tuple):
        return "rephrasings", f"must be a tuple of strings, got {type(rec.rephrasings).__name__}"
    for i, text in enumerate(rec.rephrasings):
        if not isinstance(text, str) or not text.strip():
            return "rephrasings", f"item {i} must be a non-empty string, got {text!r}"
    if rec.answer is not None and not isinstance(rec.answer, str):
        return "answer", (
            f"must be a string or null, got {type(rec.answer).__name__} {rec.answer!r}"
            " (write numbers as strings, e.g. \"7\")"
        )
    if not isinstance(rec.source, str):
        return "source", f"must be a string, got {type(rec.source).__name__}"
    if not isinstance(rec.meta, dict):
        return "meta", f"must be an object, got {type(rec.meta).__name__}"
    for key in rec.meta:
        if not isinstance(key, str):
            return "meta", f"keys must be strings, got {key!r}"
    try:
        json.dumps(rec.meta)
    except (TypeError, ValueError) as exc:
        return "meta", f"must be JSON-serialisable ({exc})"
    return None


def sides(rec: PairRecord) -> list[str]:
    """The texts rolled out for one pair: side 0 is the original, 1..k its rephrasings."""
    return [rec.question, *rec.rephrasings]


def record_from_dict(row: Mapping[str, Any], where: str) -> PairRecord:
    """Build a record from one parsed row; ``where`` ("file:line 3") prefixes any error."""
    if not isinstance(row, Mapping):
        raise RecordError(f"{where}: expected an object, got {type(row).__name__}")
    unknown = sorted(set(row) - set(ALL_KEYS))
    if unknown:
        raise RecordError(
            f"{where}: unknown key {unknown[0]!r} (valid keys: {', '.join(ALL_KEYS)})"
        )
    for key in REQUIRED_KEYS:
        if key not in row:
            raise RecordError(f"{where}: missing required key {key!r}")
    rephrasings = row.get("rephrasings")
    if rephrasings is None:
        rephrasings = ()
    elif isinstance(rephrasings, (list, tuple)):
        rephrasings = tuple(rephrasings)
    elif hasattr(rephrasings, "tolist"):  # numpy array from a parquet reader
        rephrasings = tuple(rephrasings.tolist())
    else:
        raise RecordError(
            f"{where}: key 'rephrasings': must be a list of strings, "
            f"got {type(rephrasings).__name__}"
        )
    meta = row.get("meta")
    if meta is None:
        meta = {}
    elif isinstance(meta, str):  # parquet files written here keep meta as JSON text
        try:
            meta = json.loads(meta) if meta.strip() else {}
        except json.JSONDecodeError as exc:
            raise RecordError(f"{where}: key 'meta': not valid JSON ({exc})") from None
    elif isinstance(meta, Mapping):
        meta = dict(meta)
    source = row.get("source")
    try:
        return PairRecord(
            id=row["id"],
            question=row["question"],
            rephrasings=rephrasings,
            answer=row.get("answer"),
            source="" if source is None else source,
            meta=meta,
        )
    except RecordError as exc:
        raise RecordError(f"{where}: {exc}") from None


def _read_jsonl(path: Path) -> tuple[list[tuple[str, Any]], int]:
    """(where, row) of every line, and how many lines had invalid Unicode repaired; the
    shared reader's policy: a torn last line is skipped with a warning."""
    try:
        found = read_jsonl(path, objects=False)
    except JsonlError as exc:
        raise RecordError(str(exc)) from None
    return [(f"{path}:{n}", row) for n, row in zip(found.lines, found.rows)], found.repaired


def _iter_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for index, row in enumerate(table.to_pylist(), start=1):
        yield f"{path}: row {index}", row


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in {".parquet", ".pq"}


def load_records(path: str | os.PathLike) -> list[PairRecord]:
    """Read and validate a JSONL or parquet file of pair records.

    Raises ``RecordError`` naming the file, line (row for parquet) and key of the first bad
    row, and on a duplicate id naming both places it occurs.
    """
    return read_records(path)[0]


def read_records(path: str | os.PathLike) -> tuple[list[PairRecord], int]:
    """``load_records`` plus the number of JSONL lines whose text was not valid Unicode
    and was repaired (U+FFFD), for a command's summary."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such records file (write one with coreward "
                                "prepare, see docs/data.md)")
    repaired = 0
    if _is_parquet(path):
        rows: Iterable[tuple[str, Any]] = _iter_parquet(path)
    else:
        rows, repaired = _read_jsonl(path)
    records: list[PairRecord] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        rec = record_from_dict(row, where)
        if rec.id in seen:
            raise RecordError(f"{where}: duplicate id {rec.id!r} (first at {seen[rec.id]})")
        seen[rec.id] = where
        records.append(rec)
    return records, repaired


def _parquet_table(records: list[PairRecord]):
    import pyarrow as pa

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("question", pa.string()),
            ("rephrasings", pa.list_(pa.string())),
            ("answer", pa.string()),
            ("source", pa.string()),
            ("meta", pa.string()),  # JSON text: meta values differ in type between sources
        ]
    )
    columns = {
        "id": [r.id for r in records],
        "question": [r.question for r in records],
        "rephrasings": [list(r.rephrasings) for r in records],
        "answer": [r.answer for r in records],
        "source": [r.source for r in records],
        "meta": [json.dumps(r.meta, ensure_ascii=False) for r in records],
    }
    # Text from a hub set may hold lone surrogates, which Arrow cannot store as UTF-8.
    return pa.table(repair_json(columns)[0], schema=schema)


def write_records(records: Iterable[PairRecord], path: str | os.PathLike) -> Path:
    """Write records atomically as JSONL, or parquet when the name ends in ``.parquet``.

    Duplicate ids are refused here too, so a written file always loads back.
    """
    path = Path(path)
    records = list(records)
    seen: set[str] = set()
    for rec in records:
        if not isinstance(rec, PairRecord):
            raise TypeError(f"write_records takes PairRecord items, got {type(rec).__name__}")
        if rec.id in seen:
            raise RecordError(f"{path}: refusing to write duplicate id {rec.id!r}")
        seen.add(rec.id)
    if _is_parquet(path):
        import pyarrow.parquet as pq

        with atomic_file(path, "wb") as fh:
            pq.write_table(_parquet_table(records), fh)
    else:
        write_jsonl(path, (rec.to_dict() for rec in records))
    return path
