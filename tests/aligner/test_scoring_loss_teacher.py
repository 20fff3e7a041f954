"""Pure parts: pair sharding and metric merging, the actor loss, the teacher's order and files."""
from __future__ import annotations

import math

import pytest
import torch

from nemo_coreward.aligner.loss import LOSS_METRICS, actor_loss
from nemo_coreward.aligner.scoring import (
    SHARD_MEAN_METRICS,
    ParallelLayout,
    RewardRouter,
    merge_shard_metrics,
    response_decoder,
    shard_pairs,
)
from nemo_coreward.aligner.teacher import (
    EngineWeights,
    TeacherRollouts,
    TeacherStore,
    averageable,
    teacher_from_state,
)
from nemo_coreward.reward import RewardConfig, score_rollouts
from nemo_coreward.rl import LossConfig, TeacherConfig, kl_penalty
from nemo_coreward.server import LocalScorer

from .helpers import CharTokenizer, records, rollout_batch, scripted_rows


def test_shard_pairs_is_contiguous_balanced_and_complete():
    shards = shard_pairs([5, 1, 1, 9, 3, 7, 5], 3)
    assert shards == [[1, 3], [5, 7], [9]]
    assert shard_pairs([2], 3) == [[2], [], []]
    with pytest.raises(ValueError):
        shard_pairs([1], 0)


@pytest.mark.parametrize("num_shards", [1, 2, 3, 4])
def test_merged_shard_metrics_equal_the_whole_batch(num_shards):
    rows = scripted_rows(num_pairs=8, num_rollouts=4, seed=1)
    truth = {p: str(p % 3 + 1) for p in range(8)}
    whole = score_rollouts(records(rows, truth), RewardConfig())
    parts = []
    for shard in shard_pairs(range(8), num_shards):
        part = [r for r in rows if r[0] in shard]
        parts.append((score_rollouts(records(part, truth), RewardConfig()).metrics, len(part)))
    merged = merge_shard_metrics(parts)
    assert set(merged) == set(whole.metrics)
    for key, value in whole.metrics.items():
        if key in SHARD_MEAN_METRICS:  # across pairs: the mean of the shards' own values
            weight = sum(n for m, n in parts if key in m)
            value = sum(m[key] * n for m, n in parts if key in m) / weight
        assert merged[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_router_single_process_matches_in_process_scoring():
    rows = scripted_rows(num_pairs=5, num_rollouts=3, seed=2)
    batch = rollout_batch(rows)
    decode = response_decoder(CharTokenizer(), batch["response_tokens"], batch["prompt_lengths"],
                              batch["response_lengths"])
    assert decode([0])[0] == rows[0][2]
    router = RewardRouter(LocalScorer(), ParallelLayout.single())
    rewards, metrics = router.score(RewardConfig(), batch["pair_id"], batch["side"], decode)
    direct = score_rollouts(records(rows), RewardConfig())
    assert rewards.tolist() == direct.rewards
    assert metrics == pytest.approx(direct.metrics)


def _loss_batch(b=3, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t)
    mask[0, 3:] = 0
    return {"mask": mask, "rewards_with_kl": torch.tensor([1.0, 0.0, 1.0]),
            "baseline": torch.tensor([0.4, 0.4, 0.2]),
            "init_logprobs": -torch.rand(b, t, generator=g),
            "prev_logprobs": -torch.rand(b, t, generator=g)}


def test_loss_without_clip_or_kl_is_nemo_aligners_reinforce_loss():
    batch = _loss_batch()
    del batch["init_logprobs"], batch["prev_logprobs"]
    logp = (-torch.rand(3, 5, generator=torch.Generator().manual_seed(9))).requires_grad_()
    loss, metrics = actor_loss(logp, batch, LossConfig(kl_coef=0.0))
    adv = (batch["rewards_with_kl"] - batch["baseline"]).view(-1, 1)
    stock = (-logp * adv * batch["mask"]).sum() / batch["mask"].sum()  # masked_mean, actor :138
    # Same gradient; the value is the surrogate at ratio 1, -mean(A), not -mean(logp * A).
    torch.testing.assert_close(loss, (-adv * batch["mask"]).sum() / batch["mask"].sum())
    g1, = torch.autograd.grad(loss, logp)
    g2, = torch.autograd.grad(stock, logp)
    torch.testing.assert_close(g1, g2)
    assert set(metrics) == set(LOSS_METRICS) and float(metrics["kl_loss"]) == 0.0


def test_loss_adds_k3_term_and_clips_against_rollout_logprobs():
    batch = _loss_batch()
    logp = batch["prev_logprobs"] + 0.5  # ratio e^0.5 > 1.2: clipped where A > 0
    cfg = LossConfig(kl_coef=0.005)
    loss, metrics = actor_loss(logp, batch, cfg)
    adv = (batch["rewards_with_kl"] - batch["baseline"]).view(-1, 1).expand(3, 5)
    ratio = torch.exp(logp - batch["prev_logprobs"])
    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2))
    on = batch["mask"] > 0
    kl = kl_penalty(logp, batch["init_logprobs"], "low_var_kl")
    expected = pg[on].mean() + 0.005 * kl[on].mean()
    torch.testing.assert_close(loss, expected)
    # Rows 0 and 2 (A > 0, 3 + 5 tokens) bind the clip; row 1 (A = -0.4, 5 tokens) does not.
    assert float(metrics["clipfrac"]) == pytest.approx(8 / 13)


