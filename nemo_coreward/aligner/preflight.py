"""``coreward preflight``: the run plan of a NeMo-Aligner GRPO config, before any GPU is allocated.

    coreward preflight --config-name gpt_grpo_coreward_llama31_8b aligner/precision=fp8 \\
        --nemo /models/llama31-8b-instruct.nemo \\
        model.tokenizer.type=/models/Llama-3.1-8B-Instruct \\
        model.data.data_prefix.train=/data/math_twins.jsonl --time-limit 4:00:00

Takes the config and Hydra overrides of ``examples/train_gpt_grpo_coreward.py``, composes
them the same way, and prints what the run will do: the parallel layout, batch and step
counts, the LR schedule, the padded sequence length, generation and refits, a per-rank
memory estimate, and the time limit NeMo's timer gets. A combination that would crash a
GPU run or silently spoil it exits with status 2 and one line naming the keys to change.
The sbatch files run it inside the container before ``srun``; ``--json`` prints one JSON
object for scripts. Needs no GPU, NeMo or Megatron.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nemo_coreward.aligner import plan as P
from nemo_coreward.aligner.config import (
    ConfigError,
    CoRewardConfig,
    check_batch_layout,
    check_generation,
    register_resolvers,
)
from nemo_coreward.aligner.model_features import (
    check_local_tokenizer,
    check_rope_scaling,
    check_trt_llm_features,
    effective_model_config,
    hf_config_of,
    model_shape,
    read_model_config,
)
from nemo_coreward.errors import CommandParser

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
DEFAULT_MARGIN = "30"  # minutes: start-up, then one step, validation and a save past the timer

__all__ = ["RunPlan", "build_plan", "compose", "main"]


@dataclass(frozen=True)
class RunPlan:
    """Everything ``coreward preflight`` prints; ``--json`` writes it as one object."""

    config: str
    nodes: int
    gpus: int
    tp: int
    pp: int
    dp: int
    pairs_per_step: int
    rollouts_per_step: int
    train_pairs: int
    train_pairs_source: str
    grpo_steps: int
    optimizer_steps_per_rollout_batch: int
    total_optimizer_steps: int
    scheduler_max_steps: int
    lr: dict[str, float] | None  # start, warmup_end, half, end (None: not previewed)
    seq_len_multiple: int
    padded_seq_len: int
    generation_batch: int
    generation_calls_per_rank: int
    engine_refits_per_step: int
    trt_llm: bool
    tokenizer: str | None
    memory_gib: dict[str, float] | None
    time_limit: str | None
    max_time_per_run: str | None
    save_interval: int
    steps_per_job: int | None


def compose(config_name: str, overrides: list[str], config_dir: Path = CONF_DIR) -> Any:
    """The resolved config ``examples/train_gpt_grpo_coreward.py`` would see."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None):
        cfg = hydra_compose(config_name, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


class _HFTextToIds:
    """A local Hugging Face tokenizer with the one method ``TwinPromptDataset`` calls.

    Contract relied on (NeMo 2.2 ``AutoTokenizer.text_to_ids``): the actor's tokenizer
    encodes a prompt as ``tokens_to_ids(text_to_tokens(text))``, i.e. the HF tokenizer's
    ``tokenize`` then ``convert_tokens_to_ids``, without special tokens; done the same way
    here, preflight drops exactly the pairs the entry script drops.
    """

    def __init__(self, directory: str) -> None:
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(directory)

    def text_to_ids(self, text: str) -> list[int]:
        return self._tok.convert_tokens_to_ids(self._tok.tokenize(text))


def _count_train_pairs(
    cfg: Any, given: int | None, coreward: CoRewardConfig, hf_tokenizer: str | None
) -> tuple[int, str]:
    """Training pairs the run will iterate over: ``--train-pairs``, or the records file
    tokenised as the entry script does (pairs with a side over the prompt budget dropped)
    when the tokenizer is a local Hugging Face directory, or else the records counted."""
    if given is not None:
        return given, "--train-pairs"
    path = cfg.model.data.data_prefix.get("train")
    if not path:
        raise P.PlanError(
            "the number of training pairs is unknown: pass --train-pairs N or "
            "model.data.data_prefix.train=FILE"
        )
    from nemo_coreward.data.records import load_records

    records = load_records(path)
    if hf_tokenizer is None:
        return len(records), (
            f"{path} (records; pairs over the prompt budget, dropped at start, are not "
            "counted: pass --nemo or a local model.tokenizer.type)"
        )
    from nemo_coreward.aligner.data import TwinPromptDataset

    budget = P.prompt_budget(cfg)
    dataset = TwinPromptDataset(
        records, _HFTextToIds(hf_tokenizer), max_prompt_length=budget,
        data=coreward.data, source=str(path),
    )
    return len(dataset), (
        f"{path} ({len(records)} records, {len(dataset.dropped)} with a side over the "
        f"prompt budget of {budget} tokens dropped)"
    )


def _slurm_time_limit() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    if not job or shutil.which("squeue") is None:
        return None
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%l"], capture_output=True, text=True)
    return (
        out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    )


def build_plan(
    cfg: Any,
    *,
    config_name: str,
    train_pairs: int | None = None,
    nemo_cfg: dict[str, Any] | None = None,
    time_limit: str | None = None,
    time_margin: str = DEFAULT_MARGIN,
    step_time: str | None = None,
) -> RunPlan:
    """The plan of a composed config; raises PlanError/ConfigError on a bad combination."""
    coreward = CoRewardConfig.from_mapping(_container(cfg.coreward))
    grpo_trainer, model = cfg.trainer.grpo, cfg.model
    trt = bool(grpo_trainer.trt_llm.enable)
    check_generation(coreward, trt, bool(grpo_trainer.trt_llm.reshard))

    tp, pp = int(model.tensor_model_parallel_size), int(model.pipeline_model_parallel_size)
    nodes, gpus = int(cfg.trainer.num_nodes), int(cfg.trainer.num_nodes) * int(cfg.trainer.devices)
    if gpus % (tp * pp):
        raise P.PlanError(
            f"trainer.num_nodes x trainer.devices ({gpus} GPUs) must be a multiple of "
            f"model.tensor_model_parallel_size x pipeline_model_parallel_size ({tp} x {pp})"
        )
    if int(model.get("context_parallel_size") or 1) > 1:
        raise P.PlanError(
            "model.context_parallel_size: context parallelism is not supported by the "
            "Co-Reward actor's loss scaling; set it to 1"
        )
    dp = gpus // (tp * pp)
    pairs_per_call, rollouts = check_batch_layout(
        int(model.grpo.num_rollout_samples),
        coreward.data.num_sides,
        int(grpo_trainer.num_rollouts_per_prompt),
        int(model.grpo.rollout_micro_batch_size),
        int(model.grpo.forward_micro_batch_size),
        int(model.global_batch_size),
        int(model.micro_batch_size),
        dp,
        coreward.policy_sides,
    )
    val, save = int(grpo_trainer.val_check_interval), int(grpo_trainer.save_interval)
    if val > 0 and save > 0 and save % val:
        raise P.PlanError(
            f"trainer.grpo.save_interval ({save}) must be a multiple of "
            f"trainer.grpo.val_check_interval ({val}) (NeMo-Aligner asserts it)"
        )

    explicit_tokenizer = (
        model.get("tokenizer") is not None and model.tokenizer.get("type") is not None
    )
    effective = (
        effective_model_config(nemo_cfg, model)
        if nemo_cfg is not None or explicit_tokenizer
        else None
    )
    tokenizer = check_local_tokenizer(effective.get("tokenizer")) if effective is not None else None
    hf_config = hf_config_of(tokenizer)
    hf_tokenizer = (
        tokenizer
        if effective is not None
        and (effective.get("tokenizer") or {}).get("library") == "huggingface"
        else None
    )
    pairs, source = _count_train_pairs(cfg, train_pairs, coreward, hf_tokenizer)
    schedule = P.lr_schedule(cfg, train_pairs=pairs, rollouts_per_step=rollouts)
    multiple, padded = P.sequence_layout_of(cfg)
    if nemo_cfg is not None:
        check_trt_llm_features(effective, trt)
        check_rope_scaling(effective, hf_config)
    shape = model_shape(effective, hf_config) if nemo_cfg is not None else None
    memory = None
    if shape is not None:
        estimate = P.estimate_memory(
            shape,
            tp=tp,
            pp=pp,
            dp=dp,
            seq_len=int(model.encoder_seq_length),
            generation_batch=int(model.grpo.rollout_micro_batch_size),
            trt_llm=trt,
            reference=coreward.needs_reference,
            teacher=coreward.needs_teacher,
        )
        memory = {key: round(value / P.GIB, 2) for key, value in asdict(estimate).items()}
        memory["gpu_total"] = round(estimate.gpu_total / P.GIB, 2)
        memory["parameters_billion"] = round(shape.parameters / 1e9, 2)

    limit = P.parse_slurm_time(time_limit) if time_limit else None
    configured = cfg.exp_manager.get("max_time_per_run")
    if limit is not None:
        margin = P.parse_slurm_time(time_margin) or 0
        step_s = P.parse_slurm_time(step_time) if step_time else None
        if step_s is not None and step_s >= margin:
            raise P.PlanError(
                f"--time-margin ({P.nemo_duration(margin)}) must exceed one GRPO step "
                f"({P.nemo_duration(step_s)}): the timer stops the run only at a step's end, "
                "then validates and saves; raise the margin"
            )
        run_s = P.max_time_per_run(limit, margin, configured)
    else:
        step_s = P.parse_slurm_time(step_time) if step_time else None
        run_s = P.parse_nemo_duration(configured) if configured else None
    lr = None
    if schedule.lr_at(0) is not None:
        last = schedule.total_optimizer_steps - 1
        lr = {
            "start": schedule.lr_at(0),
            "warmup_end": schedule.lr_at(schedule.warmup_steps),
            "half": schedule.lr_at(last // 2),
            "end": schedule.lr_at(last),
        }
    calls = (int(model.grpo.num_rollout_samples) // (pairs_per_call * dp)) * int(
        grpo_trainer.num_rollouts_per_prompt
    )
    return RunPlan(
        config=config_name,
        nodes=nodes,
        gpus=gpus,
        tp=tp,
        pp=pp,
        dp=dp,
        pairs_per_step=int(model.grpo.num_rollout_samples),
        rollouts_per_step=rollouts,
        train_pairs=pairs,
        train_pairs_source=source,
        grpo_steps=schedule.grpo_steps,
        optimizer_steps_per_rollout_batch=schedule.optimizer_steps_per_rollout_batch,
        total_optimizer_steps=schedule.total_optimizer_steps,
        scheduler_max_steps=schedule.max_steps,
        lr=lr,
        seq_len_multiple=multiple,
        padded_seq_len=padded,
        generation_batch=int(model.grpo.rollout_micro_batch_size),
        generation_calls_per_rank=calls,
        engine_refits_per_step=(1 + coreward.needs_teacher) if trt else 0,
        trt_llm=trt,
        tokenizer=tokenizer,
        memory_gib=memory,
        time_limit=P.nemo_duration(limit) if limit is not None else None,
        max_time_per_run=P.nemo_duration(run_s) if run_s is not None else None,
        save_interval=save,
        steps_per_job=(run_s // step_s) if run_s is not None and step_s else None,
    )


def _container(node: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


def render(plan: RunPlan) -> str:
    """The plan as the lines a person reads."""
    rows = [
        ("config", plan.config),
        (
            "layout",
            f"{plan.nodes} node(s), {plan.gpus} GPUs: TP {plan.tp} x PP {plan.pp} x DP {plan.dp}",
        ),
        (
            "per GRPO step",
            f"{plan.pairs_per_step} pairs -> {plan.rollouts_per_step} rollouts; "
            f"{plan.optimizer_steps_per_rollout_batch} optimizer step(s) "
            "per rollout batch",
        ),
        ("training pairs", f"{plan.train_pairs} from {plan.train_pairs_source}"),
        (
            "run",
            f"{plan.grpo_steps} GRPO steps = {plan.total_optimizer_steps} optimizer steps; "
            f"LR schedule max_steps {plan.scheduler_max_steps}",
        ),
        (
            "LR",
            ", ".join(f"{k} {v:.3g}" for k, v in plan.lr.items())
            if plan.lr is not None
            else "(only CosineAnnealing without constant steps is previewed)",
        ),
        (
            "sequence",
            f"padded to a multiple of {plan.seq_len_multiple}; "
            f"longest {plan.padded_seq_len} tokens",
        ),
        (
            "generation",
            f"{'TensorRT-LLM' if plan.trt_llm else 'NeMo (Megatron)'}, "
            f"{plan.generation_batch} sequences per call, "
            f"{plan.generation_calls_per_rank} calls per rank per step, "
            f"{plan.engine_refits_per_step} engine refit(s) per step",
        ),
        ("tokenizer", plan.tokenizer or "the .nemo's (not checked: pass --nemo)"),
    ]
    m = plan.memory_gib
    memory = (
        "(pass --nemo or --model-config for an estimate)"
        if m is None
        else (
            f"~{m['gpu_total']} GiB GPU ({m['parameters_billion']}B parameters): weights "
            f"{m['weights']}, gradients {m['gradients']}, optimizer {m['optimizer']} (offloaded "
            f"while generating), engine weights {m['engine_weights']}, KV cache {m['kv_cache']}; "
            f"host: reference {m['host_reference']}, teacher {m['host_teacher']}; "
            "activations not counted"
        )
    )
    rows.append(("memory per rank", memory))
    timing = f"checkpoint every {plan.save_interval} GRPO steps"
    if plan.max_time_per_run is not None:
        timing += f"; exp_manager.max_time_per_run {plan.max_time_per_run}"
        if plan.time_limit is not None:
            timing += f" of the job's {plan.time_limit}"
        if plan.steps_per_job is not None:
            timing += f"; ~{plan.steps_per_job} GRPO steps per job"
            if plan.steps_per_job < plan.save_interval:
                timing += " (fewer than save_interval: only the timed stop saves within a job)"
    else:
        timing += (
            "; no time limit known (--time-limit): a job killed by SLURM restarts from its "
            "last checkpoint"
        )
    rows.append(("time", timing))
    return "\n".join(f"{label:<18}{text}" for label, text in rows)


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="coreward preflight",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for the entry script")
    parser.add_argument("--config-name", default="gpt_grpo_coreward", help="conf/<name>.yaml")
    parser.add_argument("--config-dir", type=Path, default=CONF_DIR, help="the config folder")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--nemo", help="the .nemo to start from (its model_config.yaml is read)")
    model.add_argument("--model-config", help="a model_config.yaml instead of a .nemo")
    parser.add_argument(
        "--train-pairs", type=int, help="training pairs (default: count the train file)"
    )
    parser.add_argument(
        "--time-limit", help="the job's SLURM time limit (default: SLURM's, in a job)"
    )
    parser.add_argument(
        "--time-margin",
        default=DEFAULT_MARGIN,
        help="time kept back from the limit, SLURM format (default 30 minutes)",
    )
    parser.add_argument("--step-time", help="measured time of one GRPO step, SLURM format (M:S)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_intermixed_args(argv)  # overrides may follow options
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from nemo_coreward.data.records import RecordError

    try:
        cfg = compose(args.config_name, list(args.overrides), args.config_dir)
        source = args.nemo or args.model_config
        nemo_cfg = read_model_config(source) if source else None
        plan = build_plan(
            cfg,
            config_name=args.config_name,
            train_pairs=args.train_pairs,
            nemo_cfg=nemo_cfg,
            time_limit=args.time_limit or _slurm_time_limit(),
            time_margin=args.time_margin,
            step_time=args.step_time,
        )
    except (
        P.PlanError,
        ConfigError,
        RecordError,
        FileNotFoundError,
        HydraException,
        OmegaConfBaseException,
    ) as err:
        message = " ".join(str(err).split())
        print(f"coreward preflight: {message}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(plan)) if args.json else render(plan))
    return 0
