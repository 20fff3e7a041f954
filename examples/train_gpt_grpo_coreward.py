"""GRPO with Co-Reward (or Co-rewarding-II) on NeMo-Aligner 0.7.0, inside an NGC NeMo container.

    python examples/train_gpt_grpo_coreward.py \
        pretrained_checkpoint.restore_from_path=/models/llama31-8b-instruct.nemo \
        model.data.data_prefix.train=/data/math_twins.jsonl \
        model.data.data_prefix.validation=/data/math500_twins.jsonl \
        --config-name gpt_grpo_coreward_llama31_8b

Launch with ``mpirun`` or ``srun --mpi=pmix`` (TensorRT-LLM needs the MPI rank to equal the
torch rank); see examples/slurm/ and docs/nemo-aligner.md. Same shape as NeMo-Aligner's
``train_gpt_reinforce_actor.py``; what differs: the config (``trainer.grpo``, ``model.grpo``,
``coreward``), the actor class, the twin dataset and collate, the reward router instead of
the token-only reward model client, the trainer class, and the teacher of Co-rewarding-II.
"""
import sys
from functools import partial
from pathlib import Path

import torch
import torch.multiprocessing as mp
from megatron.core import parallel_state as mcore_parallel_state
from megatron.core.utils import divide
from nemo.core.config import hydra_runner
from nemo.utils import logging
from nemo.utils.exp_manager import exp_manager
from nemo_aligner.data.nlp.builders import build_dataloader
from nemo_aligner.utils import parallel_state
from nemo_aligner.utils.batch_iterators import get_batch_iterator_cls
from nemo_aligner.utils.distributed import Timer
from nemo_aligner.utils.train_script_utils import (
    CustomLoggerWrapper,
    add_custom_checkpoint_callback,
    extract_optimizer_scheduler_from_ptl_model,
    init_distributed,
    init_peft,
    init_using_ptl,
    resolve_and_create_trainer,
    retrieve_custom_trainer_state_dict,
)
from nemo_aligner.utils.utils import (
    load_and_override_model_config,
    load_from_nemo,
    retrieve_model_state_dict_in_cpu,
)
from omegaconf.omegaconf import OmegaConf, open_dict

from nemo_coreward.aligner.actor import MegatronGPTCoRewardActorModel
from nemo_coreward.aligner.config import (
    ConfigError,
    CoRewardConfig,
    alias_grpo_sections,
    check_batch_layout,
    check_generation,
    register_resolvers,
)
from nemo_coreward.aligner.data import TwinPromptDataset, twin_collate
from nemo_coreward.aligner.model_features import (
    apply_tokenizer_override,
    check_local_tokenizer,
    check_rope_scaling,
    check_trt_llm_features,
    hf_config_of,
)
from nemo_coreward.aligner.plan import (
    PlanError,
    Schedule,
    lr_schedule,
    prompt_budget,
    sequence_layout_of,
)
from nemo_coreward.aligner.scoring import ParallelLayout, RewardRouter
from nemo_coreward.aligner.teacher import TeacherRollouts, TeacherStore, teacher_from_state
from nemo_coreward.aligner.trainer import CoRewardGRPOTrainer
from nemo_coreward.server import make_scorer

register_resolvers()
mp.set_start_method("spawn", force=True)


def size_lr_schedule(cfg, model_cfg, *, train_pairs: int, rollouts_per_step: int) -> Schedule:
    """Set ``model_cfg.optim.sched.max_steps`` to the run's optimizer steps (plan.lr_schedule).

    Without it NeMo sizes the cosine schedule from the stand-in dataloader handed to
    ``init_using_ptl`` (``MegatronBaseModel._get_max_steps``: its length x max_epochs),
    which counts pairs in batches of ``global_batch_size / DP``, not optimizer steps.
    ``model_cfg`` is the restored actor's config, read by ``setup_optimization``.
    """
    schedule = lr_schedule(cfg, train_pairs=train_pairs, rollouts_per_step=rollouts_per_step)
    with open_dict(model_cfg):
        model_cfg.optim.sched.max_steps = schedule.max_steps
    return schedule


def refuse(err: Exception) -> None:
    """A config the run cannot survive: one line naming the keys, exit status 2."""
    print(f"train_gpt_grpo_coreward: {' '.join(str(err).split())}", file=sys.stderr)
    raise SystemExit(2)


def check_model(cfg) -> None:
    """What the merged model config must satisfy before any weight is loaded; refuses (exit 2)
    a hub tokenizer, TensorRT-LLM for a model its build changes, RoPE scaling other than the
    Hugging Face model's, unpaddable lengths."""
    try:
        tokenizer = check_local_tokenizer(cfg.model.get("tokenizer"))
        check_trt_llm_features(cfg.model, cfg.trainer.grpo.trt_llm.enable)
        check_rope_scaling(cfg.model, hf_config_of(tokenizer))
        sequence_layout_of(cfg)
    except PlanError as err:
        refuse(err)


