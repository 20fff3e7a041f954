"""Framework-neutral RL maths in plain torch: advantages, losses, token statistics, teacher.

Nothing here imports a trainer, a server, NeMo or Megatron; both trainers share these
functions, and the config sections that name their settings (``sections``: advantage, kl,
loss). Formulas, shapes, sources and deviations: docs/rl.md.
"""
from nemo_coreward.rl.advantages import (
    ADVANTAGES,
    dr_grpo_advantages,
    expand_to_tokens,
    group_ids_from_keys,
    grpo_advantages,
    rloo_advantages,
)
from nemo_coreward.rl.losses import (
    AGGREGATIONS,
    K3_BOUND,
    KL_PENALTIES,
    LOG_RATIO_BOUND,
    LossConfig,
    aggregate,
    compute_policy_loss,
    kl_penalty,
    ppo_clip_loss,
    token_weights,
    weighted_sum,
)
from nemo_coreward.rl.sections import (
    KL_MODES,
    AdvantageSection,
    KLSection,
    LossSection,
    loss_config,
)
from nemo_coreward.rl.teacher import TeacherConfig, alpha_at, ema_update_, is_update_step
from nemo_coreward.rl.token_stats import (
    masked_sequence_mean,
    token_entropy,
    token_logprobs,
    token_self_certainty,
)

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "AdvantageSection",
    "K3_BOUND",
    "KLSection",
    "KL_MODES",
    "KL_PENALTIES",
    "LOG_RATIO_BOUND",
    "LossConfig",
    "LossSection",
    "TeacherConfig",
    "aggregate",
    "alpha_at",
    "compute_policy_loss",
    "dr_grpo_advantages",
    "ema_update_",
    "expand_to_tokens",
    "group_ids_from_keys",
    "grpo_advantages",
    "is_update_step",
    "kl_penalty",
    "loss_config",
    "masked_sequence_mean",
    "ppo_clip_loss",
    "rloo_advantages",
    "token_entropy",
    "token_logprobs",
    "token_self_certainty",
    "token_weights",
    "weighted_sum",
]
