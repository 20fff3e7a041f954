"""The trainer's configuration: YAML under ``conf/embedded`` composed by Hydra, checked
against frozen dataclasses.

Each section's dataclass lives beside the code that uses it (``ModelConfig`` in
``model.py``, ``SamplingConfig`` in ``rollout.py``, the shared ``LossConfig`` and
``TeacherConfig`` from ``nemo_coreward.rl``, ...); ``TrainConfig`` only assembles them.
Validation is OmegaConf's structured-config merge, so an unknown key, a misspelt key or a
value of the wrong type fails at start with the key's full dotted name, and then each
section's ``__post_init__`` checks ranges and names. Every shipped YAML spells out the
whole tree (``default.yaml``) or derives from one that does, so ``key=value`` overrides
work for every key and a test can compare the shipped keys with the schema.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nemo_coreward.embedded.data import DataConfig
from nemo_coreward.embedded.evaluate import EvalConfig
from nemo_coreward.embedded.model import ModelConfig
from nemo_coreward.embedded.optim import OptimConfig
from nemo_coreward.embedded.prompts import PromptConfig
from nemo_coreward.embedded.rollout import SamplingConfig
from nemo_coreward.embedded.scoring import RewardSection
from nemo_coreward.embedded.update import UpdateConfig
from nemo_coreward.reward import reward_spec
from nemo_coreward.reward.alarm import AlarmSection
from nemo_coreward.rl import LossConfig, TeacherConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "embedded"


class ConfigError(ValueError):
    """A configuration mistake; the message names the key."""


@dataclass(frozen=True)
class ScheduleConfig:
    """steps: optimiser steps (batches) in the run.
    sample_every: write rollouts to samples.jsonl (0 = never) for ``sample_pairs`` pairs.
    checkpoint_every: write a checkpoint (0 = only at the end); keep_last: how many stay.
    export: save_pretrained the final policy into ``final/``."""

    steps: int = 174
    sample_every: int = 10
    sample_pairs: int = 2
    checkpoint_every: int = 50
    keep_last: int = 2
    export: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"train.steps must be >= 1, got {self.steps}")
        for key in ("sample_every", "sample_pairs", "checkpoint_every", "keep_last"):
            if getattr(self, key) < 0:
                raise ValueError(f"train.{key} must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class TrainConfig:
    """The whole run. ``run_dir`` null makes ``<output_root>/<name>-<timestamp>``;
    ``resume`` continues the newest such run (or ``run_dir``) from its last checkpoint."""

    name: str = "run"
    seed: int = 0
    output_root: str = "runs"
    run_dir: str | None = None
    resume: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    rollout: SamplingConfig = field(default_factory=SamplingConfig)
    reward: RewardSection = field(default_factory=RewardSection)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    alarm: AlarmSection = field(default_factory=AlarmSection)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty string without '/', got {self.name!r}")
        spec = reward_spec(self.reward.name)
        if spec.needs_twins and (self.data.sides != "all" or self.data.max_rephrasings < 1):
            raise ValueError(f"reward.name={self.reward.name} needs twins: set data.sides=all "
                             "and data.max_rephrasings>=1")
        if self.rollout.n < 2 and self.update.advantage in ("grpo", "rloo"):
            raise ValueError(f"rollout.n={self.rollout.n}: {self.update.advantage} needs at "
                             "least 2 rollouts per prompt to have a baseline")


def _unfreeze(node: Any) -> None:
    """Structured configs of frozen dataclasses are read-only node by node; the merge with
    YAML must write into them (the dataclasses stay frozen after ``to_object``)."""
    node._set_flag("readonly", None)
    if isinstance(node, DictConfig):
        for key in node.keys():
            _unfreeze(node._get_node(key))
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            _unfreeze(node._get_node(i))


def schema() -> DictConfig:
    base = OmegaConf.structured(TrainConfig)
    _unfreeze(base)
    return base


def validate(cfg: DictConfig | dict) -> TrainConfig:
    """A composed config -> ``TrainConfig``, or ``ConfigError`` naming the key at fault."""
    try:
        merged = OmegaConf.merge(schema(), cfg)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        message = str(getattr(err, "msg", None) or err).strip().splitlines()[0]
        raise ConfigError(f"config key '{key}': {message}") from None
    except ValueError as err:
        message = str(err).replace("LossConfig.", "loss.").replace("TeacherConfig.", "teacher.")
        raise ConfigError(f"config: {message}") from None


def compose(config_name: str = "default", overrides: Sequence[str] = (),
            config_dir: Path | str = CONF_DIR) -> DictConfig:
    """Hydra composition of ``config_dir/<config_name>.yaml`` with command-line overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException as OCError

    folder = Path(config_dir).resolve()
    if not (folder / f"{config_name}.yaml").is_file():
        shipped = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"no config {config_name!r} in {folder} "
                          f"(available: {', '.join(shipped)})")
    try:
        with initialize_config_dir(config_dir=str(folder), version_base=None):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OCError) as err:
        raise ConfigError(" ".join(str(err).split())) from None


def to_yaml(cfg: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def load(config_name: str = "default", overrides: Sequence[str] = (),
         config_dir: Path | str = CONF_DIR) -> TrainConfig:
    return validate(compose(config_name, overrides, config_dir))