def test_teacher_copy_is_fp32_and_unaliased():
    policy = {"w": torch.ones(2, dtype=torch.bfloat16), "step": torch.tensor(3), "x": b"meta"}
    teacher = teacher_from_state(policy)
    assert teacher["w"].dtype == torch.float32 and teacher["step"].dtype == torch.int64
    teacher["w"] += 1
    assert policy["w"].tolist() == [1.0, 1.0]
    assert set(averageable(teacher)) == {"w"}


class RecordingHooks:
    """The actor's side of the teacher pass, recording calls and the weights it sees."""

    def __init__(self, policy_value: float) -> None:
        self.model = {"w": torch.full((2,), policy_value)}
        self.calls: list[tuple[str, float]] = []
        self.fail_generation = False

    def policy_state_to_cpu(self):
        self.calls.append(("policy_to_cpu", float(self.model["w"][0])))
        return {"w": self.model["w"].clone()}

    def load_weights(self, state):
        self.model["w"] = state["w"].clone()
        self.calls.append(("load", float(self.model["w"][0])))

    def refit_engine(self):
        self.calls.append(("refit", float(self.model["w"][0])))

    def generate(self, batch):
        if self.fail_generation:
            raise RuntimeError("engine died")
        self.calls.append(("generate", float(self.model["w"][0])))
        return {"batch": batch}


def test_teacher_pass_order_update_then_refit_then_restore():
    hooks = RecordingHooks(policy_value=1.0)
    engine = EngineWeights()
    engine.mark("policy")
    teacher = TeacherRollouts({"w": torch.zeros(2)}, TeacherConfig(alpha=0.25), engine)
    out = teacher.rollouts(hooks, ["b0", "b1"], num_rollouts=2, step=1, total_steps=10)
    assert [o["batch"] for o in out] == ["b0", "b0", "b1", "b1"]
    assert teacher.last_alpha == 0.25
    # teacher <- 0.25 * policy + 0.75 * teacher = 0.25; generation sees it; policy restored.
    assert hooks.calls == [("policy_to_cpu", 1.0), ("load", 0.25), ("refit", 0.25),
                           ("generate", 0.25), ("generate", 0.25), ("generate", 0.25),
                           ("generate", 0.25), ("load", 1.0)]
    assert engine.holds == "teacher" and engine.policy_refit_needed


def test_teacher_pass_restores_policy_when_generation_fails_and_skips_non_update_steps():
    hooks = RecordingHooks(policy_value=2.0)
    teacher = TeacherRollouts({"w": torch.zeros(2)}, TeacherConfig(update_interval=2))
    hooks.fail_generation = True
    with pytest.raises(RuntimeError, match="engine died"):
        teacher.rollouts(hooks, ["b"], 1, step=1, total_steps=4)
    assert teacher.last_alpha is None and teacher.state["w"].tolist() == [0.0, 0.0]
    assert hooks.calls[-1] == ("load", 2.0) and hooks.model["w"][0] == 2.0
    alpha = teacher.update({"w": torch.full((2,), 2.0)}, step=2, total_steps=4)
    expected = 1e-5 + 0.5 * (0.01 - 1e-5) * (1 + math.cos(math.pi * 1 / 4))
    assert alpha == pytest.approx(expected)
    torch.testing.assert_close(teacher.state["w"], torch.full((2,), 2.0 * expected))


def test_teacher_alpha_one_copies_the_policy_and_zero_keeps_it():
    teacher = TeacherRollouts({"w": torch.tensor([1.0, -1.0])}, TeacherConfig(alpha=1.0))
    teacher.update({"w": torch.tensor([3.0, 4.0])}, 1, 1)
    assert teacher.state["w"].tolist() == [3.0, 4.0]
    frozen = TeacherRollouts({"w": torch.tensor([1.0, -1.0])}, TeacherConfig(alpha=0.0))
    frozen.update({"w": torch.tensor([3.0, 4.0])}, 1, 1)
    assert frozen.state["w"].tolist() == [1.0, -1.0]


def test_teacher_store_round_trip_prune_and_errors(tmp_path):
    store = TeacherStore(tmp_path / "teacher", keep=2)
    state = {"w": torch.tensor([0.5, 1.5]), "n": torch.tensor(7)}
    for step in (10, 20, 30):
        state["w"] += 1
        store.save(step, state, tp_rank=1, pp_rank=0)
    assert store.steps() == [20, 30]
    fresh = {"w": torch.zeros(2), "n": torch.tensor(7)}
    store.load_into(fresh, 30, 1, 0)
    assert fresh["w"].tolist() == [3.5, 4.5]
    with pytest.raises(FileNotFoundError, match="no teacher snapshot for step 10"):
        store.load_into(fresh, 10, 1, 0)
    with pytest.raises(ValueError, match="do not match"):
        store.load_into({"v": torch.zeros(2)}, 30, 1, 0)


def test_engine_weights_rejects_unknown_names():
    e = EngineWeights()
    assert e.policy_refit_needed
    e.mark("policy")
    assert not e.policy_refit_needed
    with pytest.raises(ValueError):
        e.mark("ref")
