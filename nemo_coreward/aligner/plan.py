"""The run plan of a NeMo-Aligner GRPO config, as pure arithmetic.

``coreward preflight`` prints it before any GPU is allocated and the entry script sizes its
LR schedule from it, so both read these functions. Plain Python and OmegaConf only (no NeMo,
Megatron or torch), so it runs on a login node.

The upstream contracts it depends on (NeMo-Aligner 0.7.0, NeMo 2.2.0, read at those tags):

- GRPO steps: ``ReinforceTrainer.set_max_steps`` = ``max_epochs x num_steps_per_epoch``,
  capped by ``trainer.<section>.max_steps`` when >= 0; ``compute_num_steps_per_epoch`` =
  ``total_samples // global_batch_size`` of the train sampler, i.e. training pairs //
  ``model.grpo.num_rollout_samples`` here (the sampler counts pairs).
- Optimizer steps: ``fit`` splits each step's rollouts into minibatches of
  ``model.global_batch_size`` and runs one ``optimizer.step`` + ``scheduler.step`` per
  minibatch (each DP rank trains its shard of a minibatch).
- LR schedule size: ``MegatronBaseModel.setup_optimization`` keeps ``optim.sched.max_steps``
  when set and otherwise takes ``_get_max_steps()`` (``len(train_dl) x max_epochs``, the
  entry script's stand-in dataloader: the wrong number); ``ModelPT.setup_optimization``
  then overwrites it with the PTL ``trainer.max_steps`` whenever that is >= 0.
- ``CosineAnnealing`` (``nemo/core/optim/lr_scheduler.py``, no constant steps): linear
  warm-up ``lr (k + 1) / (w + 1)`` for ``k <= w``, then
  ``min_lr + (lr - min_lr) (1 + cos(pi (k - w) / (T - w))) / 2``, ``min_lr`` past ``T``;
  ``k`` counts ``scheduler.step()`` calls, so optimizer step ``k`` (from 0) uses ``lr(k)``.
- Time limits: NeMo-Aligner's ``Timer`` parses ``exp_manager.max_time_per_run`` as
  ``DD:HH:MM:SS`` from the start of ``fit``; at the first step end past it the run
  validates, saves and returns (``check_progress(..., run_time_exceeded=True)``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from nemo_coreward.aligner.layout import round_up, seq_len_multiple

__all__ = [
    "GIB",
    "MemoryEstimate",
    "ModelShape",
    "PlanError",
    "Schedule",
    "cosine_lr",
    "estimate_memory",
    "grpo_steps",
    "lr_schedule",
    "max_time_per_run",
    "nemo_duration",
    "optimizer_steps_per_rollout_batch",
    "parse_nemo_duration",
    "parse_slurm_time",
    "prompt_budget",
    "scheduler_max_steps",
    "sequence_layout",
    "sequence_layout_of",
]

GIB = 1024**3


class PlanError(ValueError):
    """A config the run cannot survive; the message names the keys and the way out."""


# -- steps and the LR schedule ---------------------------------------------------------------
def grpo_steps(train_pairs: int, pairs_per_step: int, max_epochs: int, max_steps: int) -> int:
    """GRPO steps of the run, as NeMo-Aligner's ``set_max_steps`` computes them."""
    if pairs_per_step < 1:
        raise PlanError(f"model.grpo.num_rollout_samples must be >= 1, got {pairs_per_step}")
    steps = (train_pairs // pairs_per_step) * max_epochs
    if max_steps >= 0:
        steps = min(steps, max_steps)
    if steps < 1:
        raise PlanError(
            f"the run has no GRPO step: {train_pairs} training pairs // "
            f"model.grpo.num_rollout_samples "
            f"({pairs_per_step}) x trainer.grpo.max_epochs ({max_epochs}), trainer.grpo.max_steps "
            f"({max_steps}); add data or lower model.grpo.num_rollout_samples"
        )
    return steps


def optimizer_steps_per_rollout_batch(rollouts_per_step: int, global_batch_size: int) -> int:
    """Optimizer steps one GRPO step takes: its rollouts in minibatches of the global batch."""
    if global_batch_size < 1 or rollouts_per_step % global_batch_size:
        raise PlanError(
            f"rollouts per step ({rollouts_per_step}) must be a multiple of "
            f"model.global_batch_size ({global_batch_size})"
        )
    return rollouts_per_step // global_batch_size


def scheduler_max_steps(
    total_optimizer_steps: int, *, configured: int | None, ptl_max_steps: int, warmup_steps: int
) -> int:
    """The ``optim.sched.max_steps`` the run needs; refuses settings that would shrink it.

    ``configured`` is ``model.optim.sched.max_steps`` (None: sized here to the run).
    A configured value may be longer than the run (a run in stages), never shorter: past
    it the LR sits at ``min_lr``. The PTL ``trainer.max_steps`` must stay -1, because NeMo
    copies it over ``sched.max_steps`` and it counts GRPO steps, not optimizer steps.
    """
    if ptl_max_steps >= 0 and ptl_max_steps != (configured or total_optimizer_steps):
        raise PlanError(
            f"trainer.max_steps ({ptl_max_steps}): NeMo sizes the LR schedule from it; keep it -1 "
            "and set GRPO steps with trainer.grpo.max_steps"
        )
    steps = total_optimizer_steps if configured is None else int(configured)
    if steps < total_optimizer_steps:
        raise PlanError(
            f"model.optim.sched.max_steps ({steps}) is shorter than the run's "
            f"{total_optimizer_steps} "
            "optimizer steps, so the LR would sit at min_lr for the rest; set it to null "
            "(sized from the run)"
        )
    if warmup_steps >= steps:
        raise PlanError(
            f"model.optim.sched.warmup_steps ({warmup_steps}) must be below the "
            f"schedule's {steps} steps; lower it"
        )
    return steps


@dataclass(frozen=True)
class Schedule:
    """The run's step counts and its LR schedule as NeMo will build it."""

    grpo_steps: int
    optimizer_steps_per_rollout_batch: int
    total_optimizer_steps: int
    max_steps: int  # model.optim.sched.max_steps the run needs
    name: str
    lr: float
    min_lr: float
    warmup_steps: int
    constant_steps: int

    def lr_at(self, step: int) -> float | None:
        """The LR optimizer step ``step`` (from 0) uses; None for a schedule not previewed
        (only CosineAnnealing without constant steps is)."""
        if self.name != "CosineAnnealing" or self.constant_steps:
            return None
        return cosine_lr(
            step,
            lr=self.lr,
            min_lr=self.min_lr,
            warmup_steps=self.warmup_steps,
            max_steps=self.max_steps,
        )


def lr_schedule(cfg: Any, *, train_pairs: int, rollouts_per_step: int) -> Schedule:
    """Size the run from a resolved GRPO config (``trainer.grpo``, ``model.grpo``,
    ``model.optim.sched``, PTL ``trainer.max_steps``) and the number of training pairs."""
    grpo, sched = cfg.trainer.grpo, cfg.model.optim.sched
    grpo_max_steps = grpo.get("max_steps")
    steps = grpo_steps(
        train_pairs,
        int(cfg.model.grpo.num_rollout_samples),
        int(grpo.max_epochs),
        -1 if grpo_max_steps is None else int(grpo_max_steps),
    )
    per_batch = optimizer_steps_per_rollout_batch(
        rollouts_per_step, int(cfg.model.global_batch_size)
    )
    total = steps * per_batch
    configured = sched.get("max_steps")
    ratio = sched.get("warmup_ratio")
    size = int(configured) if configured is not None else total
    warmup = int(sched.get("warmup_steps") or 0) if ratio is None else int(ratio * size)
    ptl_max_steps = cfg.trainer.get("max_steps")
    max_steps = scheduler_max_steps(
        total,
        configured=configured,
        warmup_steps=warmup,
        ptl_max_steps=-1 if ptl_max_steps is None else int(ptl_max_steps),
    )
    return Schedule(
        grpo_steps=steps,
        optimizer_steps_per_rollout_batch=per_batch,
        total_optimizer_steps=total,
        max_steps=max_steps,
        name=str(sched.name),
        lr=float(cfg.model.optim.lr),
        min_lr=float(sched.get("min_lr") or 0.0),
        warmup_steps=warmup,
        constant_steps=int(sched.get("constant_steps") or 0),
    )


def cosine_lr(step: int, *, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """NeMo's ``CosineAnnealing`` LR after ``step`` scheduler steps (no constant steps)."""
    if warmup_steps > 0 and step <= warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if step > max_steps:
        return min_lr
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress)) + min_lr


