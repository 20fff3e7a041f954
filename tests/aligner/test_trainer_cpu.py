"""CoRewardGRPOTrainer with the REAL NeMo-Aligner ReinforceTrainer loop, on CPU.

A duck-typed actor (cpu_actor.py) stands in for the Megatron actor; NeMo-Aligner's own
fit loop, rollout stacking/gathering, batch iterator, sampler and dataloader builder run
for real in a one-process gloo group (set-up and CPU patches: fit_setup.py).
"""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("nemo_aligner")
pytest.importorskip("megatron.core")

from nemo_coreward.aligner.config import CoRewardConfig  # noqa: E402
from nemo_coreward.aligner.teacher import TeacherStore, teacher_from_state  # noqa: E402
from nemo_coreward.reward import RewardConfig, Rollout, score_rollouts  # noqa: E402
from nemo_coreward.rl import grpo_advantages  # noqa: E402

from .cpu_actor import fingerprint  # noqa: E402
from .fit_setup import PAIRS_PER_STEP, N, build, gloo_one_rank, patch_cuda_for_cpu  # noqa: E402


@pytest.fixture(scope="module")
def one_rank():
    with gloo_one_rank():
        yield


@pytest.fixture
def cpu_cuda(monkeypatch):
    patch_cuda_for_cpu(monkeypatch.setattr)


def _step_rollouts(actor, who, step_index, per_step):
    rows = [g for g in actor.generated if g[2] == who]
    return rows[step_index * per_step:(step_index + 1) * per_step]


