"""Reading rows of a hub data set, or of local files in the same format, with ``datasets``.

Every hub loader goes through ``load_rows`` so that the same code reads the hub and a local
copy: ``data_files`` (files or folders of parquet / JSON Lines) replaces the hub id, which
is how users on a cluster without hub access point at a mirrored copy, and how the tests
feed each loader a few rows written in the source's real format.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

TABLE_SUFFIXES = (".parquet", ".jsonl", ".json")


class SourceError(ValueError):
    """Bad source arguments or rows; the message names the source, file and column."""


def expand_files(data_files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Files as given, with folders replaced by their parquet/JSONL/JSON files (sorted)."""
    items = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    files: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                str(p) for p in path.rglob("*") if p.is_file() and p.suffix in TABLE_SUFFIXES
            )
            if not found:
                raise SourceError(f"{path}: folder holds no {'/'.join(TABLE_SUFFIXES)} files")
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        else:
            raise SourceError(f"{path}: no such file or folder")
    if not files:
        raise SourceError("data_files is empty")
    return files


def load_rows(
    hub_id: str,
    *,
    split: str,
    config: str | None = None,
    data_files: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    cache_dir: str | None = None,
) -> Iterable[dict[str, Any]]:
    """Rows of ``hub_id``/``config``/``split``, or of local ``data_files`` when given.

    Local files are read by the ``datasets`` parquet or json builder (all files must share
    one format); their rows are taken as the requested split.
    """
    from datasets import load_dataset

    if data_files is not None:
        files = expand_files(data_files)
        kinds = {"parquet" if f.endswith(".parquet") else "json" for f in files}
        if len(kinds) != 1:
            raise SourceError(f"data_files mix parquet and JSON files: {files}")
        return load_dataset(kinds.pop(), data_files={"local": files}, split="local",
                            cache_dir=cache_dir)
    return load_dataset(hub_id, config, split=split, cache_dir=cache_dir)


def column(row: dict[str, Any], names: Sequence[str], *, where: str) -> Any:
    """The value of the first of ``names`` present in ``row``; an error lists what exists."""
    for name in names:
        if name in row:
            return row[name]
    raise SourceError(
        f"{where}: none of the columns {list(names)} found; the rows have {sorted(row)}"
    )


def answer_text(value: Any) -> str | None:
    """An answer cell as text: integral floats (AMC's ``142.0``) become ``"142"``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    return text or None
