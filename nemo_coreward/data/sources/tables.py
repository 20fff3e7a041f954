"""Reading rows of a hub data set, or of local files in the same format, with ``datasets``.

Every hub loader goes through ``load_rows`` so that the same code reads the hub and a local
copy: ``data_files`` (files or folders of parquet / JSON Lines) replaces the hub id, which
is how users on a cluster without hub access point at a mirrored copy, and how the tests
feed each loader a few rows written in the source's real format. Where the hub cannot be
reached, ``HubUnreachable`` says so in one line and names that way out.
"""
from __future__ import annotations

import math
import os
import socket
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".parquet", ".jsonl", ".json")


class SourceError(ValueError):
    """Bad source arguments or rows; the message names the source, file and column."""


class HubUnreachable(SourceError):
    """A hub data set cannot be read here; the way out is local files (``data_files``).
    ``problem`` is the first half of the message, for callers that name the way out in
    their own words (``coreward eval``'s ``--data-files NAME=PATH``)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{problem}; point --data-files at local parquet/JSONL copies of its "
                         "files (see docs/data.md)")


def _hub_problem(timeout_s: float = 3.0) -> str | None:
    """Why the hub cannot be reached, or None. A plain TCP connect to the endpoint: without
    it, ``datasets`` spends half a minute in five warned retries before the same failure."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None  # offline mode reads the local cache: let datasets try it
    parts = urllib.parse.urlsplit(constants.ENDPOINT)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout_s).close()
    except OSError as exc:
        return f"{constants.ENDPOINT}: {getattr(exc, 'strerror', None) or exc}"
    return None


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
    problem = _hub_problem()
    if problem is not None:
        raise HubUnreachable(f"cannot reach the Hugging Face hub for {hub_id} ({problem})")
    try:
        return load_dataset(hub_id, config, split=split, cache_dir=cache_dir)
    except (ConnectionError, OSError) as exc:  # datasets' hub and cache misses
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HubUnreachable(f"cannot read {hub_id} from the Hugging Face hub or its cache "
                             f"({first})") from None


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
