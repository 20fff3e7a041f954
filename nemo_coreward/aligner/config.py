"""The ``coreward:`` section of the NeMo-Aligner GRPO config, validated at start.

Everything NeMo-Aligner already reads (``trainer.grpo`` = its ``trainer.reinforce``,
``model.grpo`` = its ``model.reinforce``) stays in NeMo's own keys; what Co-Reward adds
lives under ``coreward:`` and is checked here against frozen dataclasses by the typed
merge the embedded trainer's config uses (``nemo_coreward.structured``), so an unknown key,
a typo or a value of the wrong type fails at start with the key's full path instead of
being silently ignored hours into a run. The RL settings have the embedded trainer's names
and dataclasses (``nemo_coreward.rl.sections``: ``advantage``, ``kl``, ``loss``,
``teacher``); what only this trainer does is added here (``loss.ppo_clip``,
``loss.truncated``, ``teacher.keep_checkpoints``). No NeMo or Megatron import, so the
config tests run in any environment.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nemo_coreward.registry import check_name
from nemo_coreward.reward import RewardConfig, reward_spec
from nemo_coreward.reward.alarm import AlarmSection
from nemo_coreward.rl import (
    AdvantageSection,
    KLSection,
    LossConfig,
    LossSection,
    TeacherConfig,
    loss_config,
)
from nemo_coreward.structured import ConfigError, merge

TOO_LONG = ("drop", "error")

__all__ = [
    "AdvantageSection",
    "AlignerLossSection",
    "ConfigError",
    "CoRewardConfig",
    "DataSection",
    "KLSection",
    "ServerSection",
    "TeacherSection",
    "alias_grpo_sections",
    "check_batch_layout",
    "check_generation",
    "policy_sides",
    "register_resolvers",
]


@dataclass(frozen=True)
class ServerSection:
    """The reward server (``coreward serve``); ``enable: false`` scores in-process.

    url: the server's HTTP address. timeout_s: per request. retries: on connection loss.
    """

    enable: bool = False
    url: str = "http://127.0.0.1:5590"
    timeout_s: float = 120.0
    retries: int = 3

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"server.timeout_s must be > 0, got {self.timeout_s!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"server.retries must be an int >= 0, got {self.retries!r}")


TRUNCATED_MODES = ("mask", "keep")


@dataclass(frozen=True)
class AlignerLossSection(LossSection):
    """The ``loss`` section: the keys both trainers share (``LossSection``: clip_low,
    clip_high, agg) plus two of this trainer's own.

    ppo_clip: use the rollout-time log-probs as the old policy and clip the ratio to
    [1 - clip_low, 1 + clip_high] (needed once a rollout batch feeds several optimiser
    steps). truncated: what the loss does with responses that hit the length limit
    (is_end False): "mask" leaves them out, "keep" trains them like the others.
    NeMo-Aligner 0.7.0 zeroes the loss of a micro-batch in which no response ended, which
    at its micro_batch_size 1 leaves every truncated response out: "mask" is that
    behaviour, for any micro-batch size.
    """

    ppo_clip: bool = False
    truncated: str = "mask"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_name("loss.truncated", self.truncated, TRUNCATED_MODES)


@dataclass(frozen=True)
class TeacherSection(TeacherConfig):
    """Co-rewarding-II teacher averaging (``TeacherConfig``, see
    ``nemo_coreward.rl.teacher``), plus where its weights are kept: keep_checkpoints
    snapshots beside the model checkpoints."""

    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 1:
            raise ValueError(f"teacher.keep_checkpoints must be an int >= 1, "
                             f"got {self.keep_checkpoints!r}")

    def averaging(self) -> TeacherConfig:
        """The averaging keys alone, as the shared teacher code takes them."""
        return TeacherConfig(enabled=self.enabled, update_interval=self.update_interval,
                             alpha_start=self.alpha_start, alpha_end=self.alpha_end,
                             alpha=self.alpha)


@dataclass(frozen=True)
class DataSection:
    """prompt_template: Python format string with ``{question}`` (the chat template of the
    model, written out). use_rephrasings: roll out the twins too (False only for
    co_rewarding_ii on data without twins). max_rephrasings: twins per record used.
    too_long: a pair with any side longer than the prompt budget is "drop"ped when the
    dataset is built (indices never shift at run time) or is an "error"."""

    prompt_template: str = "{question}"
    use_rephrasings: bool = True
    max_rephrasings: int = 1
    too_long: str = "drop"

    def __post_init__(self) -> None:
        if "{question}" not in self.prompt_template:
            raise ValueError("data.prompt_template must contain '{question}'")
        if not isinstance(self.max_rephrasings, int) or self.max_rephrasings < 0:
            raise ValueError(f"data.max_rephrasings must be an int >= 0, "
                             f"got {self.max_rephrasings!r}")
        if self.too_long not in TOO_LONG:
            raise ValueError(f"data.too_long {self.too_long!r} unknown; "
                             f"valid: {', '.join(TOO_LONG)}")

    @property
    def num_sides(self) -> int:
        return 1 + (self.max_rephrasings if self.use_rephrasings else 0)


@dataclass(frozen=True)
class CoRewardConfig:
    """The whole ``coreward:`` section. ``validation_reward`` scores validation rollouts
    (one per side): ``ground_truth`` when the validation set has answers."""

    reward: RewardConfig = field(default_factory=RewardConfig)
    validation_reward: RewardConfig = field(default_factory=RewardConfig)
    server: ServerSection = field(default_factory=ServerSection)
    advantage: AdvantageSection = field(default_factory=AdvantageSection)
    kl: KLSection = field(default_factory=KLSection)
    loss: AlignerLossSection = field(default_factory=AlignerLossSection)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    data: DataSection = field(default_factory=DataSection)
    alarm: AlarmSection = field(default_factory=AlarmSection)

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None, where: str = "coreward"
                     ) -> CoRewardConfig:
        """Parse a plain mapping (``OmegaConf.to_container(cfg.coreward, resolve=True)``)
        by the typed merge; ``ConfigError`` names the key as ``where.section.key``."""
        cfg = merge(cls, section, prefix=where)
        cfg._check_consistency(where)
        return cfg

    def _check_consistency(self, where: str) -> None:
        for key, reward in (("reward", self.reward), ("validation_reward", self.validation_reward)):
            if reward_spec(reward.name).needs_twins and self.data.num_sides < 2:
                raise ConfigError(
                    f"{where}.{key}.name: {reward.name!r} scores each side against its twin, "
                    f"but {where}.data rolls out one side only (use_rephrasings/max_rephrasings)")
            if reward_spec(reward.name).needs_token_stats:
                raise ConfigError(f"{where}.{key}.name: {reward.name!r} needs per-token "
                                  "statistics, which the NeMo-Aligner actor does not compute")
        if reward_spec(self.validation_reward.name).needs_teacher:
            raise ConfigError(f"{where}.validation_reward.name: validation has no teacher "
                              "rollouts; use co_reward, majority or ground_truth")

    @property
    def needs_teacher(self) -> bool:
        return reward_spec(self.reward.name).needs_teacher

    @property
    def policy_sides(self) -> int:
        """Sides per pair the policy rolls out: every side the data gives, or the original
        question only (the combined reward, whose teacher rolls out the rephrasings)."""
        return policy_sides(self.data, self.reward.name)

    @property
    def needs_reference(self) -> bool:
        """Reference (init policy or teacher) log-probs are computed each step."""
        return self.kl.needs_reference

    def loss_config(self) -> LossConfig:
        """The actor loss's knobs; the KL term is there in ``kl.mode: loss`` only."""
        return loss_config(self.loss, self.kl)


