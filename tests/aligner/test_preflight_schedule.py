"""The LR schedule the entry script sizes, through NeMo's real optimizer setup and scheduler.

``MegatronBaseModel.setup_optimization`` -> ``_get_max_steps`` -> ``ModelPT.setup_optimization``
-> ``prepare_lr_scheduler`` -> ``CosineAnnealing`` run unchanged on a bare model object
that holds only what they read (its config, a PTL trainer, the stand-in dataloader the
entry script hands ``init_using_ptl``). Needs the real NeMo (``.venv-aligner``).
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("nemo_aligner")

import torch  # noqa: E402
from lightning.pytorch import LightningModule, Trainer  # noqa: E402
from nemo.collections.nlp.models.language_modeling.megatron_base_model import MegatronBaseModel  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from nemo_coreward.aligner.config import CoRewardConfig, check_batch_layout  # noqa: E402
from nemo_coreward.aligner.plan import lr_schedule  # noqa: E402
from nemo_coreward.aligner.preflight import compose  # noqa: E402
from tests.aligner.helpers import entry_script  # noqa: E402

MATH_TRAIN_PAIRS = 7500


class _Model(MegatronBaseModel):
    """MegatronBaseModel without its constructor (no Megatron model is needed to build the
    optimizer and scheduler); the abstract data hooks are never called."""

    list_available_models = setup_training_data = setup_validation_data = None


def _nemo_optimizer_and_scheduler(cfg, model_cfg, train_dl):
    model = _Model.__new__(_Model)
    LightningModule.__init__(model)
    model.weight = torch.nn.Parameter(torch.zeros(2))
    model._cfg = model_cfg
    model._trainer = Trainer(
        max_steps=cfg.trainer.max_steps,
        max_epochs=cfg.trainer.max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
    )
    model._train_dl = train_dl
    model.with_distributed_adam = False
    model.megatron_amp_O2 = False
    model.setup_optimization()
    return model._optimizer, model._scheduler["scheduler"]


def _layout(cfg):
    coreward = CoRewardConfig.from_mapping(OmegaConf.to_container(cfg.coreward))
    model = cfg.model
    dp = (
        cfg.trainer.num_nodes
        * cfg.trainer.devices
        // (model.tensor_model_parallel_size * model.pipeline_model_parallel_size)
    )
    _, rollouts = check_batch_layout(
        model.grpo.num_rollout_samples,
        coreward.data.num_sides,
        cfg.trainer.grpo.num_rollouts_per_prompt,
        model.grpo.rollout_micro_batch_size,
        model.grpo.forward_micro_batch_size,
        model.global_batch_size,
        model.micro_batch_size,
        dp,
        coreward.policy_sides,
    )
    return dp, rollouts


def _run_lrs(cfg, train_pairs):
    """The LR of every optimizer step of the run, as the entry script sets NeMo up."""
    dp, rollouts = _layout(cfg)
    model_cfg = OmegaConf.create(OmegaConf.to_container(cfg.model))
    model_cfg.optim.name = "adam"  # distributed_fused_adam needs apex; the schedule does not
    for apex_only in ("bucket_cap_mb", "overlap_grad_sync", "contiguous_grad_buffer"):
        model_cfg.optim.pop(apex_only)
    entry_script().size_lr_schedule(
        cfg, model_cfg, train_pairs=train_pairs, rollouts_per_step=rollouts
    )
    stand_in = torch.utils.data.DataLoader(
        list(range(train_pairs)), batch_size=cfg.model.global_batch_size // dp
    )
    optimizer, scheduler = _nemo_optimizer_and_scheduler(cfg, model_cfg, stand_in)
    grpo_steps = (train_pairs // cfg.model.grpo.num_rollout_samples) * cfg.trainer.grpo.max_epochs
    if cfg.trainer.grpo.max_steps >= 0:
        grpo_steps = min(grpo_steps, cfg.trainer.grpo.max_steps)
    total = grpo_steps * rollouts // cfg.model.global_batch_size
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs, scheduler


@pytest.mark.parametrize(
    "name, overrides, optimizer_steps",
    [
        ("gpt_grpo_coreward_llama31_8b", [], 174),  # 58 steps/epoch x 3, one step per batch
        ("gpt_grpo_coreward_llama32_3b", ["aligner/precision=fp8"], 174),
        ("gpt_grpo_coreward", ["coreward.loss.ppo_clip=true", "model.global_batch_size=512"], 696),
        ("gpt_grpo_coreward_qwen25_7b", ["trainer.grpo.max_steps=40"], 40),
        # the combined reward's policy rolls out one side: still one step per batch
        ("gpt_grpo_coreward", ["aligner/method=co_rewarding_combined"], 174),
    ],
    ids=["8b", "3b-fp8", "4-per-batch", "max-steps", "combined"],
)
def test_lr_follows_the_intended_cosine_over_the_whole_run(name, overrides, optimizer_steps):
    cfg = compose(name, overrides)
    lrs, scheduler = _run_lrs(cfg, MATH_TRAIN_PAIRS)
    assert len(lrs) == optimizer_steps and scheduler.max_steps == optimizer_steps
    lr, min_lr = cfg.model.optim.lr, cfg.model.optim.sched.min_lr
    warmup = cfg.model.optim.sched.warmup_steps

    def intended(
        k,
    ):  # the config's schedule: warm-up, then one cosine from lr to min_lr over the run
        return min_lr + (lr - min_lr) * 0.5 * (
            1 + math.cos(math.pi * (k - warmup) / (optimizer_steps - warmup))
        )

    assert lrs[warmup] == pytest.approx(lr, rel=1e-12)
    for fraction in (0.5, 0.9):
        k = int(fraction * optimizer_steps)
        assert lrs[k] == pytest.approx(intended(k), rel=1e-9)
    assert lrs[int(0.9 * optimizer_steps)] > 1.05 * min_lr  # still decaying, not parked at min_lr
    assert lrs[-1] == pytest.approx(intended(optimizer_steps - 1), rel=1e-9)


def test_preview_matches_nemos_scheduler_step_by_step():
    cfg = compose("gpt_grpo_coreward_llama31_8b", ["model.optim.sched.warmup_steps=7"])
    lrs, _ = _run_lrs(cfg, 3000)  # 23 steps/epoch x 3
    _, rollouts = _layout(cfg)
    schedule = lr_schedule(cfg, train_pairs=3000, rollouts_per_step=rollouts)
    assert schedule.total_optimizer_steps == len(lrs) == 69
    assert [schedule.lr_at(k) for k in range(len(lrs))] == pytest.approx(lrs, rel=1e-12)
