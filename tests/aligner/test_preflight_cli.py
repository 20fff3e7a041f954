"""``coreward preflight`` on every shipped config, on small .nemo tars, and on each bad combination.

Runs in the main venv (no NeMo): the .nemo files are tars holding only the
``model_config.yaml`` NeMo 2.2's converters write for each model (the keys that matter).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from nemo_coreward.aligner import plan as P
from nemo_coreward.aligner.model_features import model_shape, read_model_config
from nemo_coreward.aligner.preflight import main
from tests.aligner.helpers import save_word_tokenizer

CONF = Path(__file__).resolve().parents[2] / "conf"
VARIANTS = sorted(p.stem for p in CONF.glob("gpt_grpo_coreward*.yaml"))
METHODS = sorted(p.stem for p in (CONF / "aligner/method").glob("*.yaml"))
PRECISIONS = sorted(p.stem for p in (CONF / "aligner/precision").glob("*.yaml"))

LLAMA31_8B = {
    "num_layers": 32,
    "hidden_size": 4096,
    "ffn_hidden_size": 14336,
    "num_attention_heads": 32,
    "num_query_groups": 8,
    "activation": "fast-swiglu",
    "bias": False,
    "share_embeddings_and_output_weights": False,
    "scale_positional_embedding": True,
    "rotary_base": 500000.0,
    # convert_llama_hf_to_nemo.py (v2.2.0) for 32 layers:
    "tokenizer": {
        "library": "huggingface",
        "type": "meta-llama/Meta-Llama-3.1-8B",
        "use_fast": True,
    },
}
LLAMA31_70B = {
    **LLAMA31_8B,
    "num_layers": 80,
    "hidden_size": 8192,
    "ffn_hidden_size": 28672,
    "num_attention_heads": 64,
    "tokenizer": {"library": "huggingface", "type": "meta-llama/Meta-Llama-3.1-70B"},
}
LLAMA32_3B = {
    **LLAMA31_8B,
    "num_layers": 28,
    "hidden_size": 3072,
    "ffn_hidden_size": 8192,
    "num_attention_heads": 24,
    "share_embeddings_and_output_weights": True,
    "tokenizer": {"library": "huggingface", "type": "/models/Llama-3.2-3B-Instruct"},
}
QWEN25_7B = {
    "num_layers": 28,
    "hidden_size": 3584,
    "ffn_hidden_size": 18944,
    "num_attention_heads": 28,
    "num_query_groups": 4,
    "activation": "fast-swiglu",
    "bias": False,
    "qkv_bias": True,
    "share_embeddings_and_output_weights": False,
    "override_vocab_size": 152064,
    "tokenizer": {"library": "huggingface", "type": "/models/Qwen2.5-7B", "use_fast": True},
}
# A model TensorRT-LLM builds faithfully (the base config keeps TensorRT-LLM generation).
LLAMA2_7B = {
    "num_layers": 32,
    "hidden_size": 4096,
    "ffn_hidden_size": 11008,
    "num_attention_heads": 32,
    "activation": "fast-swiglu",
    "bias": False,
    "share_embeddings_and_output_weights": False,
    "tokenizer": {"library": "sentencepiece", "model": "nemo:a1b2_tokenizer.model"},
}
MODEL_OF = {
    "gpt_grpo_coreward": LLAMA2_7B,
    "gpt_grpo_coreward_llama31_8b": LLAMA31_8B,
    "gpt_grpo_coreward_70b": LLAMA31_70B,
    "gpt_grpo_coreward_llama32_3b": LLAMA32_3B,
    "gpt_grpo_coreward_qwen25_7b": QWEN25_7B,
}


def make_nemo(path: Path, model_config: dict) -> Path:
    """A .nemo as NeMo writes it (a tar), holding only ./model_config.yaml and a weight stand-in."""
    with tarfile.open(path, "w") as tar:
        for name, data in (
            ("./model_config.yaml", yaml.safe_dump(model_config).encode()),
            ("./model_weights/common.pt", b"\0" * 16),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def llama3_rope(factor: float) -> dict:
    return {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }


# The config.json of each model's Hugging Face directory (the keys that matter).
HF_CONFIG_OF = {
    "gpt_grpo_coreward": {"vocab_size": 32000},
    "gpt_grpo_coreward_llama31_8b": {"vocab_size": 128256, "rope_scaling": llama3_rope(8.0)},
    "gpt_grpo_coreward_70b": {"vocab_size": 128256, "rope_scaling": llama3_rope(8.0)},
    "gpt_grpo_coreward_llama32_3b": {"vocab_size": 128256, "rope_scaling": llama3_rope(32.0)},
    "gpt_grpo_coreward_qwen25_7b": {"vocab_size": 152064, "rope_scaling": None},
}


def make_hf_dir(path: Path, config: dict) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture
def hf_dir(tmp_path):
    """The model's local Hugging Face directory (the tokenizer override points here)."""
    return make_hf_dir(
        tmp_path / "Llama-3.1-8B-Instruct", HF_CONFIG_OF["gpt_grpo_coreward_llama31_8b"]
    )


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def plan_json(capsys, *argv) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


