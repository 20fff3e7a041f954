"""The pieces of benchmarks/label_free_cpu.py, on a tiny model (the real run is a benchmark)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

def _load_script():
    spec = importlib.util.spec_from_file_location("label_free_cpu",
                                                  ROOT / "benchmarks" / "label_free_cpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["label_free_cpu"] = module
    spec.loader.exec_module(module)
    return module


lf = _load_script()
TINY = lf.Budget(steps=1, pairs_per_step=2, n=2, max_new_tokens=4, eval_pairs=2, eval_k=2,
                 minutes=1)


@pytest.mark.parametrize("reward", [a for a in lf.ARMS if a != "none"])
def test_every_arm_composes_a_valid_trainer_config(reward, tmp_path):
    from nemo_coreward.embedded.cli import _parse, resolve

    command = lf.train_command(reward, lf.QUICK, 3, tmp_path / reward)
    cfg = resolve(*_parse(command[command.index("train") + 1:]))
    assert cfg.reward.name == reward and cfg.seed == 3
    assert (cfg.train.steps, cfg.data.pairs_per_step, cfg.rollout.n) == (4, 4, 4)
    assert cfg.rollout.max_new_tokens == 32 and cfg.eval.enabled is False
    assert cfg.train.export is True and cfg.model.path is None


def test_evaluate_arm_on_tiny_model(tmp_path, tiny_model_dir, monkeypatch):
    from nemo_coreward.embedded.prompts import PromptConfig

    monkeypatch.setattr(lf, "prompt_config", lambda: PromptConfig(system="Box it."))
    result = lf.evaluate_arm("tiny", tiny_model_dir, TINY, tmp_path, seed=0)
    assert result["items"] == 4  # 2 held-out pairs x 2 sides
    for key in ("accuracy", "boxed_rate", "twin_agreement", "avg@2", "maj@2"):
        assert 0.0 <= result[key] <= 1.0
    items = (tmp_path / "eval" / "tiny" / "items.jsonl").read_text().splitlines()
    assert len(items) == 4 and json.loads(items[1])["id"].endswith("/s1")


def test_summary_and_table_from_run_dirs(tmp_path, make_run):
    good = lf.training_summary(make_run(tmp_path, "a", "co_reward", collapse=False))
    bad = lf.training_summary(make_run(tmp_path, "b", "majority", collapse=True))
    assert good["alarm_fired"] is False and bad["alarm_fired"] is True
    # 30 steps: quarter = 7 points; majority ratio 0.3 + 0.6 t, t = step / 30.
    assert good["first_majority_ratio"] == pytest.approx(0.3 + 0.6 * 4 / 30)
    assert good["last_majority_ratio"] == pytest.approx(0.3 + 0.6 * 27 / 30)
    evaluation = {"accuracy": 0.5, "boxed_rate": 0.75, "twin_agreement": 0.25, "maj@4": 0.5}
    text = lf.table({"none": {"eval": evaluation},
                     "majority": {"eval": evaluation, "training": bad, "train_s": 90}}, lf.FULL)
    assert "| none | – | 50.0 | 50.0 | 75.0 | 25.0 | – | – | – | – | – |" in text
    assert "| majority | yes | 50.0 |" in text and "**fired**" in text and "| 1.5 |" in text


@pytest.mark.slow
def test_one_training_arm_end_to_end(tmp_path, tiny_model_dir):
    run_dir, seconds = lf.run_arm("co_reward", TINY, 0, tmp_path / "runs", model=str(tiny_model_dir))
    assert seconds > 0 and (run_dir / "final" / "config.json").is_file()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and "majority_ratio" in rows[0]
    # A finished arm is not trained again.
    again = lf.run_arm("co_reward", TINY, 0, tmp_path / "runs", model=str(tiny_model_dir))
    assert again == (run_dir, seconds)
    summary = lf.training_summary(run_dir)
    assert "first_majority_ratio" in summary and summary["alarm_fired"] is False
