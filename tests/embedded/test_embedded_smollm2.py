"""The real default model: the bundled GGUF converts once and trains a step (slow, ~1 min)."""
from __future__ import annotations

import time

import pytest

from nemo_coreward.embedded.config import load
from nemo_coreward.embedded.model import ModelConfig, model_dir
from nemo_coreward.embedded.rundir import read_metrics
from nemo_coreward.embedded.trainer import train


@pytest.mark.slow
def test_smollm2_converts_once_boxes_answers_and_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    converted = model_dir(ModelConfig())
    assert converted.parent == tmp_path / "cache" / "nemo_coreward"
    assert (converted / "model.safetensors").is_file()
    start = time.perf_counter()
    assert model_dir(ModelConfig()) == converted  # cached: no second conversion
    assert time.perf_counter() - start < 2.0

    cfg = load("default", [
        f"output_root={tmp_path / 'runs'}", "data.pairs_per_step=2", "rollout.max_new_tokens=24",
        "train.steps=1", "eval.num_pairs=4", "eval.max_new_tokens=24", "train.checkpoint_every=0",
        "train.progress=false", "model.threads=2",
    ])
    result = train(cfg, echo=lambda _: None)
    (row,) = read_metrics(result.run_dir)
    assert row["n_rollouts"] == 2 * 2 * 4
    assert row["empty_answer_rate"] < 1.0  # the one-shot prompt gets boxed answers
    assert row["grad_norm"] >= 0.0 and row["time/update"] > 0
    assert result.eval_before["boxed_rate"] > 0.0
    assert (result.run_dir / "final" / "model.safetensors").is_file()
