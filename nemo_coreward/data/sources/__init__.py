"""Every place pair records can come from, by name: the registry behind ``coreward prepare``.

``load_source(name, **options)`` returns pair records; each source accepts only the options
listed in its ``Source.options`` and an unknown source or option is an error that lists the
valid ones. Hub sources read local files in the same format when given ``data_files``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from nemo_coreward.data.records import PairRecord
from nemo_coreward.data.sources import hub, offline, rephrased
from nemo_coreward.data.sources.tables import SourceError

_HUB_OPTIONS = ("split", "data_files", "hub_id", "config", "cache_dir")


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    loader: Callable[..., list[PairRecord]]
    options: tuple[str, ...]


_ALL = [
    Source("math", "MATH (Hendrycks): 7,500 train / 5,000 test; answer = last \\boxed{} of the "
           f"solution; default hub id {hub.MATH_HUB_ID}, or the original folder layout",
           hub.load_math, _HUB_OPTIONS),
    Source("math500", f"MATH500 test subset (500); hub id {hub.MATH500_HUB_ID}",
           hub.load_math500, _HUB_OPTIONS),
    Source("gsm8k", f"GSM8K (7,473 train / 1,319 test); answer after ####; hub id "
           f"{hub.GSM8K_HUB_ID} (config main)", hub.load_gsm8k, _HUB_OPTIONS),
    Source("amc", f"AMC problems with answers; hub id {hub.AMC_HUB_ID}", hub.load_amc,
           _HUB_OPTIONS + ("question_column", "answer_column")),
    Source("aime", f"AIME problems with answers; hub id {hub.AIME_HUB_ID}", hub.load_aime,
           _HUB_OPTIONS + ("question_column", "answer_column")),
    Source("table", "any local or hub table with problem/answer columns",
           partial(hub.load_problem_answer, "table"),
           _HUB_OPTIONS + ("question_column", "answer_column")),
    *[
        Source(name, f"published rephrased pairs, hub id {hub_id}",
               partial(rephrased.load_rephrased, name), _HUB_OPTIONS)
        for name, hub_id in rephrased.REPHRASED_HUB_IDS.items()
    ],
    Source("champ", "CHAMP, 270 competition problems (offline, champ-dataset package)",
           offline.load_champ, ("version",)),
    Source("mathematics", "DeepMind mathematics_dataset generator (offline)",
           offline.load_mathematics, ("n", "modules", "regime", "seed")),
    Source("synthetic", "offline arithmetic twins (the embedded trainer's default data)",
           offline.load_synthetic, ("n", "families", "levels", "k", "seed", "split")),
    Source("local", "pair-record files in this project's schema (JSONL or parquet)",
           offline.load_local, ("data_files",)),
]
SOURCES: dict[str, Source] = {s.name: s for s in _ALL}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise SourceError(f"unknown source {name!r}; valid sources: {', '.join(SOURCES)}")
    return SOURCES[name]


def load_source(name: str, *, limit: int | None = None, **options: Any) -> list[PairRecord]:
    """Records of source ``name``; ``limit`` keeps the first N; ``None`` options are unset."""
    source = get_source(name)
    given = {k: v for k, v in options.items() if v is not None}
    wrong = sorted(set(given) - set(source.options))
    if wrong:
        raise SourceError(
            f"source {name!r} does not take option {wrong[0]!r}; it takes: "
            f"{', '.join(source.options)}"
        )
    if name == "local" and "data_files" not in given:
        raise SourceError("source 'local' needs data_files (the record files to read)")
    if limit is not None and limit < 0:
        raise SourceError(f"limit must be >= 0, got {limit}")
    records = source.loader(**given)
    return records if limit is None else records[:limit]


__all__ = ["SOURCES", "Source", "SourceError", "get_source", "load_source"]
