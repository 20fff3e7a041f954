"""Shipped configs match the schema; mistakes fail at start naming the key."""
from __future__ import annotations

import re
from dataclasses import fields, is_dataclass

import pytest
from omegaconf import OmegaConf

from nemo_coreward.embedded import cli
from nemo_coreward.embedded.config import (
    CONF_DIR,
    RENAMED,
    ConfigError,
    TrainConfig,
    compose,
    load,
    validate,
)
from nemo_coreward.reward import REWARDS
from nemo_coreward.rl import LossConfig

SHIPPED = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
NEEDS = {"paper": ["data.path=pairs.jsonl"]}  # the paper recipe trains on a records file


def _keys(node, prefix=""):
    out = set()
    for key, value in node.items():
        if isinstance(value, dict):
            out |= _keys(value, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def _schema_keys(cls, prefix=""):
    out = set()
    for f in fields(cls):
        default = f.default_factory() if callable(f.default_factory) else f.default
        if is_dataclass(default):
            out |= _schema_keys(type(default), f"{prefix}{f.name}.")
        else:
            out.add(f"{prefix}{f.name}")
    return out


def test_the_four_configs_are_shipped():
    assert {"default", "tiny", "paper", "co_rewarding_ii"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_spells_out_exactly_the_schema(name):
    composed = OmegaConf.to_container(compose(name, NEEDS.get(name, [])))
    assert _keys(composed) == _schema_keys(TrainConfig)
    assert isinstance(validate(composed), TrainConfig)


def test_paper_preset_is_the_paper_recipe():
    cfg = load("paper", NEEDS["paper"])
    assert (cfg.data.pairs_per_step, cfg.rollout.n, cfg.rollout.temperature) == (128, 8, 1.0)
    assert cfg.rollout.max_new_tokens == 3072
    assert (cfg.optim.lr, cfg.optim.schedule, cfg.optim.warmup_ratio) == (3e-6, "cosine", 0.1)
    assert (cfg.kl.mode, cfg.kl.coef, cfg.kl.type) == ("loss", 0.005, "low_var_kl")
    assert (cfg.loss.clip_low, cfg.loss.agg) == (0.2, "side-token-mean-sum")
    assert cfg.loss_config().kl_coef == 0.005
    assert cfg.model.precision == "bf16-mixed" and cfg.reward.name == "co_reward"


def test_co_rewarding_ii_preset_is_the_official_recipe():
    cfg = load("co_rewarding_ii")
    assert cfg.reward.name == "co_rewarding_ii" and cfg.kl.coef == 0.001
    assert (cfg.teacher.alpha_start, cfg.teacher.alpha_end, cfg.teacher.update_interval) == (
        0.01, 1e-5, 1)


def test_overrides_reach_the_dataclasses():
    cfg = load("default", ["rollout.n=6", "reward.fallbacks=[answer_is,last_number]",
                           "++optim.lr=2e-5", "data.synthetic.levels=[1,2]"])
    assert cfg.rollout.n == 6 and cfg.optim.lr == 2e-5
    assert cfg.reward.fallbacks == ("answer_is", "last_number")
    assert cfg.data.synthetic.levels == (1, 2)


@pytest.mark.parametrize("override, key", [
    ("model.pathh=x", "model.pathh"),            # misspelt: Hydra refuses to add it
    ("++model.pathh=x", "model.pathh"),          # forced in: the schema refuses it
    ("++newsection.key=1", "newsection"),
    ("rollout.n=many", "rollout.n"),             # wrong type
    ("train.steps=1.5", "train.steps"),
    ("kl.type=k9", "kl.type"),                   # checked by rl.KLSection
    ("advantage.estimator=ppo", "advantage.estimator"),
    ("advantage.eps=small", "advantage.eps"),
    ("loss.clip_low=1.5", "loss.clip_low"),      # checked by rl.LossSection
    ("loss.entropy_coef=nan", "loss.entropy_coef"),
    ("++loss.kl_cof=1", "loss.kl_cof"),
    ("reward.name=nope", "reward.name"),
    ("reward.equivalence=fuzzy", "reward.equivalence"),
    ("model.precision=fp8", "model.precision"),
    ("data.sides=some", "data.sides"),
    ("optim.schedule=step", "optim.schedule"),
    ("teacher.alpha_start=2", "teacher.alpha_start"),
])
def test_a_bad_key_or_value_fails_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load("default", [override])


@pytest.mark.parametrize("old, new", sorted(RENAMED.items()))
def test_a_renamed_key_says_its_new_name(old, new):
    message = f"config key '{old}' was renamed: use {new}"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load("default", [f"{old}=1"])            # on the command line
    with pytest.raises(ConfigError, match=re.escape(message)):
        load("default", [f"++{old}=1"])
    section, key = old.split(".")
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate({section: {key: 1}})            # in a YAML of one's own, or an old run's


def test_kl_in_the_reward_is_refused_with_the_way_out():
    with pytest.raises(ConfigError, match="kl.mode=reward .*kl.mode=loss .*kl.mode=none"):
        validate({"kl": {"mode": "reward"}})
    cfg = load("default", ["kl.mode=none", "kl.coef=0.1"])
    assert not cfg.kl.needs_reference and cfg.loss_config().kl_coef == 0.0
    cfg = load("default", ["kl.coef=0.1", "loss.entropy_coef=0.01"])
    assert cfg.kl.needs_reference and cfg.loss_config() == LossConfig(
        kl_coef=0.1, entropy_coef=0.01)


def test_unknown_reward_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        load("default", ["reward.name=nope"])
    assert all(name in str(err.value) for name in REWARDS.names())


def test_a_twin_reward_without_twins_is_refused():
    with pytest.raises(ConfigError, match="needs twins"):
        load("default", ["data.sides=original"])
    assert load("default", ["data.sides=original", "reward.name=majority"]).data.sides == "original"


def test_unknown_config_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="default"):
        load("nonexistent")


def test_cli_reports_config_errors_with_exit_code_2(capsys):
    assert cli.main(["--config-name", "tiny", "rollout.temprature=0.5"]) == 2
    assert "rollout.temprature" in capsys.readouterr().err
    assert cli.main(["--bogus"]) == 2
    assert cli.main(["--help"]) == 0
    assert "coreward train" in capsys.readouterr().out


def test_resume_without_a_previous_run_says_so(tmp_path, capsys):
    assert cli.main(["--config-name", "tiny", f"output_root={tmp_path}", "resume=true"]) == 2
    assert "no run of 'tiny'" in capsys.readouterr().err