# -- every shipped config and variant ------------------------------------------------------
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", VARIANTS)
def test_every_shipped_config_has_a_plan(capsys, tmp_path, name, method, precision):
    nemo = make_nemo(tmp_path / "model.nemo", MODEL_OF[name])
    hf_dir = make_hf_dir(tmp_path / "hf", HF_CONFIG_OF[name])
    plan = plan_json(
        capsys,
        "--config-name",
        name,
        f"aligner/method={method}",
        f"aligner/precision={precision}",
        f"model.tokenizer.type={hf_dir}",
        "--nemo",
        nemo,
        "--train-pairs",
        7500,
        "--time-limit",
        "4:00:00",
    )
    for key in (
        "tp",
        "pp",
        "dp",
        "optimizer_steps_per_rollout_batch",
        "total_optimizer_steps",
        "scheduler_max_steps",
        "padded_seq_len",
        "seq_len_multiple",
        "max_time_per_run",
    ):
        assert key in plan
    assert plan["tp"] * plan["pp"] * plan["dp"] == plan["gpus"]
    assert plan["total_optimizer_steps"] == plan["scheduler_max_steps"] == 174
    assert plan["padded_seq_len"] % plan["seq_len_multiple"] == 0
    assert plan["seq_len_multiple"] == (16 if precision == "fp8" else 1) * (
        8 if name.endswith("70b") else 1
    )
    assert plan["max_time_per_run"] == "00:03:30:00"
    assert plan["tokenizer"] == str(hf_dir)
    assert plan["lr"]["warmup_end"] == pytest.approx(3e-6) and plan["lr"]["end"] < 3.1e-7
    assert plan["memory_gib"]["gpu_total"] > plan["memory_gib"]["weights"] > 0
    assert plan["engine_refits_per_step"] == (
        0 if not plan["trt_llm"] else 2 if method != "co_reward" else 1
    )


def test_human_plan_names_the_numbers(capsys, tmp_path, hf_dir):
    nemo = make_nemo(tmp_path / "m.nemo", LLAMA31_70B)
    code, out, _ = run(
        capsys,
        "--config-name",
        "gpt_grpo_coreward_70b",
        "aligner/precision=fp8",
        f"model.tokenizer.type={hf_dir}",
        "--nemo",
        nemo,
        "--train-pairs",
        1000,
        "--time-limit",
        "2-00:00:00",
        "--step-time",
        "20:00",
    )
    assert code == 0
    assert "4 node(s), 32 GPUs: TP 8 x PP 2 x DP 2" in out
    assert "padded to a multiple of 128; longest 4096 tokens" in out
    assert "21 GRPO steps = 21 optimizer steps" in out  # 1000 // 128 = 7 per epoch x 3
    assert "max_time_per_run 01:23:30:00 of the job's 02:00:00:00; ~142 GRPO steps per job" in out
    code, out, _ = run(
        capsys,
        "--config-name",
        "gpt_grpo_coreward_70b",
        f"model.tokenizer.type={hf_dir}",
        "--nemo",
        nemo,
        "--train-pairs",
        1000,
        "--time-limit",
        "2:00:00",
        "--step-time",
        "25:00",
    )
    assert (
        code == 0
        and "~3 GRPO steps per job (fewer than save_interval: only the timed stop saves" in out
    )