def policy_sides(data: DataSection, reward_name: str) -> int:
    """Sides per pair the policy rolls out under ``reward_name``
    (``CoRewardConfig.policy_sides``)."""
    spec = reward_spec(reward_name)
    return sum(spec.policy_rolls_out(side) for side in range(data.num_sides))


def check_batch_layout(pairs_per_step: int, num_sides: int, rollouts_per_prompt: int,
                       rollout_micro_batch_size: int, forward_micro_batch_size: int,
                       model_gbs: int, model_mbs: int, dp_size: int,
                       policy_sides: int | None = None) -> tuple[int, int]:
    """Validate the batch sizes; return (pairs per rollout micro-batch, rollouts per step).

    ``rollout_micro_batch_size`` keeps NeMo-Aligner's meaning, sequences per generation
    call (it sizes the TensorRT-LLM engine), and a call holds whole pairs, so it must be a
    multiple of the sides per pair. ``pairs_per_step`` (``num_rollout_samples``) counts
    pairs. A step rolls out pairs x policy sides (``policy_sides``, default all
    ``num_sides``) x rollouts_per_prompt sequences; every DP rank
    scores them all, then computes log-probs of and trains on its 1/DP share (in
    micro-batches of ``forward_micro_batch_size``), in optimiser steps of
    ``model.global_batch_size``.
    """
    rolled = num_sides if policy_sides is None else policy_sides
    rollouts = pairs_per_step * rolled * rollouts_per_prompt
    pairs_per_call = rollout_micro_batch_size // num_sides
    checks = [
        (rollout_micro_batch_size % num_sides == 0 and pairs_per_call > 0,
         f"model.grpo.rollout_micro_batch_size ({rollout_micro_batch_size} sequences) must be a "
         f"positive multiple of the sides per pair ({num_sides})"),
        (pairs_per_call > 0 and pairs_per_step % (pairs_per_call * dp_size) == 0,
         f"model.grpo.num_rollout_samples ({pairs_per_step} pairs) must be a multiple of pairs "
         f"per generation call x data-parallel size ({pairs_per_call} x {dp_size})"),
        (rollouts % (forward_micro_batch_size * dp_size) == 0,
         f"rollouts per step ({rollouts}) must be a multiple of "
         f"model.grpo.forward_micro_batch_size ({forward_micro_batch_size}) x data-parallel "
         f"size ({dp_size}): each DP rank computes log-probs of its share"),
        (rollouts % model_gbs == 0,
         f"rollouts per step ({pairs_per_step} pairs x {rolled} sides x "
         f"{rollouts_per_prompt} rollouts = {rollouts}) must be a multiple of "
         f"model.global_batch_size ({model_gbs})"),
        (model_gbs % (model_mbs * dp_size) == 0,
         f"model.global_batch_size ({model_gbs}) must be a multiple of micro_batch_size x "
         f"data-parallel size ({model_mbs} x {dp_size})"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return pairs_per_call, rollouts


def check_generation(coreward: CoRewardConfig, trt_llm_enable: bool, trt_llm_reshard: bool) -> None:
    """Combinations the actor cannot run, refused at start.

    The teacher pass swaps weights and refits the engine in the model's own parallel
    layout; with ``trt_llm.reshard`` the engine runs in a TP-only layout that NeMo-Aligner
    enters and leaves around generation, and refitting inside it is not supported.
    """
    if coreward.needs_teacher and trt_llm_enable and trt_llm_reshard:
        raise ConfigError(f"trainer.grpo.trt_llm.reshard: must be False with "
                          f"coreward.reward.name={coreward.reward.name!r} (teacher rollouts "
                          "refit the engine in the training layout)")


def alias_grpo_sections(cfg: Any) -> None:
    """Expose ``trainer.grpo``/``model.grpo`` under the names NeMo-Aligner's classes read.

    ``MegatronGPTReinforceActorModel`` reads ``model.reinforce.*``; the trainer gets
    ``trainer.grpo`` directly. Works on an OmegaConf DictConfig (struct mode lifted here).
    """
    from omegaconf import open_dict

    with open_dict(cfg):
        if "grpo" not in cfg.model:
            raise ConfigError("model.grpo: missing section (rollout and generation settings)")
        if "grpo" not in cfg.trainer:
            raise ConfigError("trainer.grpo: missing section (the GRPO loop settings)")
        cfg.model.reinforce = cfg.model.grpo


def register_resolvers() -> None:
    """The resolvers the configs use: NeMo-Aligner's (``${multiply:...}`` etc.) and ours."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("multiply", lambda x, y: x * y, replace=True)
    OmegaConf.register_new_resolver("int_div", lambda x, y: x // y, replace=True)
    OmegaConf.register_new_resolver("subtract", lambda x, y: x - y, replace=True)
    # Sides the policy rolls out per pair, as CoRewardConfig.policy_sides:
    # ${coreward_sides:use_rephrasings, max_rephrasings, reward_name}.
    OmegaConf.register_new_resolver(
        "coreward_sides", lambda use, k, reward="co_reward": policy_sides(
            DataSection(use_rephrasings=bool(use), max_rephrasings=int(k)), str(reward)),
        replace=True)

