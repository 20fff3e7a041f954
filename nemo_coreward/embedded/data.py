"""Training pairs and the cursor that walks them, twins always together.

The unit of a step is a *pair*: a question and its rephrasings are rolled out in the
same step because Co-Reward labels each side with the other side's majority. The cursor
hands out pair indices, never single questions, so twins cannot be split across steps.

Order: epoch e visits the pairs in ``permutation(seed, e)`` (numpy's PCG64 seeded with
``[seed, e]``), so the order depends on nothing but the seed and the epoch; the cursor's
whole state is ``(epoch, position)`` and a resumed run continues with exactly the pairs
an uninterrupted run would have seen. A step that runs past the end of an epoch takes
the rest from the next one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nemo_coreward.data import PairRecord, load_records, synthetic

SOURCES = ("synthetic", "file")
SIDES = ("all", "original")


@dataclass(frozen=True)
class SyntheticConfig:
    """The offline twin generator's knobs (see ``nemo_coreward.data.synthetic``)."""

    num_pairs: int = 512
    families: tuple[str, ...] = synthetic.EASY_FAMILIES
    levels: tuple[int, ...] = (1,)
    k: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "levels", tuple(self.levels))
        if self.num_pairs < 1:
            raise ValueError(f"data.synthetic.num_pairs must be >= 1, got {self.num_pairs}")


@dataclass(frozen=True)
class DataConfig:
    """Where pairs come from and how many go into a step.

    source: synthetic (offline generator) or file (JSONL/parquet pair records at
    ``path``). sides: all (the question and up to ``max_rephrasings`` twins are rolled
    out) or original (the question only: what the baselines and Co-rewarding-II use in
    their papers). shuffle: visit pairs in a seeded random order per epoch.
    """

    source: str = "synthetic"
    path: str | None = None
    pairs_per_step: int = 8
    sides: str = "all"
    max_rephrasings: int = 1
    shuffle: bool = True
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"data.source: {self.source!r} is not one of {SOURCES}")
        if self.source == "file" and not self.path:
            raise ValueError("data.path must name a records file when data.source is 'file'")
        if self.sides not in SIDES:
            raise ValueError(f"data.sides: {self.sides!r} is not one of {SIDES}")
        if self.pairs_per_step < 1:
            raise ValueError(f"data.pairs_per_step must be >= 1, got {self.pairs_per_step}")
        if self.max_rephrasings < 0:
            raise ValueError(f"data.max_rephrasings must be >= 0, got {self.max_rephrasings}")


@dataclass(frozen=True)
class Prompt:
    """One side of one pair, as rolled out: side 0 is the question, 1..k its twins."""

    pair_id: str
    side: int
    text: str
    answer: str | None


def load_pairs(cfg: DataConfig, seed: int) -> list[PairRecord]:
    if cfg.source == "file":
        records = load_records(cfg.path)
    else:
        s = cfg.synthetic
        records = synthetic.generate(s.num_pairs, families=s.families, levels=s.levels, k=s.k,
                                     seed=seed, split="train")
    if not records:
        raise ValueError(f"data: no records loaded from {cfg.path or 'the synthetic generator'}")
    return records


def check_twins(records: list[PairRecord], cfg: DataConfig, needs_twins: bool) -> None:
    """A twin reward needs at least one rephrasing per pair, rolled out."""
    if not needs_twins:
        return
    if cfg.sides != "all" or cfg.max_rephrasings < 1:
        raise ValueError("the reward needs twins: set data.sides=all and data.max_rephrasings>=1")
    for rec in records:
        if not rec.rephrasings:
            raise ValueError(f"data: record {rec.id!r} has no rephrasing, but the reward needs "
                             "twins (run `coreward rephrase` first)")


def prompts_for(records: list[PairRecord], cfg: DataConfig) -> list[Prompt]:
    """The prompts of a step, pair by pair, sides in order (question first).

    A pair drawn twice in one step (a step that straddles two epochs of a tiny data set)
    gets ``#2`` appended to its id, so its rollouts form their own groups.
    """
    out = []
    seen: dict[str, int] = {}
    for rec in records:
        seen[rec.id] = seen.get(rec.id, 0) + 1
        pair_id = rec.id if seen[rec.id] == 1 else f"{rec.id}#{seen[rec.id]}"
        texts = [rec.question]
        if cfg.sides == "all":
            texts += list(rec.rephrasings[: cfg.max_rephrasings])
        out += [Prompt(pair_id, side, text, rec.answer) for side, text in enumerate(texts)]
    return out


class PairCursor:
    """Seeded, resumable walk over pair indices (see the module docstring)."""

    def __init__(self, num_pairs: int, seed: int, shuffle: bool = True) -> None:
        if num_pairs < 1:
            raise ValueError("PairCursor needs at least one pair")
        self.num_pairs, self.seed, self.shuffle = num_pairs, seed, shuffle
        self.epoch, self.position = 0, 0
        self._order = self._order_of(0)

    def _order_of(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_pairs)
        return np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(self.num_pairs)

    def next(self, count: int) -> list[int]:
        """The next ``count`` pair indices (distinct within an epoch)."""
        out: list[int] = []
        while len(out) < count:
            if self.position == self.num_pairs:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._order_of(self.epoch)
            take = min(count - len(out), self.num_pairs - self.position)
            out += self._order[self.position : self.position + take].tolist()
            self.position += take
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "num_pairs": self.num_pairs,
                "seed": self.seed, "shuffle": int(self.shuffle)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if (state["num_pairs"], state["seed"], bool(state["shuffle"])) != (
            self.num_pairs, self.seed, self.shuffle
        ):
            raise ValueError(
                "checkpoint's data cursor was made for a different data set "
                f"(pairs/seed/shuffle {state['num_pairs']}/{state['seed']}/{bool(state['shuffle'])}"
                f" vs {self.num_pairs}/{self.seed}/{self.shuffle})"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._order_of(self.epoch)
