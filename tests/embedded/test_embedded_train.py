"""End to end on a tiny random Llama: the run directory, exact resume, every reward."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nemo_coreward.embedded import cli
from nemo_coreward.embedded.checkpoint import list_checkpoints
from nemo_coreward.embedded.config import load
from nemo_coreward.embedded.rundir import read_metrics
from nemo_coreward.embedded.trainer import Interrupted, train
from nemo_coreward.reward import REWARDS, reward_spec

# Rewards of a random model are mostly zero; an entropy bonus makes every step move the
# weights, so resume checks compare runs whose state really changes.
MOVING = ["loss.entropy_coef=0.01", "reward.name=self_certainty"]


def _cfg(model_dir: Path, out: Path, *overrides: str):
    return load("tiny", [f"model.path={model_dir}", f"output_root={out}", *overrides])


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "tokens_per_s"}
            for r in rows]


def test_two_steps_end_to_end_through_the_cli(tiny_model_dir, tmp_path, capsys):
    code = cli.main(["--config-name", "tiny", f"model.path={tiny_model_dir}",
                     f"output_root={tmp_path}", "train.export=true", "train.keep_last=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out greedy accuracy:" in out and "held-out before:" in out
    (run,) = tmp_path.glob("tiny-*")
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("reward_mean", "majority_ratio", "twin_agreement", "pseudo_label_accuracy",
                "loss", "grad_norm", "lr", "tokens_per_s", "time/generate", "time/update"):
        assert key in rows[0], key
    assert rows[0]["n_rollouts"] == 2 * 2 * 2  # pairs x sides x n
    assert [step for step, _ in list_checkpoints(run)] == [2]  # keep_last=1 pruned step 1
    evals = json.loads((run / "eval.json").read_text())
    assert set(evals) == {"before", "after"} and evals["before"]["num_prompts"] == 4
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2}
    assert [side["side"] for side in samples[0]["sides"]] == [0, 1]
    assert {"text", "answer", "label", "reward"} <= set(samples[0]["sides"][0]["responses"][0])
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert "name: tiny" in (run / "config.yaml").read_text()
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(str(run / "final"))
    assert exported.config.num_hidden_layers == 2


def test_training_changes_the_weights_and_logs_the_loss(tiny_model_dir, tmp_path):
    from nemo_coreward.embedded.model import ModelConfig, load_causal_lm

    result = train(_cfg(tiny_model_dir, tmp_path, *MOVING, "train.export=true",
                        "eval.enabled=false"), echo=lambda _: None)
    before = load_causal_lm(tiny_model_dir, ModelConfig()).state_dict()
    after = load_causal_lm(result.run_dir / "final", ModelConfig()).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert result.metrics["grad_norm"] > 0 and result.metrics["reward_std"] > 0


def _interrupt_after(step: int):
    def hook(current: int, metrics: dict) -> None:
        if current == step:
            raise KeyboardInterrupt
    return hook


# With a teacher, the KL loss to it shows whether its averaged weights were restored.
@pytest.mark.parametrize("extra", [MOVING, [*MOVING[:1], "reward.name=co_rewarding_ii",
                                            "data.sides=original", "teacher.alpha=0.5",
                                            "kl.coef=0.01"]],
                         ids=["self_certainty", "co_rewarding_ii"])
def test_interrupted_and_resumed_run_logs_the_same_metrics(tiny_model_dir, tmp_path, extra):
    common = [*extra, "train.steps=4", "train.checkpoint_every=0", "eval.enabled=false"]
    straight = train(_cfg(tiny_model_dir, tmp_path / "a", *common), echo=lambda _: None)
    with pytest.raises(Interrupted) as stop:
        train(_cfg(tiny_model_dir, tmp_path / "b", *common), on_step_end=_interrupt_after(2),
              echo=lambda _: None)
    run = stop.value.checkpoint.parent.parent
    assert stop.value.checkpoint.name == "step_000002.ckpt"
    resumed = train(_cfg(tiny_model_dir, tmp_path / "b", *common, f"run_dir={run}",
                         "resume=true"), echo=lambda _: None)
    assert resumed.run_dir == run and resumed.last_step == 4
    a, b = read_metrics(straight.run_dir), read_metrics(run)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert _comparable(a) == _comparable(b)
    assert a[-1]["loss"] != a[0]["loss"]  # the compared metrics do change step to step


def test_interrupt_inside_a_step_rolls_back_to_its_start(tiny_model_dir, tmp_path, monkeypatch):
    from nemo_coreward.embedded import scoring

    common = [*MOVING, "train.steps=3", "train.checkpoint_every=0", "eval.enabled=false"]
    straight = train(_cfg(tiny_model_dir, tmp_path / "a", *common), echo=lambda _: None)
    real, calls = scoring.Scorer.score, []

    def flaky(self, policy, teacher=None):
        calls.append(1)
        if len(calls) == 3:  # during step 3, after its rollouts were sampled
            raise KeyboardInterrupt
        return real(self, policy, teacher)

    monkeypatch.setattr(scoring.Scorer, "score", flaky)
    with pytest.raises(Interrupted) as stop:
        train(_cfg(tiny_model_dir, tmp_path / "b", *common), echo=lambda _: None)
    assert stop.value.checkpoint.name == "step_000002.ckpt"
    monkeypatch.setattr(scoring.Scorer, "score", real)
    run = stop.value.checkpoint.parent.parent
    # resume=true finds the newest run of this name under output_root
    assert cli.main(["--config-name", "tiny", f"model.path={tiny_model_dir}",
                     f"output_root={tmp_path / 'b'}", "resume=true"]) == 0
    assert _comparable(read_metrics(straight.run_dir)) == _comparable(read_metrics(run))


@pytest.mark.parametrize("name", REWARDS.names())
def test_every_reward_runs_two_steps(tiny_model_dir, tmp_path, name):
    spec = reward_spec(name)
    sides = "all" if spec.needs_twins else "original"
    result = train(_cfg(tiny_model_dir, tmp_path, f"reward.name={name}", f"data.sides={sides}",
                        "eval.enabled=false", "kl.coef=0.01"), echo=lambda _: None)
    rows = read_metrics(result.run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    policy_sides = 2 if spec.needs_twins and spec.policy_rolls_out(1) else 1
    assert rows[0]["n_rollouts"] == 2 * policy_sides * 2  # pairs x sides x rollouts
    assert rows[0]["kl_loss"] == pytest.approx(0.0, abs=1e-6)  # step 1: reference = policy
    if spec.needs_teacher:
        # the cosine schedule over the run's 2 steps: alpha_start, then halfway to alpha_end
        assert [r["teacher_alpha"] for r in rows] == pytest.approx(
            [0.01, 1e-5 + 0.5 * (0.01 - 1e-5)])
        assert "teacher_majority_ratio" in rows[0] and "time/teacher" in rows[0]
    else:
        assert "teacher_alpha" not in rows[0] and "time/teacher" not in rows[0]
    if spec.needs_token_stats:
        assert rows[0]["reward_std"] > 0  # continuous rewards from recorded logit statistics


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_two_steps_on_cuda_in_bf16(tiny_model_dir, tmp_path):
    result = train(_cfg(tiny_model_dir, tmp_path, *MOVING, "model.device=cuda",
                        "model.precision=bf16-mixed"), echo=lambda _: None)
    assert result.last_step == 2 and result.metrics["grad_norm"] > 0


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes(tiny_model_dir, tmp_path):
    """scancel and SLURM time limits send SIGTERM: nothing finished may be lost."""
    import signal
    import subprocess

    from tests.embedded.trainproc import train_command, wait_for_rows

    run = tmp_path / "run"
    args = train_command(tiny_model_dir, run, 40, 0)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_rows(proc, run, 2, timeout_s=120, poll_s=0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "continue with: coreward train run_dir=" in out
    (saved, _), *_ = list_checkpoints(run)[::-1]
    assert saved >= 2  # no checkpoint was due (checkpoint_every=0): SIGTERM made this one
    assert [r["step"] for r in read_metrics(run)] == list(range(1, saved + 1))


def test_periodic_heldout_evaluation_is_logged_and_reused_as_the_final_one(tiny_model_dir,
                                                                         tmp_path):
    result = train(_cfg(tiny_model_dir, tmp_path, "train.steps=3", "eval.every=2"),
                   echo=lambda _: None)
    rows = read_metrics(result.run_dir)
    assert ["heldout_accuracy" in r for r in rows] == [False, True, False]
    assert rows[1]["heldout_boxed_rate"] >= 0 and "time/heldout" in rows[1]
    assert 0.0 <= rows[1]["heldout_accuracy"] <= 1.0
    # step 3 is not a multiple of 2: the final evaluation runs on its own
    assert set(result.eval_after) >= {"accuracy", "boxed_rate", "twin_agreement"}

    logged: list[str] = []
    again = train(_cfg(tiny_model_dir, tmp_path / "b", "eval.every=1"), echo=logged.append)
    last = read_metrics(again.run_dir)[-1]
    assert again.eval_after["accuracy"] == last["heldout_accuracy"]
    assert sum("evaluating the trained policy" in line for line in logged) == 0


# A constant series as both "accuracy" and "majority ratio" meets zero thresholds at every
# point: the alarm fires at its second point, whatever the random tiny model samples.
ALWAYS_FIRES = ["alarm.majority_key=n_rollouts", "alarm.accuracy_keys=[n_rollouts]",
                "alarm.accuracy_drop=0", "alarm.majority_rise=0", "alarm.patience=1",
                "alarm.window=1", "eval.enabled=false", "train.steps=4",
                "train.checkpoint_every=0"]


def test_the_collapse_alarm_stops_the_run_with_a_checkpoint(tiny_model_dir, tmp_path):
    logged: list[str] = []
    result = train(_cfg(tiny_model_dir, tmp_path, *ALWAYS_FIRES, "alarm.stop=true"),
                   echo=logged.append)
    assert result.stopped_early and result.alarm.fired and result.alarm.step == 2
    assert result.last_step == 2
    assert [r["step"] for r in read_metrics(result.run_dir)] == [1, 2]
    assert [step for step, _ in list_checkpoints(result.run_dir)] == [2]
    saved = json.loads((result.run_dir / "alarm.json").read_text())
    assert saved["step"] == 2 and saved["stopped"] is True
    assert any("COLLAPSE ALARM at step 2" in line and "stopping" in line for line in logged)

    # resuming a stopped run does not train past the alarm
    rerun = train(_cfg(tiny_model_dir, tmp_path, *ALWAYS_FIRES, "alarm.stop=true",
                       f"run_dir={result.run_dir}", "resume=true"), echo=lambda _: None)
    assert rerun.stopped_early and rerun.last_step == 2
    assert [r["step"] for r in read_metrics(result.run_dir)] == [1, 2]


def test_without_alarm_stop_the_alarm_only_warns(tiny_model_dir, tmp_path):
    logged: list[str] = []
    result = train(_cfg(tiny_model_dir, tmp_path, *ALWAYS_FIRES), echo=logged.append)
    assert result.alarm.fired and not result.stopped_early and result.last_step == 4
    assert sum("COLLAPSE ALARM" in line for line in logged) == 1  # reported once
    assert json.loads((result.run_dir / "alarm.json").read_text())["stopped"] is False


# Per-step batch metrics laid over the tiny model's own (which carry no signal): a run whose
# consensus outgrows its twins and its labels, and one whose twins and labels keep up; both
# with 16 labels per step (8 pairs x 2 sides), which sets the alarm's noise margin.
COLLAPSING = {"majority_ratio": [0.4, 0.6, 0.8, 0.9], "twin_agreement": [0.3, 0.2, 0.2, 0.1],
              "pseudo_label_accuracy": [0.5, 0.5, 0.5, 0.5], "n_groups": [16.0] * 4}
LEARNING = {"majority_ratio": [0.4, 0.6, 0.8, 0.9], "twin_agreement": [0.3, 0.5, 0.7, 0.8],
            "pseudo_label_accuracy": [0.4, 0.6, 0.8, 0.9], "n_groups": [16.0] * 4}


@pytest.mark.parametrize("script, fires", [(COLLAPSING, True), (LEARNING, False)])
def test_the_alarm_with_default_thresholds_sees_a_collapse_and_not_learning(
        tiny_model_dir, tmp_path, monkeypatch, script, fires):
    from nemo_coreward.embedded import scoring
    from nemo_coreward.reward import ScoredBatch

    real, calls = scoring.Scorer.score, []

    def scripted(self, policy, teacher=None):
        scored = real(self, policy, teacher)
        step = len(calls)
        calls.append(1)
        return ScoredBatch(scored.scores, {**scored.metrics,
                                          **{k: v[step] for k, v in script.items()}})

    monkeypatch.setattr(scoring.Scorer, "score", scripted)
    # Window 1, patience 2, default thresholds. COLLAPSING: gap M - A = -0.1, 0.1, 0.3, 0.4
    # (>= 0.15 at steps 3 and 4, 0.4 and 0.5 above step 1's, consensus up 0.4 and 0.5) and
    # M - T = 0.1, 0.4, 0.6, 0.8 (>= 0.5 at steps 3 and 4): both hold twice by step 4. The
    # widenings 0.4 and 0.5 exceed two standard errors of 16 against 16 labels at p 0.5
    # (2 * sqrt(0.25 * 2 / 16) = 0.354).
    result = train(_cfg(tiny_model_dir, tmp_path, "train.steps=4", "eval.enabled=false",
                        "alarm.window=1", "alarm.stop=true", "train.checkpoint_every=0"),
                   echo=lambda _: None)
    assert {"gap:pseudo_label_accuracy", "split:twin_agreement"} <= set(result.alarm.checked)
    assert result.alarm.fired is fires and result.stopped_early is fires
    assert (result.run_dir / "alarm.json").exists() is fires
    assert result.last_step == 4
    if fires:
        assert (result.alarm.step, result.alarm.rule) == (4, "gap")


def test_teacher_rollouts_sample_from_a_copy_that_follows_the_averaged_teacher(tiny_model_dir,
                                                                              tmp_path):
    from nemo_coreward.embedded.session import setup
    from nemo_coreward.embedded.step import SignalHold, Step

    s = setup(_cfg(tiny_model_dir, tmp_path, "reward.name=co_rewarding_ii", "teacher.alpha=0.5",
                   "model.precision=bf16-mixed", "rollout.dtype=bfloat16", "eval.enabled=false"))
    assert next(s.reference.parameters()).dtype == torch.float32  # averaging stays exact
    assert next(s.teacher_sampler.parameters()).dtype == torch.bfloat16
    before = {k: v.clone() for k, v in s.teacher_sampler.state_dict().items()}
    Step(s, 1, SignalHold()).run()
    # the policy moved at step 1: step 2's averaging moves the teacher
    Step(s, 2, SignalHold()).run()
    teacher = s.reference.state_dict()
    moved = False
    for key, value in s.teacher_sampler.state_dict().items():
        torch.testing.assert_close(value, teacher[key].to(torch.bfloat16))
        moved |= not torch.equal(value, before[key])
    assert moved
    s.log.close()


def test_a_rerun_with_no_step_left_exports_evaluates_and_reports_the_last_row(tiny_model_dir,
                                                                             tmp_path):
    """A run killed after its last row (while exporting or evaluating) is finished by its
    rerun, whose result is that row's metrics, as the uninterrupted run's was."""
    import shutil

    common = [*MOVING, "train.export=true"]
    first = train(_cfg(tiny_model_dir, tmp_path, *common), echo=lambda _: None)
    shutil.rmtree(first.run_dir / "final")  # killed while exporting: no final/, no "after"
    evals = json.loads((first.run_dir / "eval.json").read_text())
    (first.run_dir / "eval.json").write_text(json.dumps({"before": evals["before"]}))
    logged: list[str] = []
    again = train(_cfg(tiny_model_dir, tmp_path, *common, f"run_dir={first.run_dir}",
                       "resume=true"), echo=logged.append)
    assert again.last_step == 2 and again.metrics
    # json.dumps: NaN metrics (no gold answers for pseudo_label_accuracy) compare equal
    assert json.dumps(again.metrics, sort_keys=True) == json.dumps(first.metrics, sort_keys=True)
    assert (first.run_dir / "final" / "config.json").is_file()
    assert again.eval_after == first.eval_after
    assert sum("evaluating the trained policy" in line for line in logged) == 1
    assert [r["step"] for r in read_metrics(first.run_dir)] == [1, 2]
