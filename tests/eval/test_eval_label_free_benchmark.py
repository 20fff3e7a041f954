"""The pieces of benchmarks/label_free_cpu.py, on a tiny model (the real run is a benchmark)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

def _load_script():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # as when run: its sibling ``machine``
    spec = importlib.util.spec_from_file_location("label_free_cpu",
                                                  ROOT / "benchmarks" / "label_free_cpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["label_free_cpu"] = module
    spec.loader.exec_module(module)
    return module


lf = _load_script()
TINY = lf.Budget("tiny", steps=1, pairs_per_step=2, n=2, max_new_tokens=4, eval_pairs=2,
                 eval_k=2, minutes=1)


@pytest.mark.parametrize("reward", [a for a in lf.ARMS if a != "none"])
def test_every_arm_composes_a_valid_trainer_config(reward, tmp_path):
    from nemo_coreward.embedded.cli import _parse, resolve

    command = lf.train_command(reward, lf.QUICK, 3, tmp_path / reward)
    cfg = resolve(*_parse(command[command.index("train") + 1:]))
    assert cfg.reward.name == reward and cfg.seed == 3
    assert (cfg.train.steps, cfg.data.pairs_per_step, cfg.rollout.n) == (4, 4, 4)
    assert cfg.rollout.max_new_tokens == 32 and cfg.eval.enabled is False
    assert cfg.train.export is True and cfg.model.path is None
    assert cfg.data.synthetic.families == ("add", "double") and cfg.data.synthetic.levels == (1,)
    assert cfg.optim.lr == 1e-5  # the config's


def test_the_stress_budget_trains_harder_problems_longer_at_a_higher_rate(tmp_path):
    from nemo_coreward.embedded.cli import _parse, resolve

    command = lf.train_command("majority", lf.STRESS, 0, tmp_path / "majority")
    cfg = resolve(*_parse(command[command.index("train") + 1:]))
    assert (cfg.train.steps, cfg.optim.lr, cfg.data.synthetic.levels) == (24, 3e-5, (2,))
    # The held-out items come from the same (harder) families: two-digit operands.
    items = lf.heldout_items(lf.STRESS)
    assert len(items) == 2 * lf.STRESS.eval_pairs
    assert all(r.meta["level"] == 2 for r in items)


def test_evaluate_arm_on_tiny_model(tmp_path, tiny_model_dir, monkeypatch):
    from nemo_coreward.embedded.prompts import PromptConfig

    monkeypatch.setattr(lf, "prompt_config", lambda: PromptConfig(system="Box it."))
    result = lf.evaluate_arm("tiny", tiny_model_dir, TINY, tmp_path, seed=0)
    assert result["items"] == 4  # 2 held-out pairs x 2 sides
    # The random model writes no answer in 4 new tokens (greedy: newlines), so no rate
    # counts anything, twins agreeing included.
    rates = ("accuracy", "boxed_rate", "twin_agreement", "avg@2", "maj@2")
    assert {key: result[key] for key in rates} == dict.fromkeys(rates, 0.0)
    items = (tmp_path / "eval" / "tiny" / "items.jsonl").read_text().splitlines()
    assert len(items) == 4 and json.loads(items[1])["id"].endswith("/s1")
    assert sorted(result["correct"]) == sorted(json.loads(x)["id"] for x in items)
    assert sum(result["correct"].values()) / 4 == result["accuracy"]


def test_summary_from_run_dirs(tmp_path, make_run):
    good = lf.training_summary(make_run(tmp_path, "a", "co_reward", collapse=False))
    bad = lf.training_summary(make_run(tmp_path, "b", "majority", collapse=True))
    assert good["alarm_fired"] is False and bad["alarm_fired"] is True
    # 30 steps: quarter = 7 points; majority ratio 0.3 + 0.6 t, t = step / 30.
    assert good["first_majority_ratio"] == pytest.approx(0.3 + 0.6 * 4 / 30)
    assert good["last_majority_ratio"] == pytest.approx(0.3 + 0.6 * 27 / 30)


def test_mean_sd():
    assert lf.mean_sd([0.5, 0.7, 0.9]) == pytest.approx((0.7, 0.2))  # sample sd
    assert lf.mean_sd([0.4]) == (0.4, 0.0)


def test_paired_bootstrap_interval():
    # Every item +1 at both seeds: every draw is 1.
    assert lf.paired_bootstrap([{"a": 1, "b": 1}] * 2, [{"a": 0, "b": 0}] * 2) == (1.0, 1.0)
    # Seed 0 always +1, seed 1 always 0: a draw's mean is 0, 0.5 or 1 (each seed drawn with
    # probability 1/2), so P(0) = P(1) = 1/4 and the 95% interval is [0, 1].
    lo, hi = lf.paired_bootstrap([{"a": 1}, {"a": 0}], [{"a": 0}, {"a": 0}], draws=4000)
    assert (lo, hi) == (0.0, 1.0)
    # One seed, 100 items, 30 better and 10 worse: the mean is 0.2; the interval over items
    # is about 0.2 +- 1.96 * sqrt((0.4 - 0.04) / 100) = 0.2 +- 0.118.
    arm = {str(i): int(i < 30) for i in range(100)}
    base = {str(i): int(30 <= i < 40) for i in range(100)}
    lo, hi = lf.paired_bootstrap([arm], [base], draws=4000)
    assert lo == pytest.approx(0.2 - 0.118, abs=0.02) and hi == pytest.approx(0.2 + 0.118, abs=0.02)
    # Only items both arms were graded on are paired.
    assert lf.paired_bootstrap([{"a": 1, "x": 0}], [{"a": 0, "y": 1}]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="no held-out item in common"):
        lf.paired_bootstrap([{"a": 1}], [{"b": 1}])


def _result(arm, seed, accuracy, correct, pseudo=None, fired=False, train_s=60.0):
    r = {"arm": arm, "seed": seed,
         "eval": {"accuracy": accuracy, "twin_agreement": accuracy / 2, "boxed_rate": 1.0,
                  "maj@4": accuracy, "correct": correct}}
    if arm != "none":
        r["train_s"] = train_s
        r["training"] = {"alarm_fired": fired,
                         **({"last_pseudo_label_accuracy": pseudo} if pseudo is not None else {})}
    return r


def test_statistics_over_seeds_and_against_majority():
    # Two seeds, four held-out items. Co-Reward: 3/4 and 4/4; majority: 2/4 and 4/4.
    results = {
        0: {"majority": _result("majority", 0, 0.5, {"a": 1, "b": 1, "c": 0, "d": 0}, 0.5, True),
            "co_reward": _result("co_reward", 0, 0.75, {"a": 1, "b": 1, "c": 1, "d": 0}, 0.75)},
        1: {"majority": _result("majority", 1, 1.0, dict.fromkeys("abcd", 1), 0.7),
            "co_reward": _result("co_reward", 1, 1.0, dict.fromkeys("abcd", 1), 0.9)},
    }
    stats = lf.arm_stats(results, "co_reward", 4)
    assert stats["accuracy"] == pytest.approx((0.875, 0.125 * 2 ** 0.5))
    assert stats["pseudo_label_accuracy"] == pytest.approx((0.825, 0.075 * 2 ** 0.5))
    assert (stats["seeds"], stats["alarms"], stats["train_min"]) == (2, 0, 1.0)
    assert lf.arm_stats(results, "majority", 4)["alarms"] == 1
    c = lf.against_baseline(results, "co_reward")
    assert c["diffs"] == pytest.approx([0.25, 0.0])
    assert (c["wins"], c["losses"], c["ties"]) == (1, 0, 1)
    assert c["mean"] == pytest.approx(0.125)
    # Per-item differences: seed 0 [0, 0, 1, 0], seed 1 all 0. A draw picks two seeds, then
    # four items of each, so its mean is a multiple of 1/8: 0 with probability
    # 1/4 + 1/2 (3/4)^4 + 1/4 (3/4)^8 = 0.43 (lower end 0), at least 1/2 with probability
    # 1/2 (1/4)^4 + 1/4 P(Bin(8, 1/4) >= 4) = 0.030 and at least 5/8 with 0.007, so the
    # 97.5% quantile of the (seeded) 2000 draws is 1/2.
    assert c["interval"] == (0.0, 0.5)
    text = lf.tables(results, lf.FULL, ["majority", "co_reward"])
    assert "| co_reward | yes | 2 | 87.5 ± 17.7 | 87.5 ± 17.7 |" in text
    assert "| majority | yes | 2 | 75.0 ± 35.4 |" in text and "| 1/2 |" in text
    assert "| co_reward | 0: +25.0, 1: +0.0 | 1 / 0 / 1 | +12.5 | +0.0 to" in text


def _fake_heavy_parts(monkeypatch, calls, stop_at=None):
    """``run_one`` with training and evaluation replaced by stand-ins that record their
    calls; the bookkeeping (markers, resume) is the real one."""
    def run_arm(arm, budget, seed, runs, model=None):
        calls.append(("train", seed, arm))
        if stop_at is not None and len(calls) == stop_at:
            raise KeyboardInterrupt  # the machine went away mid-arm
        (runs / arm).mkdir(parents=True, exist_ok=True)
        return runs / arm, 1.0

    def evaluate_arm(name, model_path, budget, out, seed):
        calls.append(("eval", seed, name))
        return {"accuracy": 0.5 + 0.1 * seed, "twin_agreement": 0.5, "boxed_rate": 1.0,
                "correct": {"x": seed % 2}}

    monkeypatch.setattr(lf, "run_arm", run_arm)
    monkeypatch.setattr(lf, "evaluate_arm", evaluate_arm)
    monkeypatch.setattr(lf, "training_summary", lambda run_dir: {"alarm_fired": False})


def test_an_interrupted_benchmark_resumes_with_the_next_unfinished_arm(tmp_path, monkeypatch):
    arms, seeds = ["none", "majority", "co_reward"], [0, 1]
    calls: list = []
    _fake_heavy_parts(monkeypatch, calls, stop_at=4)  # the 4th call: training seed 0 co_reward
    with pytest.raises(KeyboardInterrupt):
        lf.run_all(arms, seeds, TINY, tmp_path)
    assert calls == [("eval", 0, "none"), ("train", 0, "majority"), ("eval", 0, "majority"),
                     ("train", 0, "co_reward")]
    done = sorted(p.name for p in (tmp_path / "seed0" / "done").iterdir())
    assert done == ["majority.json", "none.json"]  # no marker for the interrupted arm
    calls.clear()
    _fake_heavy_parts(monkeypatch, calls)
    results = lf.run_all(arms, seeds, TINY, tmp_path)
    assert calls == [("train", 0, "co_reward"), ("eval", 0, "co_reward"),
                     ("eval", 1, "none"), ("train", 1, "majority"), ("eval", 1, "majority"),
                     ("train", 1, "co_reward"), ("eval", 1, "co_reward")]
    assert results[1]["co_reward"]["eval"]["accuracy"] == pytest.approx(0.6)
    assert results[0]["majority"]["run_dir"].endswith("seed0/runs/majority")
    calls.clear()
    again = lf.run_all(arms, seeds, TINY, tmp_path)  # everything finished: nothing runs
    assert calls == [] and again == results
    with pytest.raises(ValueError, match="made with budget"):
        lf.run_all(arms, seeds, lf.QUICK, tmp_path)


@pytest.mark.slow
def test_one_training_arm_end_to_end(tmp_path, tiny_model_dir):
    run_dir, seconds = lf.run_arm("co_reward", TINY, 0, tmp_path / "runs",
                                  model=str(tiny_model_dir))
    assert seconds > 0 and (run_dir / "final" / "config.json").is_file()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and "majority_ratio" in rows[0]
    # A finished arm is not trained again.
    again = lf.run_arm("co_reward", TINY, 0, tmp_path / "runs", model=str(tiny_model_dir))
    assert again == (run_dir, seconds)
    summary = lf.training_summary(run_dir)
    assert "first_majority_ratio" in summary and summary["alarm_fired"] is False


@pytest.mark.slow
def test_two_seeds_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir, monkeypatch):
    from nemo_coreward.embedded.prompts import PromptConfig

    monkeypatch.setattr(lf, "QUICK", TINY)
    monkeypatch.setattr(lf, "prompt_config", lambda: PromptConfig(system="Box it."))
    args = ["--quick", "--out", str(tmp_path), "--seeds", "0,1", "--arms",
            "none,majority,co_reward", "--model", str(tiny_model_dir)]
    assert lf.main(args) == 0
    out = tmp_path / "tiny"
    text = (out / "results.md").read_text()
    assert "| majority | yes | 2 |" in text and "| co_reward | yes | 2 |" in text
    assert "| co_reward | 0: " in text  # the paired comparison with majority vote
    saved = json.loads((out / "results.json").read_text())
    assert sorted(saved["results"]) == ["0", "1"]
    assert len(saved["results"]["1"]["co_reward"]["eval"]["correct"]) == 4
    page = (out / "report" / "report.md").read_text()
    assert "## Arms (mean ± sd over runs)" in page and "| majority | 2 |" in page
    stamp = (out / "seed1" / "done" / "co_reward.json").stat().st_mtime_ns
    assert lf.main(args) == 0  # all finished: read back, nothing retrained
    assert (out / "seed1" / "done" / "co_reward.json").stat().st_mtime_ns == stamp
