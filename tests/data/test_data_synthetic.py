"""The synthetic twin generator: twins keep the answer, seeds reproduce, splits are disjoint."""
from __future__ import annotations

import re

import pytest

from nemo_coreward.data import synthetic
from nemo_coreward.data.records import sides

ALL_FAMILIES = tuple(synthetic.FAMILIES)


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def _evaluate(family: str, op: str, text: str) -> int:
    """The arithmetic a side asks for, worked out from the numbers written in it."""
    nums = _ints(text)
    if family == "double":
        assert len(nums) in (1, 2), text
        if len(nums) == 2:  # "What is 6 * 2?" / "Each of 2 shelves holds 6 ..."
            nums.remove(2)
        return nums[0] * 2
    assert len(nums) == 2, text
    a, b = nums
    if op == "+":
        return a + b
    if op == "-":  # "Subtract 3 from 8" names b first; a > b always
        return max(a, b) - min(a, b)
    return a * b


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("level", synthetic.LEVELS)
def test_every_side_asks_for_the_answer(family, level):
    for split in synthetic.SPLITS:
        for rec in synthetic.generate(60, families=(family,), levels=(level,), k=2, seed=5,
                                      split=split):
            op = rec.meta["op"]
            for text in sides(rec):
                assert str(_evaluate(family, op, text)) == rec.answer, (rec.id, text)
            assert len(set(sides(rec))) == 3, "each rephrasing must change the wording"
            assert len(set(rec.meta["templates"])) == 3
            assert rec.meta["family"] == family and rec.meta["level"] == level


def test_easy_default_ranges():
    recs = synthetic.generate(200, seed=1)
    families = {r.meta["family"] for r in recs}
    assert families == {"add", "double"}
    for r in recs:
        a, b = r.meta["operands"]
        if r.meta["family"] == "add":
            assert 1 <= a <= 9 and 1 <= b <= 9
        else:
            assert 1 <= a <= 10 and b == 2


def test_seeds_reproduce_and_prefixes_are_stable():
    kw = dict(families=ALL_FAMILIES, levels=(1, 2), k=2)
    first = synthetic.generate(50, seed=3, **kw)
    assert synthetic.generate(50, seed=3, **kw) == first
    assert synthetic.generate(20, seed=3, **kw) == first[:20]
    assert synthetic.generate(50, seed=4, **kw) != first
    assert len({r.id for r in first}) == 50
    assert first[0].id == "syn-train-3-000000"


def test_train_and_heldout_never_share_a_problem():
    kw = dict(families=ALL_FAMILIES, levels=synthetic.LEVELS, k=1)
    train = synthetic.generate(3000, seed=0, split="train", **kw)
    heldout = synthetic.generate(1000, seed=9, split="heldout", **kw)

    def key(rec):
        op, (a, b) = rec.meta["op"], rec.meta["operands"]
        return (op, a, b) if op == "-" else (op, *sorted((a, b)))

    assert {key(r) for r in train}.isdisjoint({key(r) for r in heldout})
    train_texts = {t for r in train for t in sides(r)}
    assert train_texts.isdisjoint({t for r in heldout for t in sides(r)})
    assert not {r.id for r in train} & {r.id for r in heldout}


# (train, heldout) problems per pool. The totals are the problem spaces counted by hand:
# add 9 x 9 = 81 and 90 x 90 = 8100; double 10 and 89; sub 1 + ... + 8 = 36 and
# 9 + ... + 98 = 4815; mul 4 x 4 = 16 and 11 x 11 - 16 = 105; word = add + sub. The split
# is split_of's fixed salted hash (counted once; a new salt changes it).
POOL_SIZES = {
    ("add", 1): (54, 27), ("add", 2): (6077, 2023),
    ("double", 1): (7, 3), ("double", 2): (62, 27),
    ("sub", 1): (26, 10), ("sub", 2): (3553, 1262),
    ("mul", 1): (10, 6), ("mul", 2): (73, 32),
    ("word", 1): (80, 37), ("word", 2): (9630, 3285),
}


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("level", synthetic.LEVELS)
def test_every_pool_has_both_splits(family, level):
    train = synthetic.pool(family, level, "train")
    heldout = synthetic.pool(family, level, "heldout")
    assert (len(train), len(heldout)) == POOL_SIZES[family, level]
    assert not {p.key for p in train} & {p.key for p in heldout}


def test_pools_are_walked_without_repeats_before_exhaustion():
    size = len(synthetic.pool("double", 1, "train"))
    recs = synthetic.generate(size, families=("double",), seed=2)
    assert len({tuple(r.meta["operands"]) for r in recs}) == size


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown family 'divide'; valid: add, double"):
        synthetic.generate(1, families=("divide",))
    with pytest.raises(ValueError, match="family 'double' has 5 templates"):
        synthetic.generate(1, families=("double",), k=5)
    with pytest.raises(ValueError, match="unknown level 7"):
        synthetic.generate(1, levels=(7,))
    with pytest.raises(ValueError, match="split must be one of"):
        synthetic.generate(1, split="test")