def test_two_grpo_steps_log_real_rewards_feed_grpo_advantages_and_count_pairs(
        one_rank, cpu_cuda, tmp_path):
    coreward = CoRewardConfig()  # co_reward, KL 0.005 k3 as a loss term
    trainer, actor, rec, data = build(coreward, tmp_path)
    before = [p.detach().clone() for p in actor.model.parameters()]
    trainer.fit()

    per_step = PAIRS_PER_STEP * 2 * N
    rollout_logs = [m for prefix, _, m in rec.metrics if prefix == "train_rollouts/"]
    assert len(rollout_logs) == 2 and len(actor.loss_batches) == 2  # one optimiser step each
    seen_pairs = []
    for step, (logged, batch) in enumerate(zip(rollout_logs, actor.loss_batches)):
        rows = _step_rollouts(actor, "policy", step, per_step)
        direct = score_rollouts(
            [Rollout(p, s, t, data["train"].ground_truth(p)) for p, s, t, _ in [
                (p, s, t, w) for p, s, w, t in rows]], RewardConfig())
        assert logged["rewards"] == pytest.approx(sum(direct.rewards) / per_step)
        assert logged["coreward_reward_mean"] == pytest.approx(direct.metrics["reward_mean"])
        assert logged["coreward_pseudo_label_accuracy"] == pytest.approx(
            direct.metrics["pseudo_label_accuracy"])
        assert logged["consumed_samples"] == (step + 1) * PAIRS_PER_STEP  # pairs, not rollouts
        groups = torch.tensor([p * 2 + s for p, s, _, _ in rows])
        expected = grpo_advantages(torch.tensor(direct.rewards), groups)
        torch.testing.assert_close(batch["rewards_with_kl"] - batch["baseline"], expected)
        assert "init_logprobs" in batch and "prev_logprobs" not in batch
        seen_pairs.append({p for p, _, _, _ in rows})
    assert seen_pairs[0].isdisjoint(seen_pairs[1])  # the sampler did not skip or repeat
    train_table = [t for key, _, t in rec.tables if key == "table/train_rollouts"][-1]
    first_rows = [_step_rollouts(actor, "policy", s, per_step)[0] for s in (0, 1)]
    expected_table = [score_rollouts([Rollout(p, s, t) for p, s, _, t in
                                      _step_rollouts(actor, "policy", st, per_step)],
                                     RewardConfig()).rewards[0] for st in (0, 1)]
    assert list(train_table["reward"]) == expected_table  # the table shows real rewards
    assert list(train_table["response"]) == [t for _, _, _, t in first_rows]
    assert rec.saves and int(rec.saves[-1]["consumed_samples"]) == 2 * PAIRS_PER_STEP
    assert int(rec.saves[-1]["step"]) == 2
    after = list(actor.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
    val_logs = [m for prefix, _, m in rec.metrics if prefix == "val_rollouts/"]
    assert len(val_logs) == 1 and val_logs[0]["rollout_size"] == 4 * 2  # one per side


def test_teacher_generates_after_the_policy_with_averaged_weights_and_is_saved(
        one_rank, cpu_cuda, tmp_path):
    coreward = CoRewardConfig.from_mapping({
        "reward": {"name": "co_rewarding_combined"}, "kl": {"coef": 0.001},
        "teacher": {"alpha": 0.5}})
    trainer, actor, rec, data = build(coreward, tmp_path, teacher=True)
    teacher0 = {k: v.clone() for k, v in actor.teacher.state.items()}
    trainer.fit()

    calls = actor.calls
    first = calls.index("teacher_rollouts")
    assert calls[:first] == ["prepare_for_inference"] + ["infer"] * (2 * N)
    k = 2 * N  # two micro-batches of 2 pairs, N rollouts each
    assert calls[first:first + 5 + k] == (["teacher_rollouts", "policy_to_cpu", "load_weights",
                                           "refit_teacher"] + ["teacher_infer"] * k
                                          + ["load_weights"])
    assert calls[first + 5 + k] == "init_logprobs"  # the KL reference is the teacher, after it
    # refit 0: policy at prepare; refit 1: teacher = 0.5 teacher0 + 0.5 policy == policy
    # (equal at start)
    assert actor.weights_at_refit[1] == pytest.approx(actor.weights_at_refit[0])
    # step 2: the policy moved, the teacher is halfway between its old self and the policy
    policy_step2 = actor.weights_at_refit[2]
    assert actor.weights_at_refit[3] == pytest.approx(
        0.5 * actor.weights_at_refit[1] + 0.5 * policy_step2, rel=1e-5)
    assert fingerprint(teacher0) != pytest.approx(fingerprint(actor.teacher.state), rel=1e-6)
    assert actor.weights_at_refit[3] == pytest.approx(fingerprint(actor.teacher.state), rel=1e-9)
    store = TeacherStore(tmp_path / "teacher")
    assert store.steps() == [2]
    restored = teacher_from_state(actor.model.state_dict())
    store.load_into(restored, 2, 0, 0)
    for key, value in actor.teacher.state.items():
        torch.testing.assert_close(restored[key], value)

    per_step = PAIRS_PER_STEP * 1 * N  # the policy rolls out the questions, the teacher the twins
    logged = [m for prefix, _, m in rec.metrics if prefix == "train_rollouts/"][0]
    pol = _step_rollouts(actor, "policy", 0, per_step)
    tea = _step_rollouts(actor, "teacher", 0, per_step)
    assert {s for _, s, _, _ in pol} == {0} and {s for _, s, _, _ in tea} == {1}
    direct = score_rollouts([Rollout(p, s, t) for p, s, _, t in pol],
                            RewardConfig(name="co_rewarding_combined"),
                            teacher=[Rollout(p, s, t) for p, s, _, t in tea])
    assert logged["rewards"] == pytest.approx(sum(direct.rewards) / per_step)
    assert logged["coreward_teacher_alpha"] == 0.5
    # Policy and teacher roll out different sides: only the teacher's own vote is logged.
    assert logged["coreward_teacher_majority_ratio"] == pytest.approx(
        direct.metrics["teacher_majority_ratio"])


def _trained(actor):
    return {k: v.clone() for k, v in actor.model.state_dict().items()}


def test_a_resumed_teacher_run_repeats_the_uninterrupted_one(one_rank, cpu_cuda, tmp_path):
    """A 4-step run stopped by its time limit after step 2, then restarted from what a
    NeMo checkpoint holds plus the teacher snapshot, against one uninterrupted 4-step run:
    same data, rollouts, advantages, alpha schedule, teacher weights and policy weights."""
    coreward = CoRewardConfig.from_mapping({
        "reward": {"name": "co_rewarding_ii"}, "kl": {"coef": 0.001},
        "teacher": {"alpha_start": 0.5, "alpha_end": 0.1}})
    whole, whole_actor, _, _ = build(coreward, tmp_path / "whole", teacher=True, max_steps=4)
    whole.fit()

    first, actor, rec, _ = build(coreward, tmp_path / "split", teacher=True, max_steps=4,
                                  time_limit_after=2)
    first.fit()
    saved = {k: int(v) for k, v in rec.saves[-1].items()}  # what the checkpoint's name holds
    assert saved["step"] == 2 and saved["consumed_samples"] == 2 * PAIRS_PER_STEP
    weights, sampler_rng = _trained(actor), actor.generator.get_state()
    generated_before = list(actor.generated)

    second, actor2, _, _ = build(coreward, tmp_path / "split", teacher=True, max_steps=4)
    actor2.model.load_state_dict(weights)  # NeMo restores the policy from the checkpoint
    actor2.generator.set_state(sampler_rng)  # TensorRT-LLM's sampling: not part of the test
    second.load_state_dict(saved)
    TeacherStore(tmp_path / "split" / "teacher").load_into(actor2.teacher.state, saved["step"],
                                                         0, 0)
    second.fit()

    assert generated_before + actor2.generated == whole_actor.generated
    for mine, theirs in zip(actor.loss_batches + actor2.loss_batches, whole_actor.loss_batches):
        for key in ("rewards_with_kl", "baseline", "init_logprobs", "response_tokens"):
            torch.testing.assert_close(mine[key], theirs[key])
    for key, value in whole_actor.teacher.state.items():
        torch.testing.assert_close(actor2.teacher.state[key], value)
    for key, value in _trained(whole_actor).items():
        torch.testing.assert_close(_trained(actor2)[key], value)
    assert actor2.weights_at_refit[1] != pytest.approx(actor2.weights_at_refit[0])


# A constant series as both accuracy and majority ratio meets zero thresholds at every
# point: the alarm fires at its second point whatever the scripted answers are.
ALWAYS_FIRES = {"majority_key": "n_rollouts", "accuracy_keys": ["n_rollouts"],
                "accuracy_drop": 0.0, "majority_rise": 0.0, "patience": 1, "window": 1}


def test_the_collapse_alarm_stops_the_fit_loop_with_a_save(one_rank, cpu_cuda, tmp_path):
    history = tmp_path / "coreward_alarm.jsonl"
    coreward = CoRewardConfig.from_mapping({
        "alarm": {**ALWAYS_FIRES, "stop": True},
        "validation_reward": {"name": "ground_truth"}})
    trainer, actor, rec, _ = build(coreward, tmp_path, max_steps=6, interval=3,
                                    alarm_history=history)
    trainer.fit()

    rollout_logs = [m for prefix, _, m in rec.metrics if prefix == "train_rollouts/"]
    assert [m["coreward_alarm_fired"] for m in rollout_logs] == [0.0, 1.0]  # stopped at 2 of 6
    assert [int(s["step"]) for s in rec.saves] == [2]  # saved, as at a time limit
    val_logs = [m for prefix, _, m in rec.metrics if prefix == "val_rollouts/"]
    assert len(val_logs) == 1
    rows = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 2]
    assert rows[2] == {"step": 2, "heldout_accuracy": val_logs[0]["rewards"]}
    assert trainer.alarm.result.step == 2

    # a restart restored at step 1 forgets the rows after it
    again, _, _, _ = build(coreward, tmp_path, max_steps=6, interval=3, alarm_history=history)
    assert [r["step"] for r in again.alarm.rows] == [1, 2, 2]
    again.load_state_dict({"step": 1, "consumed_samples": PAIRS_PER_STEP, "epoch": 0,
                           "reinforce_optimization_step": 1})
    assert [r["step"] for r in again.alarm.rows] == [1]
    assert [json.loads(line)["step"] for line in history.read_text().splitlines()] == [1]