def test_data_file_is_counted(capsys, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(
            json.dumps(
                {"id": f"q{i}", "question": f"What is {i}+1?", "rephrasings": [f"Add one to {i}."]}
            )
            + "\n"
            for i in range(900)
        )
    )
    plan = plan_json(
        capsys,
        "--config-name",
        "gpt_grpo_coreward_llama31_8b",
        f"model.data.data_prefix.train={train}",
    )
    assert plan["train_pairs"] == 900 and plan["grpo_steps"] == 21  # 900 // 128 = 7 per epoch x 3


def test_optimizer_steps_follow_the_global_batch(capsys):
    plan = plan_json(
        capsys,
        "--config-name",
        "gpt_grpo_coreward",
        "coreward.loss.ppo_clip=true",
        "model.global_batch_size=512",
        "--train-pairs",
        7500,
    )
    assert plan["optimizer_steps_per_rollout_batch"] == 4
    assert plan["total_optimizer_steps"] == plan["scheduler_max_steps"] == 4 * 174


# -- each bad combination: exit 2, one line naming the keys ------------------------------------
BAD = [
    (
        ["aligner/precision=fp8", "model.encoder_seq_length=4100"],
        "model.encoder_seq_length (4100) must be a multiple of 16",
    ),
    (
        ["--config-name", "gpt_grpo_coreward_70b", "trainer.grpo.rollout_batch_seq_length=4100"],
        "trainer.grpo.rollout_batch_seq_length (4100) must be a multiple of 8",
    ),
    (
        ["model.optim.sched.max_steps=24"],
        "model.optim.sched.max_steps (24) is shorter than the run's 174",
    ),
    (["trainer.max_steps=20"], "trainer.max_steps (20)"),
    (["model.optim.sched.warmup_steps=200"], "model.optim.sched.warmup_steps (200)"),
    (["trainer.grpo.save_interval=15"], "trainer.grpo.save_interval (15) must be a multiple"),
    (
        ["trainer.num_nodes=3", "model.tensor_model_parallel_size=8"],
        "model.grpo.num_rollout_samples (128 pairs)",
    ),
    (["trainer.devices=6"], "trainer.num_nodes x trainer.devices (6 GPUs)"),
    (
        ["exp_manager.max_time_per_run=00:04:00:00", "--time-limit", "4:00:00"],
        "exp_manager.max_time_per_run (00:04:00:00)",
    ),
    (["exp_manager.max_time_per_run=4:00:00", "--time-limit", "5:00:00"], "must be DD:HH:MM:SS"),
    (
        ["--time-limit", "4:00:00", "--step-time", "45:00"],
        "--time-margin (00:00:30:00) must exceed one GRPO step",
    ),
    (["--time-limit", "20"], "is not longer than the margin"),
    (["--time-limit", "four hours"], "not a SLURM time"),
    (["--train-pairs", "100"], "the run has no GRPO step"),
    (["model.grpo.num_rollout_samples=100"], "model.grpo.num_rollout_samples (100 pairs)"),
    (
        [
            "--config-name",
            "gpt_grpo_coreward",
            "aligner/method=co_rewarding_ii",
            "trainer.grpo.trt_llm.reshard=True",
        ],
        "trainer.grpo.trt_llm.reshard",
    ),
    (["model.no_such_key=1"], "no_such_key"),
    (["+model.context_parallel_size=2"], "model.context_parallel_size"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_combination_exits_2_naming_the_keys(capsys, argv, message):
    if "--config-name" not in argv:
        argv = ["--config-name", "gpt_grpo_coreward_llama31_8b", *argv]
    if "--train-pairs" not in argv:
        argv = [*argv, "--train-pairs", "7500"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("coreward preflight: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "model, extra, message",
    [
        (LLAMA31_8B, [], "model.tokenizer.type: the hub id 'meta-llama/Meta-Llama-3.1-8B'"),
        (
            LLAMA32_3B,
            [],
            "model.tokenizer.type: the missing directory '/models/Llama-3.2-3B-Instruct'",
        ),
        (
            LLAMA31_8B,
            ["trainer.grpo.trt_llm.enable=True", "model.tokenizer.type={hf}"],
            "trainer.grpo.trt_llm.enable: NeMo's TensorRT-LLM build drops Llama 3.1-style RoPE",
        ),
        (
            QWEN25_7B,
            ["trainer.grpo.trt_llm.enable=True", "model.tokenizer.type={hf}"],
            "QKV biases",
        ),
        (LLAMA31_8B, ["model.tokenizer.type=meta-llama/Llama-3.1-8B-Instruct"], "the hub id"),
    ],
    ids=["hub-id", "missing-dir", "trt-rope", "trt-qkv-bias", "hub-override"],
)
def test_model_features_are_refused(capsys, tmp_path, hf_dir, model, extra, message):
    nemo = make_nemo(tmp_path / "model.nemo", model)
    code, _, err = run(
        capsys,
        "--config-name",
        "gpt_grpo_coreward_llama31_8b",
        "--nemo",
        nemo,
        "--train-pairs",
        7500,
        *[e.format(hf=hf_dir) for e in extra],
    )
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert "trt_llm.enable=False" in err or "model.tokenizer.type=" in err  # the way out


def test_llama32_trains_its_own_rope_scaling(capsys, tmp_path):
    hf = make_hf_dir(
        tmp_path / "Llama-3.2-3B-Instruct", HF_CONFIG_OF["gpt_grpo_coreward_llama32_3b"]
    )
    nemo = make_nemo(tmp_path / "m.nemo", LLAMA32_3B)  # as converted: scaling on, no factor written
    common = ["--nemo", nemo, f"model.tokenizer.type={hf}", "--train-pairs", 7500]
    code, _, err = run(capsys, "--config-name", "gpt_grpo_coreward_llama31_8b", *common)
    assert code == 2 and "model.scale_factor: 8 (NeMo's default) differs from factor 32.0" in err
    assert "+model.scale_factor=32" in err
    assert (
        run(
            capsys,
            "--config-name",
            "gpt_grpo_coreward_llama31_8b",
            "+model.scale_factor=32",
            *common,
        )[0]
        == 0
    )
    assert run(capsys, "--config-name", "gpt_grpo_coreward_llama32_3b", *common)[0] == 0
    off = make_nemo(tmp_path / "off.nemo", {**LLAMA32_3B, "scale_positional_embedding": False})
    code, _, err = run(
        capsys,
        "--config-name",
        "gpt_grpo_coreward_llama32_3b",
        "--nemo",
        off,
        f"model.tokenizer.type={hf}",
        "--train-pairs",
        7500,
    )
    assert (
        code == 2 and "model.scale_positional_embedding: the model's config.json scales RoPE" in err
    )


def test_rope_scaling_switched_on_for_a_model_without_it_is_refused(capsys, tmp_path):
    hf = make_hf_dir(tmp_path / "Meta-Llama-3-8B-Instruct", {"vocab_size": 128256})
    nemo = make_nemo(tmp_path / "m.nemo", LLAMA31_8B)  # converted with --llama31 on (the default)
    code, _, err = run(capsys, "--config-name", "gpt_grpo_coreward_llama31_8b", "--nemo", nemo,
                       f"model.tokenizer.type={hf}", "--train-pairs", 7500)
    assert code == 2 and "model.scale_positional_embedding: True, but the model's" in err
    assert "pass +model.scale_positional_embedding=False" in err


def test_model_config_file_and_local_tokenizer_of_the_nemo(capsys, tmp_path):
    hf_dir = make_hf_dir(tmp_path / "Qwen2.5-7B", HF_CONFIG_OF["gpt_grpo_coreward_qwen25_7b"])
    qwen = {**QWEN25_7B, "tokenizer": {**QWEN25_7B["tokenizer"], "type": str(hf_dir)}}
    config = tmp_path / "model_config.yaml"
    config.write_text(yaml.safe_dump(qwen))
    plan = plan_json(
        capsys,
        "--config-name",
        "gpt_grpo_coreward_qwen25_7b",
        "--model-config",
        config,
        "--train-pairs",
        7500,
    )
    assert plan["tokenizer"] == str(hf_dir)  # the .nemo's own local tokenizer is kept
    assert plan["memory_gib"]["parameters_billion"] == 7.62


def test_unreadable_nemo_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "--nemo", tmp_path / "none.nemo", "--train-pairs", 7500)
    assert code == 2 and "none.nemo: cannot read the model config" in err


# -- the pieces -----------------------------------------------------------------------------
def test_read_model_config_reads_only_the_config_member(tmp_path):
    nemo = make_nemo(tmp_path / "m.nemo", LLAMA31_8B)
    assert read_model_config(nemo)["tokenizer"]["type"] == "meta-llama/Meta-Llama-3.1-8B"


def test_parameter_counts_match_the_published_models(hf_dir):
    shape = model_shape(LLAMA31_8B, {"vocab_size": 128256})
    assert shape.parameters == 8_030_261_248  # Llama-3.1-8B
    assert model_shape(QWEN25_7B).parameters == 7_615_616_512  # Qwen2.5-7B
    assert model_shape({"tokenizer": {}}) is None


def test_memory_formulas_by_hand():
    shape = P.ModelShape(
        num_layers=4,
        hidden_size=64,
        ffn_hidden_size=128,
        num_attention_heads=4,
        num_query_groups=2,
        kv_channels=16,
        vocab_size=None,
    )
    n = shape.parameters  # per layer: qkv 64*(4+4)*16 + out 64*64 + mlp 3*64*128 + norms 128
    assert n == 4 * (8192 + 4096 + 24576 + 128) + 64
    m = P.estimate_memory(
        shape,
        tp=2,
        pp=2,
        dp=4,
        seq_len=100,
        generation_batch=3,
        trt_llm=True,
        reference=True,
        teacher=False,
    )
    assert (m.weights, m.gradients, m.optimizer) == (n // 2, n // 2, int(12 * n / 4 / 4))
    assert (
        m.kv_cache == 2 * 2 * 1 * 16 * 2 * 100 * 3
        and m.host_reference == n // 2
        and m.host_teacher == 0
    )


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("30", 1800),
        ("30:15", 1815),
        ("4:00:00", 14400),
        ("1-00:00:00", 86400),
        ("2-12", 216000),
        ("1-2:30", 95400),
        ("UNLIMITED", None),
    ],
)
def test_slurm_time_forms(text, seconds):
    assert P.parse_slurm_time(text) == seconds


def test_nemo_duration_round_trips_what_nemo_aligners_timer_parses():
    assert P.nemo_duration(95400 + 7) == "01:02:30:07"
    assert P.parse_nemo_duration("01:02:30:07") == 95407


def test_pairs_over_the_prompt_budget_are_not_counted(capsys, tmp_path):
    """With a local tokenizer, preflight tokenises the records as the entry script does and
    counts only the pairs it keeps: the schedule is sized from the pairs the run sees."""
    hf = tmp_path / "Llama-3.1-8B-Instruct"
    save_word_tokenizer(hf, ["one", "Short.", "What", "is", "Add", "to"])
    config = {**HF_CONFIG_OF["gpt_grpo_coreward_llama31_8b"], "model_type": "llama",
              "rope_theta": 500000.0}  # what AutoTokenizer reads of a real config.json
    (hf / "config.json").write_text(json.dumps(config))
    records = [{"id": f"q{i}", "question": f"What is {i}+1?", "rephrasings": [f"Add one to {i}."]}
               for i in range(899)]
    records.insert(5, {"id": "long", "question": "one " * 5000, "rephrasings": ["Short."]})
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in records))
    common = ["--config-name", "gpt_grpo_coreward_llama31_8b",
              f"model.data.data_prefix.train={train}"]
    counted = plan_json(capsys, *common)
    assert counted["train_pairs"] == 900
    kept = plan_json(capsys, *common, f"model.tokenizer.type={hf}")
    assert kept["train_pairs"] == 899
    assert "1 with a side over the prompt budget" in kept["train_pairs_source"]
