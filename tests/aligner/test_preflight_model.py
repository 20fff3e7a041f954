"""The tokenizer override through NeMo-Aligner's real ``load_and_override_model_config``, and the
entry script's start-up refusals (one line, exit 2). Needs the real NeMo-Aligner."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("nemo_aligner")

from nemo_aligner.utils.utils import load_and_override_model_config  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from nemo_coreward.aligner.model_features import apply_tokenizer_override  # noqa: E402
from nemo_coreward.aligner.preflight import compose  # noqa: E402
from tests.aligner.helpers import entry_script  # noqa: E402
from tests.aligner.test_preflight_cli import LLAMA31_8B, QWEN25_7B, make_nemo  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(p.stem for p in (ROOT / "conf").glob("gpt_grpo_coreward*.yaml"))


def _merged(name, overrides, nemo):
    cfg = compose(name, overrides)
    apply_tokenizer_override(cfg.model)
    cfg.model = load_and_override_model_config(str(nemo), cfg.model)
    return cfg


@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_config_loads_its_tokenizer_locally(tmp_path, name):
    hf = tmp_path / "hf"
    hf.mkdir()
    nemo = make_nemo(
        tmp_path / "m.nemo",
        {
            **LLAMA31_8B,
            "tokenizer": {
                **LLAMA31_8B["tokenizer"],
                "model": "nemo:stale.model",
                "vocab_file": "stale.json",
            },
        },
    )
    cfg = _merged(name, [f"model.tokenizer.type={hf}"], nemo)
    assert OmegaConf.to_container(cfg.model.tokenizer) == {
        "library": "huggingface",
        "type": str(hf),
        "use_fast": True,
    }  # nothing of the hub entry left
    assert (
        cfg.model.num_layers == 32 and cfg.model.scale_positional_embedding
    )  # the rest is the .nemo's
    assert "overwrite_base_config" not in cfg.model


def test_unset_override_keeps_the_nemos_tokenizer(tmp_path):
    nemo = make_nemo(tmp_path / "m.nemo", QWEN25_7B)
    cfg = _merged("gpt_grpo_coreward_qwen25_7b", [], nemo)
    assert OmegaConf.to_container(cfg.model.tokenizer) == QWEN25_7B["tokenizer"]


@pytest.mark.parametrize(
    "overrides, model, message",
    [
        ([], LLAMA31_8B, "model.tokenizer.type: the hub id 'meta-llama/Meta-Llama-3.1-8B'"),
        (
            ["model.tokenizer.type={hf}", "trainer.grpo.trt_llm.enable=True"],
            QWEN25_7B,
            "QKV biases",
        ),
        (
            ["model.tokenizer.type={hf}", "aligner/precision=fp8", "model.encoder_seq_length=4100"],
            LLAMA31_8B,
            "model.encoder_seq_length (4100) must be a multiple of 16",
        ),
    ],
)
def test_entry_script_refuses_at_start(tmp_path, capsys, overrides, model, message):
    hf = tmp_path / "hf"
    hf.mkdir()
    cfg = _merged(
        "gpt_grpo_coreward_llama31_8b",
        [o.format(hf=hf) for o in overrides],
        make_nemo(tmp_path / "m.nemo", model),
    )
    with pytest.raises(SystemExit) as stop:
        entry_script().check_model(cfg)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train_gpt_grpo_coreward: ") and message in err and err.count("\n") == 1