def test_without_stop_the_alarm_only_flags_the_metric(one_rank, cpu_cuda, tmp_path):
    coreward = CoRewardConfig.from_mapping({"alarm": ALWAYS_FIRES})
    trainer, _, rec, _ = build(coreward, tmp_path, max_steps=3, interval=3)
    trainer.fit()
    rollout_logs = [m for prefix, _, m in rec.metrics if prefix == "train_rollouts/"]
    assert [m["coreward_alarm_fired"] for m in rollout_logs] == [0.0, 1.0, 1.0]


def test_fp8_and_sequence_parallel_padding_changes_only_the_width(one_rank, cpu_cuda, tmp_path):
    """FP8 with sequence parallelism at TP 2 needs lengths divisible by 16 x 2: the step's
    batch is padded with EOS, the padded positions are off the mask and carry no loss
    weight, and the update is the unpadded one."""
    from nemo_coreward.aligner.layout import round_up

    from .helpers import EOS

    coreward = CoRewardConfig()
    plain, plain_actor, _, _ = build(coreward, tmp_path / "plain", max_steps=1, keyed=True)
    plain.fit()
    fp8 = {"fp8": True, "sequence_parallel": True, "tensor_model_parallel_size": 2}
    padded, padded_actor, _, _ = build(coreward, tmp_path / "fp8", max_steps=1, keyed=True,
                                       model_cfg=fp8)
    padded.fit()
    a, b = plain_actor.loss_batches[0], padded_actor.loss_batches[0]
    width = a["response_tokens"].size(1)
    assert width % 32  # otherwise nothing would be padded
    assert b["response_tokens"].size(1) == round_up(width, 32)
    assert torch.equal(b["response_tokens"][:, :width], a["response_tokens"])
    assert bool((b["response_tokens"][:, width:] == EOS).all())
    assert torch.equal(b["mask"][:, :width - 1], a["mask"])
    assert not b["mask"][:, width - 1:].any() and not b["loss_weights"][:, width - 1:].any()
    torch.testing.assert_close(b["loss_weights"][:, :width - 1], a["loss_weights"])
    for key, value in plain_actor.model.state_dict().items():
        torch.testing.assert_close(padded_actor.model.state_dict()[key], value)


