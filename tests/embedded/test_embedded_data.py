"""Pairs are drawn whole (twins share a step) and the cursor resumes exactly."""
from __future__ import annotations

import pytest

from nemo_coreward.data import PairRecord
from nemo_coreward.embedded.data import DataConfig, PairCursor, check_twins, load_pairs, prompts_for


def test_cursor_visits_every_pair_once_per_epoch_and_is_seeded():
    cursor = PairCursor(10, seed=3)
    first = [cursor.next(5), cursor.next(5)]
    assert sorted(first[0] + first[1]) == list(range(10))
    again = PairCursor(10, seed=3)
    assert [again.next(5), again.next(5)] == first
    assert PairCursor(10, seed=4).next(10) != first[0] + first[1]
    assert PairCursor(10, seed=3, shuffle=False).next(4) == [0, 1, 2, 3]


def test_cursor_state_resumes_the_same_sequence_across_epochs():
    straight = PairCursor(7, seed=1)
    seq = [straight.next(3) for _ in range(6)]  # crosses two epoch ends
    interrupted = PairCursor(7, seed=1)
    head = [interrupted.next(3) for _ in range(2)]
    resumed = PairCursor(7, seed=1)
    resumed.load_state_dict(interrupted.state_dict())
    assert head + [resumed.next(3) for _ in range(4)] == seq


def test_cursor_refuses_a_state_from_another_data_set():
    state = PairCursor(7, seed=1).state_dict()
    with pytest.raises(ValueError, match="different data set"):
        PairCursor(8, seed=1).load_state_dict(state)


def test_twins_always_share_a_step():
    cfg = DataConfig(pairs_per_step=3)
    pairs = load_pairs(cfg, seed=0)[:10]
    cursor = PairCursor(len(pairs), seed=0)
    for _ in range(12):  # several epochs, steps straddling epoch ends
        prompts = prompts_for([pairs[i] for i in cursor.next(cfg.pairs_per_step)], cfg)
        sides: dict[str, list[int]] = {}
        for p in prompts:
            sides.setdefault(p.pair_id, []).append(p.side)
        assert len(sides) == cfg.pairs_per_step  # a pair drawn twice gets its own groups
        assert all(s == [0, 1] for s in sides.values())


def test_prompts_keep_question_twin_and_answer():
    rec = PairRecord("p1", "What is 2 + 2?", ("Add 2 and 2.", "Sum 2 and 2."), answer="4")
    both = prompts_for([rec], DataConfig(max_rephrasings=1))
    assert [(p.side, p.text, p.answer) for p in both] == [
        (0, "What is 2 + 2?", "4"), (1, "Add 2 and 2.", "4")]
    assert len(prompts_for([rec], DataConfig(max_rephrasings=2))) == 3
    assert [p.side for p in prompts_for([rec], DataConfig(sides="original"))] == [0]


def test_a_twin_reward_refuses_records_without_rephrasings():
    bare = [PairRecord("lonely", "What is 1 + 1?")]
    with pytest.raises(ValueError, match="'lonely' has no rephrasing"):
        check_twins(bare, DataConfig(), needs_twins=True)
    check_twins(bare, DataConfig(), needs_twins=False)


def test_file_source_needs_a_path():
    with pytest.raises(ValueError, match="data.path"):
        DataConfig(source="file")
