"""Offline synthetic twins: arithmetic and one-step word problems with rephrasings.

The embedded trainer's default data. It exists because a CPU run has no hub and no LLM to
rephrase with, and because a 135M model only shows a label-free learning signal on easy
problems: measured on SmolLM2-135M-Instruct, the majority answer over 8 samples is right
for about a third of single-digit sums and half of "n times 2, n <= 10", but for only 10%
of sums up to 20 and ~4% of one-step word problems, where Co-Reward then learns a
consistent wrong answer (collapse). So the default is the easy families at level 1
(``EASY_FAMILIES``); the harder ones exist as difficulty levels for longer runs and GPUs.

Every question gets ``k`` rephrasings drawn from *other* templates of its family: the
wording and the scenario (names, objects, plain sum versus story) change, the numbers and
the answer do not. That is the contract a Co-Reward twin must keep.

Splits: a maths problem is identified by its operation and operands (commutative operands
sorted, so ``3 + 4`` and ``4 + 3`` are one problem, and "double 6" is ``6 * 2``). A fixed
hash of that key, independent of the seed and of the family, puts it in ``heldout`` (25%)
or ``train``, so the two splits never share a problem whatever seeds or families are used.
Within a split, families x levels are interleaved round-robin and each pool is walked in a
seeded shuffled order, repeating (with fresh wording) only after it is exhausted. Record
``i`` depends only on ``(seed, split, i)`` and the chosen families/levels, so ids are stable
and ``generate(10, ...)`` is a prefix of ``generate(20, ...)``.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from nemo_coreward.data.records import PairRecord

HELDOUT_FRACTION = 0.25
# Picked among a few hundred salts so that even the tiny level-1 pools (10 doublings, 16
# times-table facts) hold out 2-6 problems; a test checks both splits are non-empty for every
# pool. Changing it reshuffles which problems are held out.
_SPLIT_SALT = "coreward-synthetic-v343"
SPLITS = ("train", "heldout")
EASY_FAMILIES = ("add", "double")


@dataclass(frozen=True)
class Problem:
    op: str  # "+", "-" or "*"
    a: int
    b: int

    @property
    def value(self) -> int:
        return {"+": self.a + self.b, "-": self.a - self.b, "*": self.a * self.b}[self.op]

    @property
    def key(self) -> str:
        """Identity of the maths, shared by every family that can pose it."""
        x, y = (self.a, self.b) if self.op == "-" else sorted((self.a, self.b))
        return f"{self.op}|{x}|{y}"


_PLAIN_ADD = ("What is {a} + {b}?", "Add {a} and {b}.", "Compute the sum of {a} and {b}.")
_STORY_ADD = (
    "{name} has {a_items} and gets {b} more. How many {items} does {name} have now?",
    "A basket holds {a_items}. {name} puts in {b} more. How many {items} are in the basket?",
    "On Monday {name} collected {a_items} and on Tuesday {b} more. "
    "How many {items} did {name} collect in total?",
)
_PLAIN_SUB = (
    "What is {a} - {b}?", "Subtract {b} from {a}.", "Take {b} away from {a}. What is left?",
)
_STORY_SUB = (
    "{name} has {a_items} and gives away {b} of them. How many {items} does {name} have left?",
    "A jar holds {a_items}. {name} takes out {b} of them. How many {items} are still in the jar?",
    "{name} bought {a_items} and used {b} of them. How many {items} remain?",
)
_PLAIN_MUL = ("What is {a} * {b}?", "Multiply {a} by {b}.", "What is the product of {a} and {b}?")
_STORY_MUL = (
    "There are {a} bags with {b_items} in each bag. How many {items} are there altogether?",
    "{name} makes {a} rows with {b_items} in each row. How many {items} does {name} use?",
)
_DOUBLE = (
    "What is {a} * 2?",
    "Double {a}.",
    "What is twice {a}?",
    "{name} has {a_items} and then gets the same number again. "
    "How many {items} does {name} have now?",
    "Each of 2 shelves holds {a_items}. How many {items} are on the two shelves?",
)

_NAMES = ("Tom", "Mia", "Ravi", "Aiko", "Lena", "Omar", "Sara", "Ben", "Nora", "Kofi")
_ITEMS = (
    ("apple", "apples"), ("marble", "marbles"), ("book", "books"), ("sticker", "stickers"),
    ("coin", "coins"), ("shell", "shells"), ("pencil", "pencils"), ("card", "cards"),
    ("cookie", "cookies"), ("stamp", "stamps"),
)


def _pairs(lo: int, hi: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(lo, hi + 1) for b in range(lo, hi + 1)]


def _below(lo: int, hi: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(lo, hi + 1) for b in range(1, a)]


@dataclass(frozen=True)
class Family:
    """A kind of problem and its templates per operation (``op -> format strings``)."""

    name: str
    description: str
    templates: dict

    def problems(self, level: int) -> list[Problem]:
        return [Problem(op, a, b) for op, a, b in _LEVEL_SPACES[(self.name, level)]]


_LEVEL_SPACES = {
    ("add", 1): [("+", a, b) for a, b in _pairs(1, 9)],
    ("add", 2): [("+", a, b) for a, b in _pairs(10, 99)],
    ("double", 1): [("*", n, 2) for n in range(1, 11)],
    ("double", 2): [("*", n, 2) for n in range(11, 100)],
    ("sub", 1): [("-", a, b) for a, b in _below(2, 9)],
    ("sub", 2): [("-", a, b) for a, b in _below(10, 99)],
    ("mul", 1): [("*", a, b) for a, b in _pairs(2, 5)],
    ("mul", 2): [("*", a, b) for a, b in _pairs(2, 12) if max(a, b) >= 6],
    ("word", 1): [("+", a, b) for a, b in _pairs(1, 9)] + [("-", a, b) for a, b in _below(2, 9)],
    ("word", 2): [("+", a, b) for a, b in _pairs(10, 99)]
    + [("-", a, b) for a, b in _below(10, 99)],
}


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("add", "a + b (level 1: single digits 1-9; level 2: 10-99)",
               {"+": _PLAIN_ADD + _STORY_ADD}),
        Family("double", "n * 2 (level 1: n <= 10; level 2: 11-99)",
               {"*": _DOUBLE}),
        Family("sub", "a - b with 0 < b < a (level 1: a <= 9; level 2: a 10-99)",
               {"-": _PLAIN_SUB + _STORY_SUB}),
        Family("mul", "times tables (level 1: 2-5 x 2-5; level 2: up to 12 x 12)",
               {"*": _PLAIN_MUL + _STORY_MUL}),
        Family("word", "one-step add/take-away stories (level 1: 1-9; level 2: 10-99)",
               {"+": _STORY_ADD, "-": _STORY_SUB}),
    )
}
LEVELS = (1, 2)


def split_of(problem: Problem) -> str:
    """``heldout`` for a fixed 25% of maths problems, by a salted hash of the problem key."""
    digest = hashlib.sha256(f"{_SPLIT_SALT}|{problem.key}".encode()).digest()
    share = int.from_bytes(digest[:8], "big") / 2**64
    return "heldout" if share < HELDOUT_FRACTION else "train"


@cache
def pool(family: str, level: int, split: str) -> tuple[Problem, ...]:
    """All problems of one family and level in one split, in a fixed order."""
    return tuple(p for p in FAMILIES[family].problems(level) if split_of(p) == split)


def _walk(family: str, level: int, split: str, seed: int, j: int) -> Problem:
    items = pool(family, level, split)
    epoch, pos = divmod(j, len(items))
    order = list(items)
    random.Random(f"{seed}|{split}|{family}|{level}|{epoch}").shuffle(order)
    return order[pos]


def _count(n: int, noun: tuple[str, str]) -> str:
    return f"{n} {noun[0] if n == 1 else noun[1]}"


def _render(template: str, problem: Problem, name: str, noun: tuple[str, str]) -> str:
    return template.format(
        a=problem.a,
        b=problem.b,
        name=name,
        items=noun[1],
        a_items=_count(problem.a, noun),
        b_items=_count(problem.b, noun),
    )


def _check_args(families: Sequence[str], levels: Sequence[int], k: int, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not families:
        raise ValueError("families must name at least one family")
    for name in families:
        if name not in FAMILIES:
            raise ValueError(f"unknown family {name!r}; valid: {', '.join(FAMILIES)}")
    for level in levels or ():
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}; valid: {LEVELS}")
    if not levels:
        raise ValueError("levels must name at least one level")
    if k < 1:
        raise ValueError(f"k (rephrasings per question) must be >= 1, got {k}")
    for name in families:
        for op, templates in FAMILIES[name].templates.items():
            if k + 1 > len(templates):
                raise ValueError(
                    f"family {name!r} has {len(templates)} templates for {op!r}: "
                    f"k must be at most {len(templates) - 1}, got {k}"
                )


def generate(
    n: int,
    *,
    families: Sequence[str] = EASY_FAMILIES,
    levels: Sequence[int] = (1,),
    k: int = 1,
    seed: int = 0,
    split: str = "train",
) -> list[PairRecord]:
    """``n`` pair records, each with ``k`` rephrasings, deterministic for ``seed``.

    Families and levels are interleaved round-robin (record ``i`` comes from bucket
    ``i % (len(families) * len(levels))``). ``meta`` holds family, level, op, operands,
    split and the template indices used (original first).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_args(families, levels, k, split)
    buckets = [(f, lvl) for f in families for lvl in levels]
    records = []
    for i in range(n):
        family, level = buckets[i % len(buckets)]
        problem = _walk(family, level, split, seed, i // len(buckets))
        templates = FAMILIES[family].templates[problem.op]
        rng = random.Random(f"{seed}|{split}|{i}")
        chosen = rng.sample(range(len(templates)), k + 1)
        # Distinct names and objects per side: a twin is a new scenario, not a new wording only.
        names = rng.sample(_NAMES, k + 1)
        nouns = rng.sample(_ITEMS, k + 1)
        texts = [_render(templates[t], problem, names[s], nouns[s]) for s, t in enumerate(chosen)]
        records.append(
            PairRecord(
                id=f"syn-{split}-{seed}-{i:06d}",
                question=texts[0],
                rephrasings=tuple(texts[1:]),
                answer=str(problem.value),
                source="synthetic",
                meta={
                    "family": family,
                    "level": level,
                    "op": problem.op,
                    "operands": [problem.a, problem.b],
                    "split": split,
                    "templates": chosen,
                },
            )
        )
    return records
