"""A run's session: everything ``setup(cfg)`` builds, as one named record, and how it is
checkpointed and restored.

Apart from ``trainer`` so that ``trainer.train`` holds only the loop, read top to bottom;
the step (``step.Step``) takes the session, its helpers only the parts they use.

``setup`` seeds, loads data, tokenizer and model, and only then makes the run directory (a
bad ``data.path`` or ``model.path`` leaves no empty run behind), builds the reference or
teacher, the optimiser under Lightning Fabric, the sampling copies and the schedule; when
resuming, it restores the newest checkpoint (``checkpoint_state``) and drops the rows logged
after it. ``save_checkpoint`` writes the same objects with the step, the random states and
the data cursor.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nemo_coreward.embedded import checkpoint
from nemo_coreward.embedded.config import TrainConfig, to_yaml
from nemo_coreward.embedded.data import PairCursor, Prompt, check_twins, load_pairs
from nemo_coreward.embedded.evaluate import eval_prompts, heldout_pairs
from nemo_coreward.embedded.model import load_causal_lm, load_tokenizer, model_dir
from nemo_coreward.embedded.optim import build_optimizer, build_scheduler
from nemo_coreward.embedded.rundir import RunLog, new_run_dir
from nemo_coreward.embedded.scoring import Scorer
from nemo_coreward.embedded.step import generation_dtype, make_generator, refresh_copy
from nemo_coreward.heap import keep_freed_memory
from nemo_coreward.io import atomic_write
from nemo_coreward.reward import reward_spec


@dataclass
class Session:
    """Everything ``setup`` built. ``policy`` is Fabric's wrapper (training forwards);
    ``raw_policy`` the module itself (teacher averaging, export); ``generator`` the
    weights rollouts and evaluation sample from: ``raw_policy`` itself, or a copy in
    ``rollout.dtype`` refreshed after every update. ``reference`` is the KL reference,
    which is the teacher for Co-rewarding-II rewards: float32, so that averaging at
    alpha <= 0.01 does not round away. ``teacher_sampler`` is what teacher rollouts sample
    from: the teacher itself, or its copy in ``rollout.dtype`` refreshed after every
    averaging, as for the policy."""

    cfg: TrainConfig
    run_dir: Path
    log: RunLog
    fabric: Any
    tokenizer: Any
    policy: Any
    raw_policy: torch.nn.Module
    generator: torch.nn.Module
    reference: torch.nn.Module | None
    teacher_sampler: torch.nn.Module | None
    teacher_moves: bool
    optimizer: torch.optim.Optimizer
    scheduler: Any
    pairs: list
    cursor: PairCursor
    scorer: Scorer
    eval_prompts: list[Prompt]
    start_step: int = 0
    evals: dict = field(default_factory=dict)


def _fabric(cfg: TrainConfig) -> Any:
    from lightning_fabric import Fabric

    # A single-process run on a machine that has SLURM installed is not a SLURM job.
    warnings.filterwarnings("ignore", message="The `srun` command is available")

    device = cfg.model.resolved_device()
    accelerator = "cuda" if device.startswith("cuda") else "cpu"
    devices: Any = [int(device.split(":")[1])] if ":" in device else 1
    return Fabric(accelerator=accelerator, devices=devices,
                  precision=cfg.model.resolved_precision())


def setup(cfg: TrainConfig) -> Session:
    """Build (or, resuming, restore) everything a run needs; see the module docstring."""
    from lightning_fabric.utilities.seed import seed_everything

    if cfg.model.keep_heap:
        keep_freed_memory()
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    seed_everything(cfg.seed, verbose=False)
    fabric = _fabric(cfg)
    spec = reward_spec(cfg.reward.name)
    pairs = load_pairs(cfg.data, cfg.seed)
    check_twins(pairs, cfg.data, spec.needs_twins)
    path = model_dir(cfg.model)
    tokenizer = load_tokenizer(path)
    raw_policy = load_causal_lm(path, cfg.model)

    # The run directory is made only once data and model have loaded: a bad data.path or
    # model.path must not leave an empty run behind for `resume=true` to pick.
    run_dir = Path(cfg.run_dir) if cfg.run_dir else new_run_dir(cfg.output_root, cfg.name)
    resume_from = checkpoint.latest_checkpoint(run_dir) if cfg.resume else None
    checkpoint.remove_leftovers(run_dir)  # of checkpoint writes a hard kill cut short
    log = RunLog(run_dir)
    resolved = cfg if cfg.run_dir else _with_run_dir(cfg, run_dir)
    atomic_write(run_dir / "config.yaml", to_yaml(resolved))
    reference = None
    if cfg.kl.needs_reference or spec.needs_teacher:
        reference = copy.deepcopy(raw_policy).eval().requires_grad_(False)
        reference = fabric.to_device(reference)
    optimizer = build_optimizer(raw_policy.parameters(), cfg.optim)
    policy, optimizer = fabric.setup(raw_policy, optimizer)
    generator = make_generator(raw_policy, generation_dtype(cfg))
    teacher_sampler = make_generator(reference, generation_dtype(cfg)) \
        if spec.needs_teacher else None
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.train.steps)
    records = heldout_pairs(cfg.eval, cfg.data, cfg.seed) if cfg.eval.enabled else []
    s = Session(
        cfg=cfg, run_dir=run_dir, log=log, fabric=fabric, tokenizer=tokenizer, policy=policy,
        raw_policy=raw_policy, generator=generator, reference=reference,
        teacher_sampler=teacher_sampler,
        teacher_moves=spec.needs_teacher and cfg.teacher.enabled, optimizer=optimizer,
        scheduler=scheduler, pairs=pairs,
        cursor=PairCursor(len(pairs), cfg.seed, cfg.data.shuffle), scorer=Scorer(cfg.reward),
        eval_prompts=eval_prompts(records, cfg.data.max_rephrasings),
    )
    s.evals = log.read_json("eval.json") or {}
    if resume_from is not None:
        rest = checkpoint.load(resume_from, checkpoint_state(s))
        checkpoint.set_rng_state(rest["rng"])
        s.start_step = int(rest["step"])
        # The sampling copies follow the restored policy and teacher.
        refresh_copy(s.generator, s.raw_policy)
        if s.teacher_sampler is not None:
            refresh_copy(s.teacher_sampler, s.reference)
    # Rows past the checkpoint (or all rows, when a rerun finds none) are redone now.
    log.truncate_after(s.start_step)
    return s


def _with_run_dir(cfg: TrainConfig, run_dir: Path) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, run_dir=str(run_dir))


def checkpoint_state(s: Session) -> dict[str, Any]:
    """Objects a checkpoint restores in place (the unwrapped ones, not Fabric's wrappers)."""
    optimizer = getattr(s.optimizer, "optimizer", s.optimizer)
    state: dict[str, Any] = {"model": s.raw_policy, "optimizer": optimizer,
                             "scheduler": s.scheduler, "cursor": s.cursor}
    if s.teacher_moves:
        state["teacher"] = s.reference
    return state


def save_checkpoint(s: Session, step: int, rng: dict, cursor: dict) -> Path:
    """Checkpoint the session as of ``step``: ``rng`` and ``cursor`` are the random states
    and the data position at that point (a step's start, when rolling back to it)."""
    state = {**checkpoint_state(s), "step": step, "rng": rng, "cursor": cursor}
    return checkpoint.save(s.run_dir, step, state, s.cfg.train.keep_last)