# -- sequence layout -------------------------------------------------------------------------
def prompt_budget(cfg: Any) -> int:
    """Tokens one prompt may use: the sequence minus the generation, and TRT-LLM's input
    cap. The entry script drops (or refuses) pairs with a longer side with this budget, and
    preflight counts the training pairs the same way."""
    budget = int(cfg.model.encoder_seq_length) - int(cfg.model.grpo.length_params.max_length)
    if cfg.trainer.grpo.trt_llm.enable:
        budget = min(budget, int(cfg.trainer.grpo.trt_llm.max_input_len))
    return budget


def sequence_layout(
    *,
    encoder_seq_length: int,
    rollout_batch_seq_length: int | None,
    fp8: bool,
    sequence_parallel: bool,
    tp: int,
) -> tuple[int, int]:
    """(seq_len_multiple, padded_seq_len): the multiple the kernels need and the longest
    padded training sequence; refuses lengths the padding cannot make divisible."""
    multiple = seq_len_multiple(fp8=fp8, sequence_parallel=sequence_parallel, tp=tp)
    why = " x ".join(
        (["16 for FP8 (model.fp8)"] if fp8 else [])
        + ([f"TP {tp} for model.sequence_parallel"] if sequence_parallel and tp > 1 else [])
    )
    if encoder_seq_length % multiple:
        raise PlanError(
            f"model.encoder_seq_length ({encoder_seq_length}) must be a multiple of {multiple} "
            f"({why}): sequences padded to the multiple would outgrow it; set it to "
            f"{encoder_seq_length - encoder_seq_length % multiple} or "
            f"{round_up(encoder_seq_length, multiple)}"
        )
    if rollout_batch_seq_length is not None and rollout_batch_seq_length % multiple:
        raise PlanError(
            f"trainer.grpo.rollout_batch_seq_length ({rollout_batch_seq_length}) must be a "
            f"multiple of {multiple} ({why}); set it to "
            f"{round_up(rollout_batch_seq_length, multiple)} or null"
        )
    padded = (
        rollout_batch_seq_length
        if rollout_batch_seq_length is not None
        else round_up(encoder_seq_length, multiple)
    )
    return multiple, padded


