"""The launch files: shell syntax, variables up front, Dockerfile sources, entry script."""
from __future__ import annotations

import py_compile
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SBATCH = [ROOT / "examples/slurm/coreward_grpo.sbatch",
          ROOT / "examples/slurm/coreward_grpo_single_node.sbatch"]
SCRIPTS = SBATCH + [ROOT / "examples/ngc/run_local.sh", ROOT / "scripts/setup_aligner_env.sh"]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_shell_syntax(path):
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", SBATCH, ids=lambda p: p.name)
def test_sbatch_settings_are_variables_and_container_is_optional(path):
    text = path.read_text()
    for name in ("CONTAINER", "VENV", "ACTOR_VENV", "NEMO_CKPT", "HF_MODEL_DIR", "TRAIN_DATA",
                 "VAL_DATA", "RESULTS", "GPUS_PER_NODE", "SERVER_HTTP_PORT", "SERVER_WORKERS",
                 "ACTOR_CMD", "TIME_LIMIT", "TIME_MARGIN"):
        assert re.search(rf"^{name}=\$\{{{name}:-", text, re.M), f"{name} is not a variable"
    assert ("--mpi=pmix" in text and "--container-image=" in text
            and "--no-container-mount-home" in text)
    assert 'if [[ -n $CONTAINER ]]' in text  # empty container: run on the host


@pytest.mark.parametrize("path", SCRIPTS[:3], ids=lambda p: p.name)
def test_launchers_are_offline_and_run_preflight_first(path):
    text = path.read_text()
    assert (re.search(r"HF_HUB_OFFLINE[=:-]+1", text)
            and re.search(r"TRANSFORMERS_OFFLINE[=:-]+1", text))
    preflight = text.index("preflight --config-name")
    launch = text.rindex("--mpi=pmix" if path.suffix == ".sbatch" else "mpirun")
    assert preflight < text.index("serve host=") < launch
    assert "model.tokenizer.type=\"$HF_MODEL_DIR\"" in text and "max_time_per_run=" in text


def test_het_job_finds_the_server_with_scontrol():
    text = SBATCH[0].read_text()
    assert "#SBATCH hetjob" in text and "--het-group=0" in text and "--het-group=1" in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST_HET_GROUP_0"' in text


def test_dockerfile_copies_existing_sources_and_keeps_the_container_stack():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/nemo:25\.02$", text, re.M)
    copies = re.findall(r"^COPY (.+) \S+$", text, re.M)
    assert copies
    for line in copies:
        for src in line.split():
            assert (ROOT / src).exists(), f"COPY source {src} missing"
    assert "--no-deps -e ." in text and "-c /tmp/container-constraints.txt" in text
    for forbidden in ("torch==", "transformer-engine", "transformer_engine", "megatron-core",
                      "tensorrt", "nemo-toolkit", "nemo-aligner"):
        assert forbidden not in text.split("FROM", 1)[1].split("RUN", 1)[1].replace(
            "import nemo_aligner, megatron.core, torch", ""), forbidden


def test_entry_script_compiles_and_uses_our_classes():
    path = ROOT / "examples/train_gpt_grpo_coreward.py"
    py_compile.compile(str(path), doraise=True)
    text = path.read_text()
    for name in ("MegatronGPTCoRewardActorModel", "CoRewardGRPOTrainer", "TwinPromptDataset",
                 "RewardRouter", 'resolve_and_create_trainer(cfg, "grpo")',
                 'config_path="../conf"'):
        assert name in text


def test_entry_script_imports_with_the_real_nemo_aligner():
    pytest.importorskip("nemo_aligner")
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_gpt_grpo_coreward",
                                                  ROOT / "examples/train_gpt_grpo_coreward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"encoder_seq_length": 4096,
                                      "grpo": {"length_params": {"max_length": 3072}}},
                            "trainer": {"grpo": {"trt_llm": {"enable": True,
                                                             "max_input_len": 512}}}})
    assert module.prompt_budget(cfg) == 512
    cfg.trainer.grpo.trt_llm.enable = False
    assert module.prompt_budget(cfg) == 1024
    from nemo_aligner.models.nlp.gpt.megatron_gpt_reinforce_actor import (
        MegatronGPTReinforceActorModel,
    )

    from nemo_coreward.aligner.actor import MegatronGPTCoRewardActorModel

    assert issubclass(MegatronGPTCoRewardActorModel, MegatronGPTReinforceActorModel)
