"""The trainer's configuration: YAML under ``conf/embedded`` composed by Hydra, checked
against frozen dataclasses.

Each section's dataclass lives beside the code that uses it (``ModelConfig`` in
``model.py``, ``SamplingConfig`` in ``rollout.py``, ...); ``TrainConfig`` only assembles
them. The sections that name the RL settings, ``advantage``, ``kl``, ``loss`` and
``teacher``, are the NeMo-Aligner trainer's too (``nemo_coreward.rl.sections``, with
``loss.entropy_coef`` this trainer's own). Validation is the structured-config merge of
``nemo_coreward.structured``, shared with the NeMo-Aligner trainer's ``coreward:`` section:
an unknown key, a misspelt key or a value of the wrong type fails at start with the key's
full dotted name, then each section's ``__post_init__`` checks ranges and names, and a key
of the old vocabulary (``RENAMED``) says what it is called now. Every shipped YAML spells
out the whole tree (``default.yaml``) or derives from one that does, so ``key=value``
overrides work for every key and a test can compare the shipped keys with the schema.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nemo_coreward.embedded.data import DataConfig
from nemo_coreward.embedded.evaluate import EvalConfig
from nemo_coreward.embedded.model import ModelConfig
from nemo_coreward.embedded.optim import OptimConfig
from nemo_coreward.embedded.prompts import PromptConfig
from nemo_coreward.embedded.rollout import SamplingConfig
from nemo_coreward.embedded.scoring import RewardSection
from nemo_coreward.embedded.update import EmbeddedLossSection, UpdateConfig
from nemo_coreward.reward import reward_spec
from nemo_coreward.reward.alarm import AlarmSection
from nemo_coreward.rl import AdvantageSection, KLSection, LossConfig, TeacherConfig, loss_config
from nemo_coreward.structured import ConfigError, merge, refuse_renamed

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "embedded"

# Keys of the old vocabulary -> their name now, the NeMo-Aligner trainer's.
RENAMED = {
    "update.advantage": "advantage.estimator",
    "update.adv_eps": "advantage.eps",
    "loss.kl_coef": "kl.coef",
    "loss.kl_type": "kl.type",
}

__all__ = ["CONF_DIR", "RENAMED", "ConfigError", "ScheduleConfig", "TrainConfig", "compose",
           "load", "to_yaml", "validate"]


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
    advantage: AdvantageSection = field(default_factory=AdvantageSection)
    kl: KLSection = field(default_factory=KLSection)
    loss: EmbeddedLossSection = field(default_factory=EmbeddedLossSection)
    update: UpdateConfig = field(default_factory=UpdateConfig)
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
        if self.kl.mode == "reward":
            raise ValueError("kl.mode=reward (the KL subtracted from the reward) is the "
                             "NeMo-Aligner trainer's; this trainer takes kl.mode=loss (the "
                             "paper's KL term in the loss) or kl.mode=none")
        if self.rollout.n < 2 and self.advantage.estimator in ("grpo", "rloo"):
            raise ValueError(f"rollout.n={self.rollout.n}: {self.advantage.estimator} needs "
                             "at least 2 rollouts per prompt to have a baseline")

    def loss_config(self) -> LossConfig:
        """The policy loss's knobs, from the ``loss`` and ``kl`` sections."""
        return loss_config(self.loss, self.kl, self.loss.entropy_coef)


def validate(cfg: DictConfig | dict) -> TrainConfig:
    """A composed config -> ``TrainConfig``, or ``ConfigError`` naming the key at fault."""
    return merge(TrainConfig, cfg, renames=RENAMED)


def compose(config_name: str = "default", overrides: Sequence[str] = (),
            config_dir: Path | str = CONF_DIR) -> DictConfig:
    """Hydra composition of ``config_dir/<config_name>.yaml`` with command-line overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException as OCError

    # A renamed key would otherwise fail in Hydra as merely unknown.
    refuse_renamed([o.partition("=")[0].lstrip("+~") for o in overrides], RENAMED)
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
