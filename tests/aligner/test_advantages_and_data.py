"""Advantages as REINFORCE terms, the pair-counting of consumed_samples, the twin dataset."""
from __future__ import annotations

import pytest
import torch

from nemo_coreward.aligner.advantages import (
    consumed_after_step,
    reinforce_terms,
    rollout_group_ids,
    sequence_kl,
)
from nemo_coreward.aligner.config import DataSection
from nemo_coreward.aligner.data import TwinPromptDataset, render_prompt, twin_collate
from nemo_coreward.data.records import PairRecord
from nemo_coreward.rl import grpo_advantages, kl_penalty

from .helpers import CharTokenizer


def test_group_ids_split_sides_and_pairs():
    pairs = torch.tensor([7, 7, 7, 7, 3, 3])
    sides = torch.tensor([0, 0, 1, 1, 0, 0])
    g = rollout_group_ids(pairs, sides)
    assert g[0] == g[1] and g[2] == g[3] and g[4] == g[5]
    assert len({int(g[0]), int(g[2]), int(g[4])}) == 3


def test_terms_difference_is_the_grpo_advantage_per_side():
    rewards = torch.tensor([1., 0., 1., 1., 0., 0., 1., 0.])
    pairs = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0])
    sides = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    t = reinforce_terms(rewards, pairs, sides)
    # side 0: mean 0.75, unbiased std sqrt(0.75 / 3) = 0.5; side 1: mean 0.25, std 0.5
    expected = torch.tensor([0.25, -0.75, 0.25, 0.25, -0.25, -0.25, 0.75, -0.25]) / (0.5 + 1e-6)
    torch.testing.assert_close(t.advantages, expected)
    torch.testing.assert_close(t.rewards_with_kl - t.baseline, expected)
    torch.testing.assert_close(t.rewards_with_kl, rewards)
    direct = grpo_advantages(rewards, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    torch.testing.assert_close(t.advantages, direct)


def test_kl_in_reward_shapes_before_normalising():
    rewards = torch.tensor([1., 0., 1., 0.])
    kl = torch.tensor([0.5, 0.1, 0.0, 0.2])
    t = reinforce_terms(rewards, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long),
                        estimator="dr_grpo", kl=kl, kl_coef=0.1)
    shaped = rewards - 0.1 * kl
    torch.testing.assert_close(t.rewards_with_kl, shaped)
    torch.testing.assert_close(t.advantages, shaped - shaped.mean())


def test_rloo_matches_nemo_aligners_own_baseline():
    ppo_utils = pytest.importorskip("nemo_aligner.utils.ppo_utils")
    g = torch.Generator().manual_seed(3)
    rewards = torch.randint(0, 2, (24,), generator=g).float()
    pairs = torch.arange(24) // 8
    sides = (torch.arange(24) // 4) % 2
    # NeMo-Aligner groups by identical prompt rows: one distinct prompt per (pair, side).
    prompts = torch.stack([torch.tensor([int(p), int(s), 5]) for p, s in zip(pairs, sides)])
    baseline = ppo_utils.calculate_rloo_baseline(prompts, rewards, torch.ones(24))
    t = reinforce_terms(rewards, pairs, sides, estimator="rloo")
    torch.testing.assert_close(t.advantages, rewards - baseline, rtol=0, atol=1e-6)


def test_sequence_kl_is_masked_mean_of_k3():
    lp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-0.5, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    per_token = kl_penalty(lp, ref, "low_var_kl")
    expected = torch.stack([per_token[0, :2].mean(), per_token[1, :2].mean()])
    torch.testing.assert_close(sequence_kl(lp, ref, mask, "low_var_kl"), expected)


def test_consumed_samples_count_pairs():
    assert consumed_after_step(256, 128, 128 * 2 * 8, 16) == 384
    with pytest.raises(RuntimeError, match="expected 128 pairs x 16"):
        consumed_after_step(0, 128, 128 * 8, 16)


def _records():
    return [PairRecord("a", "1+1?", ("one plus one?",), "2"),
            PairRecord("b", "x" * 50, ("short",), "3"),
            PairRecord("c", "2+2?", ("two plus two?",), None)]


def test_dataset_drops_too_long_pairs_at_build_time_without_shifting():
    data = DataSection(prompt_template="Q: {question}")
    ds = TwinPromptDataset(_records(), CharTokenizer(), max_prompt_length=20, data=data)
    assert ds.dropped == ["b"] and len(ds) == 2
    tok = CharTokenizer()
    item = ds[1]
    assert item["pair_id"] == 1 and tok.ids_to_text(item["sides"][0].tolist()) == "Q: 2+2?"
    assert tok.ids_to_text(item["sides"][1].tolist()) == "Q: two plus two?"
    assert (ds.ground_truth(0), ds.ground_truth(1)) == ("2", None)
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(ValueError, match="record 'b' .* prompt budget is 20"):
        TwinPromptDataset(_records(), tok, max_prompt_length=20,
                          data=DataSection(prompt_template="Q: {question}", too_long="error"))


def test_dataset_refuses_pairs_without_twin():
    recs = [PairRecord("a", "1+1?", (), "2")]
    with pytest.raises(ValueError, match="<records>: record 'a' .* 0 rephrasing"):
        TwinPromptDataset(recs, CharTokenizer(), max_prompt_length=99, data=DataSection())
    ds = TwinPromptDataset(recs, CharTokenizer(), max_prompt_length=99,
                           data=DataSection(use_rephrasings=False))
    assert len(ds[0]["sides"]) == 1


def test_collate_expands_pairs_into_adjacent_sides():
    ds = TwinPromptDataset(_records(), CharTokenizer(), max_prompt_length=99, data=DataSection())
    out = twin_collate([ds[2], ds[0]], response_length=5, eos_id=0)
    assert out["pair_id"].tolist() == [2, 2, 0, 0] and out["side"].tolist() == [0, 1, 0, 1]
    lengths = [len(ds[2]["sides"][0]), len(ds[2]["sides"][1]), len(ds[0]["sides"][0]),
               len(ds[0]["sides"][1])]
    assert out["length"].tolist() == lengths
    assert out["text"].shape == (4, max(lengths) + 5)
    assert out["text"][0, : lengths[0]].tolist() == ds[2]["sides"][0].tolist()
    assert (out["text"][0, lengths[0]:] == 0).all()


def test_render_prompt_leaves_braces_alone():
    assert render_prompt("<s>{question}\\boxed{}", "a {b}") == "<s>a {b}\\boxed{}"
    with pytest.raises(ValueError):
        render_prompt("no slot", "q")


def test_select_sides_keeps_the_rows_of_the_sides_a_model_rolls_out():
    from nemo_coreward.aligner.data import select_sides
    from nemo_coreward.reward import reward_spec

    batch = {"text": torch.arange(12).reshape(4, 3), "length": torch.tensor([3, 2, 3, 1]),
             "pair_id": torch.tensor([7, 7, 8, 8]), "side": torch.tensor([0, 1, 0, 1])}
    spec = reward_spec("co_rewarding_combined")
    policy = select_sides(batch, spec.policy_rolls_out)
    teacher = select_sides(batch, spec.teacher_rolls_out)
    assert policy["side"].tolist() == [0, 0] and policy["pair_id"].tolist() == [7, 8]
    assert policy["text"].tolist() == [[0, 1, 2], [6, 7, 8]] and policy["length"].tolist() == [3, 3]
    assert teacher["side"].tolist() == [1, 1] and teacher["length"].tolist() == [2, 1]
    assert select_sides(batch, reward_spec("co_reward").policy_rolls_out) is batch