@hydra_runner(config_path="../conf", config_name="gpt_grpo_coreward")
def main(cfg) -> None:
    try:
        coreward = CoRewardConfig.from_mapping(OmegaConf.to_container(cfg.coreward, resolve=True))
        alias_grpo_sections(cfg)
        trt_llm = cfg.trainer.grpo.trt_llm
        check_generation(coreward, trt_llm.enable, trt_llm.reshard)
        apply_tokenizer_override(cfg.model)
        cfg.model = load_and_override_model_config(cfg.pretrained_checkpoint.restore_from_path,
                                                   cfg.model)
    except ConfigError as err:
        refuse(err)
    check_model(cfg)
    logging.info(f"\n{OmegaConf.to_yaml(cfg)}")

    trainer = resolve_and_create_trainer(cfg, "grpo")
    exp_manager(trainer, cfg.exp_manager)
    logger = CustomLoggerWrapper(trainer.loggers)

    actor = load_from_nemo(MegatronGPTCoRewardActorModel, cfg.model, trainer, strict=True,
                           restore_path=cfg.pretrained_checkpoint.restore_from_path)
    init_peft(actor, cfg.model)
    full_params = cfg.model.peft.peft_scheme == "none"
    if (coreward.needs_reference or coreward.needs_teacher) and full_params:
        # Copied before any checkpoint is restored: the reference is the initial policy.
        init_state = retrieve_model_state_dict_in_cpu(
            actor, megatron_amp_O2=cfg.model.get("megatron_amp_O2", False))
        if coreward.needs_teacher:
            actor.set_teacher(TeacherRollouts(teacher_from_state(init_state),
                                              coreward.teacher.averaging()))
        else:
            actor.init_policy_state_dict = init_state
    elif coreward.needs_teacher:
        raise ValueError("model.peft.peft_scheme: Co-rewarding-II needs full-parameter training "
                         "(its teacher averages the full weights)")

    custom_trainer_state = (retrieve_custom_trainer_state_dict(trainer) if trainer.ckpt_path
                            else None)
    init_distributed(trainer, actor, cfg.model.get("transformer_engine", False))

    dp_size = parallel_state.get_data_parallel_world_size()
    grpo = cfg.model.grpo
    try:
        pairs_per_call, rollouts_per_step = check_batch_layout(
            grpo.num_rollout_samples, coreward.data.num_sides,
            cfg.trainer.grpo.num_rollouts_per_prompt,
            grpo.rollout_micro_batch_size, grpo.forward_micro_batch_size,
            cfg.model.global_batch_size, cfg.model.micro_batch_size, dp_size,
            coreward.policy_sides)
    except ConfigError as err:
        refuse(err)
    val_pairs_per_call = max(grpo.val_rollout_micro_batch_size // coreward.data.num_sides, 1)

    budget = prompt_budget(cfg)
    datasets = {
        split: TwinPromptDataset.from_file(cfg.model.data.data_prefix[split], actor.tokenizer,
                                           max_prompt_length=budget, data=coreward.data, name=split)
        for split in ("train", "validation")
    }
    collate = partial(twin_collate, response_length=grpo.length_params.max_length,
                      eos_id=actor.tokenizer.eos_id)
    train_builder = partial(build_dataloader, cfg=cfg, dataset=datasets["train"],
                            mbs=pairs_per_call, gbs=grpo.num_rollout_samples, collate_fn=collate,
                            load_gbs=False)
    val_builder = partial(build_dataloader, cfg=cfg, dataset=datasets["validation"],
                          mbs=val_pairs_per_call, gbs=grpo.num_val_samples, collate_fn=collate,
                          load_gbs=False, use_random_sampler=False)

    try:
        schedule = size_lr_schedule(cfg, actor.cfg, train_pairs=len(datasets["train"]),
                                    rollouts_per_step=rollouts_per_step)
    except PlanError as err:
        refuse(err)
    logging.info(f"LR schedule: {schedule}")
    # init_using_ptl wants a train dataloader; with sched.max_steps set, NeMo sizes nothing from it.
    dummy = torch.utils.data.DataLoader(dataset=datasets["train"],
                                        batch_size=divide(cfg.model.global_batch_size, dp_size))
    init_using_ptl(trainer, actor, dummy, datasets["train"])
    del actor._train_dl, dummy
    optimizer, scheduler = extract_optimizer_scheduler_from_ptl_model(actor)
    ckpt_callback = add_custom_checkpoint_callback(trainer, actor)
    logger.log_hyperparams(OmegaConf.to_container(cfg))

    scorer = make_scorer(coreward.server.url if coreward.server.enable else None,
                         **({"timeout_s": coreward.server.timeout_s,
                             "retries": coreward.server.retries}
                            if coreward.server.enable else {}))
    router = RewardRouter(scorer, ParallelLayout.from_megatron())
    store = None
    if coreward.needs_teacher:
        store = TeacherStore(Path(cfg.exp_manager.explicit_log_dir or ".") / "coreward_teacher",
                             keep=coreward.teacher.keep_checkpoints)

    grpo_trainer = CoRewardGRPOTrainer(
        cfg=cfg.trainer.grpo, model=actor, optimizer=optimizer, scheduler=scheduler,
        train_dataloader_builder=train_builder, val_dataloader_builder=val_builder,
        collate_fn=collate, rm=router,
        batch_iterator_cls=get_batch_iterator_cls(cfg.trainer.grpo.get("batch_iterator", {})),
        logger=logger, ckpt_callback=ckpt_callback,
        run_timer=Timer(cfg.exp_manager.get("max_time_per_run") if cfg.exp_manager else None),
        coreward=coreward, teacher_store=store,
        alarm_history=Path(cfg.exp_manager.explicit_log_dir or ".") / "coreward_alarm.jsonl")
    if custom_trainer_state is not None:
        grpo_trainer.load_state_dict(custom_trainer_state)
        if store is not None and actor.teacher is not None:
            store.load_into(actor.teacher.state, int(custom_trainer_state["step"]),
                            mcore_parallel_state.get_tensor_model_parallel_rank(),
                            mcore_parallel_state.get_pipeline_model_parallel_rank())
    try:
        grpo_trainer.fit()
    finally:
        scorer.close()


if __name__ == "__main__":
    main()