def test_a_fixed_rollout_length_off_the_fp8_multiple_is_refused(one_rank, cpu_cuda, tmp_path):
    with pytest.raises(ValueError, match=r"trainer\.grpo\.rollout_batch_seq_length \(100\) must "
                                         r"be a multiple of 16 .* use 112"):
        build(CoRewardConfig(), tmp_path, model_cfg={"fp8": True}, seq_length=100)
    build(CoRewardConfig(), tmp_path, model_cfg={"fp8": True}, seq_length=112)


def test_the_generation_engines_logprob_mismatch_is_logged_every_step(one_rank, cpu_cuda,
                                                                      tmp_path):
    """TensorRT-LLM cannot run here: the CPU actor's "engine" is a copy of the weights at
    each refit whose per-token log-probs ride in the rollouts as ``generation_logprobs``.
    An exact copy gives 0; one without the output bias (an engine built without the
    model's biases) gives the hand-computed mean gap on step one."""
    from nemo_coreward.rl import aggregate

    from .cpu_actor import TinyPolicy

    def first_step(name, drop):
        trainer, actor, rec, _ = build(CoRewardConfig(), tmp_path / name, max_steps=1,
                                       keyed=True, engine_drops_bias=drop)
        trainer.fit()
        logged = [m for prefix, _, m in rec.metrics if prefix == "train_rollouts/"]
        return logged[0]["coreward_gen_logprob_mismatch"], actor.loss_batches[0]

    same, _ = first_step("same", False)
    assert same == pytest.approx(0.0, abs=1e-7)
    gap, batch = first_step("no_bias", True)
    policy, engine = TinyPolicy(), TinyPolicy()
    with torch.no_grad():
        engine.out.bias.zero_()
        expected = aggregate((engine.logprobs(batch["response_tokens"])
                              - policy.logprobs(batch["response_tokens"])).abs(), batch["mask"])
    assert gap == pytest.approx(float(expected), rel=1e-5) and gap > 1e-3