def sequence_layout_of(cfg: Any) -> tuple[int, int]:
    """``sequence_layout`` of a resolved GRPO config (``model.*``, ``trainer.grpo.*``)."""
    model = cfg.model
    return sequence_layout(
        encoder_seq_length=int(model.encoder_seq_length),
        rollout_batch_seq_length=cfg.trainer.grpo.get("rollout_batch_seq_length"),
        fp8=bool(model.get("fp8", False)),
        sequence_parallel=bool(model.get("sequence_parallel", False)),
        tp=int(model.tensor_model_parallel_size),
    )


# -- time limits -----------------------------------------------------------------------------
_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_slurm_time(text: str) -> int | None:
    """Seconds of a SLURM time limit (``--time`` / ``squeue -o %l`` forms); None if unlimited.

    Forms: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``.
    """
    text = text.strip()
    if text.upper() in {"UNLIMITED", "INFINITE", "NOT_SET", "NONE"}:
        return None
    match = _SLURM_TIME.match(text)
    if not match:
        raise PlanError(
            f"--time-limit {text!r}: not a SLURM time (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S)"
        )
    days, a, b, c = match.groups()
    if days is not None:  # D-H[:M[:S]]
        hours, minutes, seconds = int(a), int(b or 0), int(c or 0)
    elif c is not None:  # H:M:S
        hours, minutes, seconds = int(a), int(b), int(c)
    else:  # M or M:S
        hours, minutes, seconds = 0, int(a), int(b or 0)
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def nemo_duration(seconds: int) -> str:
    """``DD:HH:MM:SS``, the form NeMo's ``max_time_per_run`` takes."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def parse_nemo_duration(text: str) -> int:
    """Seconds of a ``DD:HH:MM:SS`` duration (exactly four fields, as NeMo-Aligner's Timer)."""
    parts = str(text).strip().split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise PlanError(f"exp_manager.max_time_per_run ({text!r}) must be DD:HH:MM:SS")
    days, hours, minutes, seconds = map(int, parts)
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def max_time_per_run(limit_s: int, margin_s: int, configured: str | None) -> int:
    """Seconds the run may train before it stops itself, validates and saves.

    The margin covers what the timer does not see or cannot interrupt: start-up (model
    load, engine build) before ``fit`` and the step, validation and save after the limit.
    A configured value is kept when it leaves that margin, refused otherwise.
    """
    if configured is None:
        if limit_s <= margin_s:
            raise PlanError(
                f"the time limit ({nemo_duration(limit_s)}) is not longer than the margin "
                f"({nemo_duration(margin_s)}); ask SLURM for more time or lower --time-margin"
            )
        return limit_s - margin_s
    seconds = parse_nemo_duration(configured)
    if seconds > limit_s - margin_s:
        raise PlanError(
            f"exp_manager.max_time_per_run ({configured}) leaves less than the margin "
            f"({nemo_duration(margin_s)}) before the job's limit ({nemo_duration(limit_s)}): "
            f"the job would be killed before it saves; set it to "
            f"{nemo_duration(max(limit_s - margin_s, 0))} or less"
        )
    return seconds


# -- memory ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs from a GPT model config (NeMo's key names)."""

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int
    vocab_size: int | None  # None: unknown, embeddings left out of the count
    gated: bool = True  # SwiGLU: three MLP matrices instead of two
    qkv_bias: bool = False
    tied_embeddings: bool = False

    @property
    def parameters(self) -> int:
        """Parameter count: attention (QKV + out), MLP, two norms per layer, embeddings."""
        h, d = self.hidden_size, self.kv_channels
        qkv = h * (self.num_attention_heads + 2 * self.num_query_groups) * d
        if self.qkv_bias:
            qkv += (self.num_attention_heads + 2 * self.num_query_groups) * d
        attention = qkv + self.num_attention_heads * d * h
        mlp = (3 if self.gated else 2) * h * self.ffn_hidden_size
        per_layer = attention + mlp + 2 * h
        embeddings = (
            0
            if self.vocab_size is None
            else self.vocab_size * h * (1 if self.tied_embeddings else 2)
        )
        return self.num_layers * per_layer + embeddings + h


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU rank (and host bytes for the CPU copies), formulas in ``estimate_memory``."""

    weights: int
    gradients: int
    optimizer: int
    engine_weights: int
    kv_cache: int
    host_reference: int
    host_teacher: int

    @property
    def gpu_total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.engine_weights + self.kv_cache


def estimate_memory(
    shape: ModelShape,
    *,
    tp: int,
    pp: int,
    dp: int,
    seq_len: int,
    generation_batch: int,
    trt_llm: bool,
    reference: bool,
    teacher: bool,
) -> MemoryEstimate:
    """Per-rank memory of the training state and the generation engine.

    With N = parameters / (TP x PP) on a rank (megatron_amp_O2, distributed Adam):
    weights 2N (bf16); gradients 2N (bf16 buffer); optimizer 12N / DP (fp32 master, Adam m
    and v, sharded over DP; moved to the CPU while generating with ``offload_adam_states``);
    TensorRT-LLM engine weights 2N (the engine keeps its own bf16 copy); the generation KV
    cache 2 (K, V) x layers/PP x max(1, KV heads/TP) x head dim x 2 bytes x seq_len x the
    generation batch (TensorRT-LLM's or Megatron's own). Host: the KL reference 2N (bf16
    CPU copy), the Co-rewarding-II teacher 4N (fp32; it is also the reference).
    Activations, CUDA/NCCL buffers and TensorRT-LLM's own reservations are not counted.
    """
    per_rank = shape.parameters / (tp * pp)
    kv_heads = max(1, shape.num_query_groups // tp)
    kv = (
        2
        * math.ceil(shape.num_layers / pp)
        * kv_heads
        * shape.kv_channels
        * 2
        * seq_len
        * generation_batch
    )
    return MemoryEstimate(
        weights=int(2 * per_rank),
        gradients=int(2 * per_rank),
        optimizer=int(12 * per_rank / dp),
        engine_weights=int(2 * per_rank) if trt_llm else 0,
        kv_cache=int(kv),
        host_reference=int(2 * per_rank) if reference and not teacher else 0,
        host_teacher=int(4 * per_rank) if teacher else 0,
    )
