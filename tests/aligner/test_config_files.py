"""Every shipped config composes with Hydra, parses, and has the layout it claims."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nemo_coreward.aligner.config import (
    ConfigError,
    CoRewardConfig,
    alias_grpo_sections,
    check_batch_layout,
    check_generation,
    register_resolvers,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
VARIANTS = sorted(p.stem for p in CONF.glob("gpt_grpo_coreward*.yaml"))
OVERRIDES = [
    [],
    ["aligner/precision=fp8"],
    ["aligner/method=co_rewarding_ii", "trainer.grpo.max_steps=20"],
    ["aligner/method=co_rewarding_combined", "coreward.server.enable=true",
     "coreward.server.url=http://10.0.0.5:5590"],
    ["coreward.advantage.estimator=dr_grpo", "coreward.kl.mode=reward",
     "coreward.loss.ppo_clip=true", "model.global_batch_size=512"],
]


def _compose(name: str, overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(name, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def test_variants_are_the_documented_ones():
    assert VARIANTS == ["gpt_grpo_coreward", "gpt_grpo_coreward_70b",
                        "gpt_grpo_coreward_llama31_8b", "gpt_grpo_coreward_llama32_3b",
                        "gpt_grpo_coreward_qwen25_7b"]


@pytest.mark.parametrize("overrides", OVERRIDES, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("name", VARIANTS)
def test_every_config_composes_parses_and_fits_its_layout(name, overrides):
    cfg = _compose(name, overrides)
    coreward = CoRewardConfig.from_mapping(OmegaConf.to_container(cfg.coreward))
    alias_grpo_sections(cfg)
    assert cfg.model.reinforce.length_params.max_length == cfg.model.grpo.length_params.max_length
    check_generation(coreward, cfg.trainer.grpo.trt_llm.enable, cfg.trainer.grpo.trt_llm.reshard)
    model = cfg.model
    gpus = cfg.trainer.num_nodes * cfg.trainer.devices
    mp = model.tensor_model_parallel_size * model.pipeline_model_parallel_size
    assert gpus % mp == 0
    pairs_per_call, rollouts = check_batch_layout(
        model.grpo.num_rollout_samples, coreward.data.num_sides,
        cfg.trainer.grpo.num_rollouts_per_prompt, model.grpo.rollout_micro_batch_size,
        model.grpo.forward_micro_batch_size, model.global_batch_size, model.micro_batch_size,
        gpus // mp, coreward.policy_sides)
    # the combined reward's policy rolls out the questions only (its teacher the twins)
    policy_sides = 1 if coreward.reward.name == "co_rewarding_combined" else coreward.data.num_sides
    assert coreward.policy_sides == policy_sides
    assert rollouts == 128 * policy_sides * 8
    if not any("global_batch_size" in o for o in overrides):
        assert model.global_batch_size == rollouts  # one optimiser step per rollout batch
    assert cfg.trainer.grpo.trt_llm.max_input_len + model.grpo.length_params.max_length \
        <= model.encoder_seq_length  # NeMo-Aligner asserts this when building the engine
    assert "{question}" in coreward.data.prompt_template
    # NeMo copies a PTL max_steps >= 0 over the LR schedule's size; the entry script sizes it
    assert cfg.trainer.max_steps == -1 and model.optim.sched.max_steps is None
    if "fp8" in ",".join(overrides):
        assert model.fp8 and model.fp8_hybrid and model.transformer_engine
        assert model.fp8_amax_history_len == 1024 and model.fp8_amax_compute_algo == "max"
    else:
        assert model.fp8 is False


def test_paper_recipe_defaults():
    cfg = _compose("gpt_grpo_coreward", [])
    c = CoRewardConfig.from_mapping(OmegaConf.to_container(cfg.coreward))
    assert (c.reward.name, c.kl.mode, c.kl.coef, c.kl.type) == ("co_reward", "loss", 0.005,
                                                                "low_var_kl")
    assert cfg.model.optim.lr == 3e-6 and cfg.model.grpo.sampling_params.temperature == 1.0
    assert cfg.model.grpo.length_params.max_length == 3072
    assert cfg.model.global_batch_size == 128 * 2 * 8  # one optimiser step per batch
    ii = CoRewardConfig.from_mapping(OmegaConf.to_container(
        _compose("gpt_grpo_coreward", ["aligner/method=co_rewarding_ii"]).coreward))
    assert (ii.needs_teacher, ii.kl.coef, ii.data.num_sides) == (True, 0.001, 1)
    assert (ii.teacher.alpha_start, ii.teacher.alpha_end) == (0.01, 1e-5)


def test_seventy_b_layout_is_tp8_pp2():
    model = _compose("gpt_grpo_coreward_70b", []).model
    assert model.tensor_model_parallel_size == 8 and model.pipeline_model_parallel_size >= 2


def test_every_coreward_key_is_commented():
    text = (CONF / "gpt_grpo_coreward.yaml").read_text()
    section = text[text.index("\ncoreward:"):text.index("\nexp_manager:")]
    for line in section.splitlines()[1:]:
        if re.match(r"\s+\w+:\s*\S", line):  # a key with a value
            assert "#" in line, f"undocumented key line: {line!r}"


@pytest.mark.parametrize("section, message", [
    # unknown keys (the shared typed merge, nemo_coreward.structured)
    ({"rewad": {}}, "config key 'coreward.rewad': Key 'rewad' not in 'CoRewardConfig' "
                    "(valid: reward, validation_reward, server, advantage, kl, loss"),
    ({"kl": {"typ": "k3"}}, "config key 'coreward.kl.typ': Key 'typ' not in 'KLSection' "
                            "(valid: mode, coef, type)"),
    ({"alarm": {"windw": 3}}, "config key 'coreward.alarm.windw': Key 'windw' not in"),
    ({"loss": {"kl_coef": 0.1}}, "config key 'coreward.loss.kl_coef': Key 'kl_coef' not in"),
    # values of the wrong type
    ({"kl": {"coef": "high"}}, "config key 'coreward.kl.coef': Value 'high' of type 'str' "
                               "could not be converted to Float"),
    ({"loss": {"ppo_clip": "sometimes"}}, "config key 'coreward.loss.ppo_clip': Value "
                                          "'sometimes' is not a valid bool"),
    ({"teacher": {"keep_checkpoints": 1.5}}, "config key 'coreward.teacher.keep_checkpoints'"),
    ({"data": {"max_rephrasings": [1]}}, "config key 'coreward.data.max_rephrasings'"),
    # values out of range or unknown names (each section's own checks)
    ({"reward": {"name": "nope"}}, "config: coreward.reward.name: unknown reward 'nope'"),
    ({"kl": {"mode": "both"}}, "config: coreward.kl.mode 'both' unknown"),
    ({"advantage": {"estimator": "ppo"}}, "config: coreward.advantage.estimator 'ppo' unknown"),
    ({"loss": {"truncated": "cut"}}, "config: coreward.loss.truncated 'cut' unknown"),
    ({"teacher": {"update_interval": 0}}, "config: coreward.teacher.update_interval must be"),
    ({"alarm": {"patience": 0}}, "config: coreward.alarm.patience must be >= 1"),
    ({"server": {"timeout_s": 0}}, "config: coreward.server.timeout_s must be > 0"),
    # combinations
    ({"data": {"use_rephrasings": False}}, "coreward.reward.name: 'co_reward' scores each side"),
    ({"validation_reward": {"name": "co_rewarding_ii"}}, "coreward.validation_reward.name"),
    ({"reward": {"name": "entropy"}}, "needs per-token statistics"),
])
def test_bad_values_name_the_key(section, message):
    with pytest.raises(ConfigError) as err:
        CoRewardConfig.from_mapping(section)
    assert message in str(err.value)


def test_errors_name_the_section_where_it_sits():
    with pytest.raises(ConfigError, match=r"config key 'cfg\.coreward\.kl\.typ'"):
        CoRewardConfig.from_mapping({"kl": {"typ": "k3"}}, where="cfg.coreward")


def test_teacher_refuses_trt_resharding():
    c = CoRewardConfig.from_mapping({"reward": {"name": "co_rewarding_ii"},
                                     "data": {"use_rephrasings": False},
                                     "validation_reward": {"name": "majority"}})
    with pytest.raises(ConfigError, match="trainer.grpo.trt_llm.reshard"):
        check_generation(c, True, True)
    check_generation(c, True, False)
    check_generation(CoRewardConfig(), True, True)


@pytest.mark.parametrize("args, message", [
    ((128, 2, 8, 15, 8, 2048, 1, 2), "multiple of the sides per pair"),
    ((128, 2, 8, 16, 8, 2048, 1, 3), "num_rollout_samples (128 pairs) must be a multiple"),
    ((128, 2, 8, 16, 7, 2048, 1, 2), "forward_micro_batch_size (7)"),
    ((128, 2, 8, 16, 8, 1000, 1, 2), "model.global_batch_size (1000)"),
    ((128, 2, 8, 16, 8, 2048, 3, 2), "micro_batch_size x data-parallel size (3 x 2)"),
])
def test_batch_layout_errors(args, message):
    with pytest.raises(ConfigError) as err:
        check_batch_layout(*args)
    assert message in str(err.value)


def test_batch_layout_counts():
    assert check_batch_layout(128, 2, 8, 16, 8, 2048, 1, 2) == (8, 2048)
    assert check_batch_layout(128, 1, 8, 16, 8, 1024, 1, 8) == (16, 1024)


def test_loss_config_follows_kl_mode():
    c = CoRewardConfig()
    assert c.loss_config().kl_coef == 0.005
    r = CoRewardConfig.from_mapping({"kl": {"mode": "reward"}})
    assert r.loss_config().kl_coef == 0.0 and r.needs_reference
    n = CoRewardConfig.from_mapping({"kl": {"mode": "none"}})
    assert not n.needs_reference and n.loss_config().kl_coef == 0.0
