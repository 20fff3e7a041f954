"""The evaluation benchmarks by name, each a view of a ``nemo_coreward.data`` source.

| name | source | what |
|---|---|---|
| math500 | math500 (test) | the 500-problem MATH subset; level 1-5 in ``meta.level`` |
| gsm8k | gsm8k (test) | 1,319 grade-school word problems |
| amc23 | amc | AMC 12 problems; the default hub set (AI-MO/aimo-validation-amc) holds 83 |
|       |     | from 2022-2023; point ``data_files`` at a 40-problem AMC 2023 file if wanted |
| aime24 | aime | the AIME 2024 problems: rows whose ``year`` or ``url`` says 2024; a file |
|        |      | without either column is taken whole (it is assumed to hold AIME 2024 only) |
| champ | champ | CHAMP's 270 competition problems (offline, ``champ-dataset``) |
| synthetic | synthetic (heldout) | the offline twins' held-out split: every side (the |
|           |                     | question and its twin) is an item, ids ``<pair>/s<side>`` |

Hub benchmarks read the hub through ``datasets`` unless ``data_files`` names local files in
the hub set's format, which is the only way on machines without hub access.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nemo_coreward.data import PairRecord
from nemo_coreward.data.sources import SourceError, load_source
from nemo_coreward.data.sources.tables import HubUnreachable

SYNTHETIC_HELDOUT_N = 128  # pairs: 256 items with their twins


def _is_2024(rec: PairRecord) -> bool | None:
    year, url = rec.meta.get("year"), rec.meta.get("url")
    if year is None and url is None:
        return None
    return str(year) == "2024" or "2024" in str(url or "")


def _aime24(records: list[PairRecord]) -> list[PairRecord]:
    flags = [_is_2024(r) for r in records]
    if all(f is None for f in flags):
        return records
    return [r for r, f in zip(records, flags) if f]


@dataclass(frozen=True)
class Benchmark:
    """A named evaluation set: which source, with which options, filtered how."""

    name: str
    source: str
    options: dict = field(default_factory=dict)
    select: Callable[[list[PairRecord]], list[PairRecord]] | None = None
    hub: bool = True
    sides: bool = False  # evaluate each rephrasing as an item of its own

    def load(self, data_files: str | Sequence[str] | None = None,
             limit: int | None = None) -> list[PairRecord]:
        options: dict[str, Any] = dict(self.options)
        if data_files is not None:
            if not self.hub:
                raise SourceError(f"benchmark {self.name!r} is offline and takes no data files")
            options["data_files"] = data_files
        try:
            records = load_source(self.source, **options)
        except HubUnreachable as exc:
            raise SourceError(f"benchmark {self.name!r}: {exc.problem}; give local files in "
                              f"the hub set's format with --data-files {self.name}=PATH "
                              "(see docs/evaluation.md)") from None
        if self.select is not None:
            records = self.select(records)
        records = [r for r in records if r.answer is not None]
        if self.sides:
            records = [side for r in records for side in split_sides(r)]
        if not records:
            raise SourceError(f"benchmark {self.name!r}: no records with an answer")
        return records if limit is None else records[:limit]


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("math500", "math500", {"split": "test"}),
        Benchmark("gsm8k", "gsm8k", {"split": "test"}),
        Benchmark("amc23", "amc", {"split": "train"}),
        Benchmark("aime24", "aime", {"split": "train"}, select=_aime24),
        Benchmark("champ", "champ", hub=False),
        Benchmark("synthetic", "synthetic",
                  {"n": SYNTHETIC_HELDOUT_N, "split": "heldout", "seed": 0}, hub=False,
                  sides=True),
    )
}


def split_sides(rec: PairRecord) -> list[PairRecord]:
    """One record per side of a pair (``<id>/s0`` the question, ``<id>/s1`` its first
    twin, ...), each with the pair's answer; ``meta`` gains ``pair`` and ``side``."""
    return [replace(rec, id=f"{rec.id}/s{side}", question=text, rephrasings=(),
                    meta={**rec.meta, "pair": rec.id, "side": side})
            for side, text in enumerate([rec.question, *rec.rephrasings])]


def pair_of(item_id: str) -> str:
    """The pair id of a side item (``split_sides``); other ids are their own pair."""
    head, sep, tail = item_id.rpartition("/s")
    return head if sep and tail.isdigit() else item_id


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def level_of(rec: PairRecord) -> str | None:
    """The difficulty level shown in breakdowns: ``meta.level`` as text ("Level 3" -> "3")."""
    level = rec.meta.get("level")
    if level is None or level == "":
        return None
    text = str(level).strip()
    return text[len("Level "):].strip() if text.startswith("Level ") else text
