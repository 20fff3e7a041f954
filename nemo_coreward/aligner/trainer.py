"""GRPO with Co-Reward on NeMo-Aligner 0.7.0's ``ReinforceTrainer``.

What changes, and where (line numbers of ``nemo_aligner/algorithms/reinforce.py``, v0.7.0):

- ``_run_inference`` (:248-338) is replaced: rollouts carry ``pair_id``/``side`` (the
  actor copies them), the teacher generates after the policy when the reward needs one,
  and the rewards are computed once ALL rollouts of the step exist, on the gathered batch,
  then written into the global batch BEFORE ``compute_rollout_metrics`` (:338), so
  ``train_rollouts/rewards`` and the rollout table show the real Co-Reward rewards. The
  reward's collapse metrics are logged with them (``train_rollouts/coreward_*``). A
  duck-typed ``rm`` whose futures resolve late would also work, but it would see one
  micro-batch at a time and need hidden shared state to know when the last twin arrived;
  see docs/nemo-aligner.md.
- ``chunk`` (:102-116) is not used: it keeps the whole gathered batch on every DP rank, so
  every replica trained every row, in DP optimiser steps per rollout batch. Each rank takes
  its share of every optimiser step's rows (``aligner.shards``) after scoring; log-probs
  are computed for that share only. Every step's batch is first padded to the sequence
  multiple FP8 and sequence parallelism need (``aligner.layout``).
- ``generate_reinforce_data`` (:194-246): per-(pair, side) group advantages from
  ``nemo_coreward.rl.ADVANTAGES`` instead of the RLOO baseline over identical prompts,
  expressed as ``rewards_with_kl - baseline``; the KL goes into the loss (k3, the paper's
  choice; the actor computes it) or into the reward (NeMo-Aligner's way), by config.
  Per-token loss weights are computed per optimiser step on its global rows, so the
  actor's loss is ``coreward.loss.agg`` exactly (``aligner.loss``); truncated responses
  follow ``coreward.loss.truncated``. When rollouts carry ``generation_logprobs`` (the
  engine's per-token log-probs), ``train_rollouts/coreward_gen_logprob_mismatch`` logs
  their mean gap to the trainer's.
- ``generate_rollouts`` (:381-402): ``consumed_samples`` advances by the PAIRS of the step
  (what the sampler counts), not by the rollouts, so data is not skipped and a resumed run
  starts where it stopped.
- ``save`` also writes the teacher's shard, so a resumed Co-rewarding-II run is exact.
- The collapse alarm (``coreward.alarm``) is checked after every step's rollouts on the
  reward's metrics (``pseudo_label_accuracy`` when answers are known) and after every
  validation with a ``ground_truth`` validation reward (``heldout_accuracy``); with
  ``stop`` the run timer reports "finished", so NeMo-Aligner's own loop validates, saves
  and returns exactly as at ``max_time_per_run``. Its history is a JSONL file beside the
  checkpoints, cut back to the restored step on resume.

Fit loop, optimiser steps, validation, checkpoints, logging, TensorRT-LLM: NeMo-Aligner's.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from megatron.core import parallel_state as mcore_parallel_state
from nemo_aligner.algorithms.reinforce import (
    ReinforceRolloutBatch,
    ReinforceTrainer,
    compute_num_rollout_microbatches,
)
from nemo_aligner.utils import parallel_state
from nemo_aligner.utils.parallel_state import trt_llm_reshard_region
from nemo_aligner.utils.ppo_utils import create_mask
from nemo_aligner.utils.utils import cpu_dict

from nemo_coreward.aligner.advantages import consumed_after_step, reinforce_terms, sequence_kl
from nemo_coreward.aligner.config import CoRewardConfig
from nemo_coreward.aligner.data import select_sides
from nemo_coreward.aligner.layout import round_up, seq_len_multiple
from nemo_coreward.aligner.scoring import RewardRouter, response_decoder
from nemo_coreward.aligner.shards import (
    loss_mask,
    optimizer_step_of_rows,
    shard_rows,
    step_loss_weights,
)
from nemo_coreward.aligner.teacher import TeacherStore
from nemo_coreward.io import append_jsonl, read_jsonl, write_jsonl
from nemo_coreward.reward import reward_spec
from nemo_coreward.reward.alarm import AlarmWatch
from nemo_coreward.rl import weighted_sum

__all__ = ["CoRewardGRPOTrainer", "StopOnAlarm"]

log = logging.getLogger(__name__)


class CoRewardGRPOTrainer(ReinforceTrainer):
    """``ReinforceTrainer`` with GRPO advantages and Co-Reward scoring (module docstring).

    Extra arguments: ``coreward`` (the parsed ``coreward:`` section), ``rm`` is a
    ``RewardRouter``, ``teacher_store`` where teacher snapshots go (Co-rewarding-II),
    ``alarm_history`` the collapse alarm's JSONL rows (None: kept in memory only).
    ``cfg`` is ``trainer.grpo`` (NeMo-Aligner's ``trainer.reinforce`` keys).
    """

    def __init__(self, *, coreward: CoRewardConfig, rm: RewardRouter,
                 teacher_store: TeacherStore | None = None,
                 alarm_history: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(rm=rm, **kwargs)
        self.coreward = coreward
        self.teacher_store = teacher_store
        self.alarm_history = Path(alarm_history) if alarm_history else None
        self.alarm = AlarmWatch(coreward.alarm,
                                read_jsonl(self.alarm_history).rows if self.alarm_history else [])
        self.run_timer = StopOnAlarm(self.run_timer, self.alarm)
        # NeMo-Aligner decides from initial_policy_kl_penalty; ours from coreward.kl.
        self.compute_init_policy_kl = coreward.needs_reference
        self.rollouts_per_pair = coreward.policy_sides * self.cfg.num_rollouts_per_prompt
        # The sampler's global batch counts dataset items, i.e. pairs.
        self.pairs_per_step = self.train_dataloader_builder(
            consumed_samples=0).batch_sampler.global_batch_size
        self.seq_len_multiple = training_seq_len_multiple(getattr(self.model, "cfg", {}),
                                                          self.cfg.rollout_batch_seq_length)
        # Our loss always runs: it is what makes each aggregation exact over micro-batches
        # and DP ranks (the stock REINFORCE loss means per micro-batch).
        self.model.set_coreward_loss(coreward.loss_config())

    # -- one step's rollouts --------------------------------------------------------------
    def _run_inference(self, dataloader_builder, consumed_samples, is_validation):
        """Roll out and score the step; returns (the gathered global batch with ``rewards``,
        padded to the training length, metrics). Unlike 0.7.0 it returns the global batch,
        not a chunk: ``generate_rollouts`` shards it, validation needs only the metrics."""
        reshard = trt_llm_reshard_region if self.trtllm_reshard else nullcontext
        num_rollouts = 1 if is_validation else self.cfg.num_rollouts_per_prompt
        with_teacher = self.coreward.needs_teacher and not is_validation
        # The reward says which sides each model rolls out (the combined reward: the policy
        # the original questions, the teacher the rephrasings).
        spec = reward_spec((self.coreward.validation_reward if is_validation
                            else self.coreward.reward).name)
        policy, teacher, batches = [], [], []
        with reshard():
            dataloader = dataloader_builder(consumed_samples=consumed_samples)
            with self.timer("batch_iterator_init"):
                batch_iterator = self.batch_iterator_cls(
                    iter(dataloader.batch_sampler), compute_num_rollout_microbatches(dataloader),
                    dataloader.dataset, self.collate_fn)
            with self.timer("generate"):
                for batch in batch_iterator:
                    if with_teacher:
                        batches.append(select_sides(batch, spec.teacher_rolls_out))
                    own = select_sides(batch, spec.policy_rolls_out)
                    policy.extend(self.model.infer(own) for _ in range(num_rollouts))
            if with_teacher:
                with self.timer("teacher_generate"):
                    teacher = self.model.teacher_rollouts(batches, num_rollouts, step=self.step + 1,
                                                          total_steps=self.max_steps)
            global_batch = self._gather(policy)
            global_teacher = self._gather(teacher) if with_teacher else None
        global_batch["response_tokens"] = pad_tokens(global_batch["response_tokens"],
                                                     self.seq_len_multiple,
                                                     self.model.tokenizer.eos_id)
        with self.timer("reward"):
            rewards, reward_metrics = self._score(global_batch, global_teacher, dataloader.dataset,
                                                  is_validation)
        global_batch["rewards"] = rewards.to(global_batch["response_tokens"].device)
        metrics = self.compute_rollout_metrics(global_batch)
        metrics.update({f"coreward_{k}": v for k, v in reward_metrics.items()})
        if with_teacher and self.model.teacher.last_alpha is not None:
            metrics["coreward_teacher_alpha"] = self.model.teacher.last_alpha
        return global_batch, cpu_dict(metrics)

    def _gather(self, rollouts):
        local = ReinforceRolloutBatch.from_rollout_batches(
            rollouts, eos_id=self.model.tokenizer.eos_id,
            rollout_batch_seq_length=self.cfg.rollout_batch_seq_length)
        return local.gather_and_balance_globally()

    def _score(self, batch, teacher, dataset, is_validation):
        config = self.coreward.validation_reward if is_validation else self.coreward.reward
        tokenizer = self.model.tokenizer

        def decoder(b):
            return response_decoder(tokenizer, b["response_tokens"].cpu(),
                                    b["prompt_lengths"].cpu(), b["response_lengths"].cpu())

        teacher_part = None
        if teacher is not None:
            teacher_part = (teacher["pair_id"].cpu(), teacher["side"].cpu(), decoder(teacher))
        return self.rm.score(config, batch["pair_id"].cpu(), batch["side"].cpu(), decoder(batch),
                             ground_truth=getattr(dataset, "ground_truth", None),
                             teacher=teacher_part)

    def _local_shard(self, global_batch):
        """This DP rank's rows (``aligner.shards``), with their log-probs."""
        rows = shard_rows(global_batch["response_tokens"].size(0),
                          parallel_state.get_data_parallel_rank(),
                          parallel_state.get_data_parallel_world_size(), self.cfg.model_gbs)
        batch = ReinforceRolloutBatch({k: v[rows.to(v.device)].clone()
                                       for k, v in global_batch.items()})
        with self.timer("logprobs"):
            batch["logprobs"] = self.model.get_inference_log_probs(batch["response_tokens"])
        if self.compute_init_policy_kl:
            with self.timer("init_logprobs"):
                batch["init_logprobs"] = self.model.get_init_policy_logprobs(
                    batch["response_tokens"])
        return rows, batch

    # -- advantages -----------------------------------------------------------------------
    def generate_reinforce_data(self, global_batch, rows, local_batch):
        """Training data of this rank's rows: advantages per (pair, side) group and loss
        weights per optimiser step, both computed on the whole gathered batch. Only the
        per-response KL (KL-in-reward mode) is gathered over DP."""
        logprobs = local_batch["logprobs"]
        mask = create_mask(values=logprobs, prompt_lengths=local_batch["prompt_lengths"],
                           response_lengths=local_batch["response_lengths"])
        kl_cfg = self.coreward.kl
        num_rows = global_batch["response_tokens"].size(0)
        kl = None
        if self.compute_init_policy_kl:
            kl = _gather_rows(sequence_kl(logprobs, local_batch["init_logprobs"], mask,
                                          kl_cfg.type), num_rows, self.cfg.model_gbs)
        terms = reinforce_terms(
            global_batch["rewards"], global_batch["pair_id"], global_batch["side"],
            estimator=self.coreward.advantage.estimator, eps=self.coreward.advantage.eps,
            kl=kl if kl_cfg.mode == "reward" else None, kl_coef=kl_cfg.coef)
        global_mask = loss_mask(
            create_mask(values=torch.empty(num_rows, global_batch["response_tokens"].size(1) - 1),
                        prompt_lengths=global_batch["prompt_lengths"].cpu(),
                        response_lengths=global_batch["response_lengths"].cpu()),
            global_batch["is_end"].cpu(), self.coreward.loss.truncated)
        weights = step_loss_weights(
            global_mask, self.coreward.loss.agg, global_batch["side"].cpu(),
            optimizer_step_of_rows(num_rows, self.cfg.model_gbs))
        device = logprobs.device
        rows_cpu = rows.cpu()
        data = {"mask": global_mask[rows_cpu].to(device, logprobs.dtype),
                "loss_weights": weights[rows_cpu].to(device),
                "rewards_with_kl": terms.rewards_with_kl[rows.to(terms.rewards_with_kl.device)],
                "baseline": terms.baseline[rows.to(terms.baseline.device)],
                "response_tokens": local_batch["response_tokens"],
                "is_end": local_batch["is_end"]}
        if self.coreward.loss.ppo_clip:
            data["prev_logprobs"] = logprobs
        if kl_cfg.mode == "loss" and self.compute_init_policy_kl:
            data["init_logprobs"] = local_batch["init_logprobs"]
        metrics = {
            "init_policy_kl": float(kl.mean()) if kl is not None else 0.0,
            "rewards_with_kl": float(terms.rewards_with_kl.mean()),
            "advantages_abs_mean": float(terms.advantages.abs().mean()),
        }
        if "generation_logprobs" in local_batch:
            metrics["coreward_gen_logprob_mismatch"] = _generation_mismatch(
                local_batch["generation_logprobs"], logprobs, mask)
        return data, metrics

    def generate_rollouts(self):
        with self.timer("prepare_for_inference"):
            self.model.prepare_for_inference()
        global_batch, metrics = self._run_inference(self.train_dataloader_builder,
                                                    consumed_samples=self.consumed_samples,
                                                    is_validation=False)
        self.consumed_samples = consumed_after_step(self.consumed_samples, self.pairs_per_step,
                                                    metrics["rollout_size"], self.rollouts_per_pair)
        rows, local_batch = self._local_shard(global_batch)
        data, grpo_metrics = self.generate_reinforce_data(global_batch, rows, local_batch)
        with self.timer("finish_inference"):
            self.model.finish_inference()
        prefix = "coreward_"
        self._observe({"step": self.step + 1, **{k[len(prefix):]: v for k, v in metrics.items()
                                                 if k.startswith(prefix)}})
        metrics["coreward_alarm_fired"] = float(self.alarm.result.fired)
        return (data, metrics | grpo_metrics | {"consumed_samples": self.consumed_samples},
                self.timer.consume_durations())

    def run_validation(self):
        metrics = super().run_validation()
        if self.coreward.validation_reward.name == "ground_truth":  # the mean is accuracy
            self._observe({"step": self.step, "heldout_accuracy": metrics["rewards"]})
        return metrics

    # -- the collapse alarm ---------------------------------------------------------------
    def _observe(self, row: dict[str, Any]) -> None:
        fired = self.alarm.observe(row)
        if not _is_rank_zero():
            return
        if self.alarm_history is not None:
            self.alarm_history.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.alarm_history, [row])
        if fired is not None:
            action = ("stopping after this step (coreward.alarm.stop=True)"
                      if self.coreward.alarm.stop else "continuing (coreward.alarm.stop=False)")
            log.warning("%s; %s", fired.summary(), action)

    def load_state_dict(self, state_dict):
        """Also cut the alarm's history back to the restored step (the steps after it are
        redone)."""
        super().load_state_dict(state_dict)
        step = int(state_dict["step"])
        self.alarm.truncate_after(step)
        if self.alarm_history is not None and _is_rank_zero():
            write_jsonl(self.alarm_history, self.alarm.rows)

    # -- checkpoints ----------------------------------------------------------------------
    def save(self, extra_candidates=None, is_train_end=False):
        super().save(extra_candidates, is_train_end=is_train_end)
        teacher = getattr(self.model, "teacher", None)
        if self.teacher_store is not None and teacher is not None \
                and parallel_state.get_data_parallel_rank() == 0:
            self.teacher_store.save(self.step, teacher.state,
                                    mcore_parallel_state.get_tensor_model_parallel_rank(),
                                    mcore_parallel_state.get_pipeline_model_parallel_rank())
        if torch.distributed.is_initialized():
            torch.distributed.barrier()


class StopOnAlarm:
    """NeMo-Aligner's run timer, also "finished" once the collapse alarm says stop.

    ``fit`` asks the timer after every step; a finished timer makes it validate, save and
    return, which is the clean early stop. Rank 0 decides and broadcasts, so every rank
    leaves the loop at the same step.
    """

    def __init__(self, timer: Any, watch: AlarmWatch) -> None:
        self.timer, self.watch = timer, watch

    def start_time(self) -> None:
        self.timer.start_time()

    def is_finished(self) -> bool:
        stop = torch.tensor([self.watch.stop], dtype=torch.bool, device=_device())
        if torch.distributed.is_initialized():
            torch.distributed.broadcast(stop, 0)
        return bool(self.timer.is_finished()) or bool(stop.item())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.timer, name)

    def __repr__(self) -> str:
        return f"StopOnAlarm({self.timer!r})"


def pad_tokens(tokens: torch.Tensor, multiple: int, pad_id: int) -> torch.Tensor:
    """Right-pad (B, S) tokens with ``pad_id`` to S' = round_up(S, multiple) columns. The
    mask comes from prompt and response lengths, so the added positions are never in the
    loss; their log-probs (of pad tokens) are computed and ignored."""
    width = round_up(tokens.size(1), multiple)
    return torch.nn.functional.pad(tokens, (0, width - tokens.size(1)), value=pad_id)


def training_seq_len_multiple(model_cfg: Any, fixed_length: int | None) -> int:
    """The multiple every training sequence is padded to (``aligner.layout``), from the
    model config (fp8, sequence_parallel, tensor_model_parallel_size); refuses a fixed
    ``rollout_batch_seq_length`` that is not a multiple of it."""
    multiple = seq_len_multiple(fp8=bool(model_cfg.get("fp8", False)),
                                sequence_parallel=bool(model_cfg.get("sequence_parallel", False)),
                                tp=int(model_cfg.get("tensor_model_parallel_size", 1)))
    if fixed_length is not None and fixed_length % multiple:
        raise ValueError(
            f"trainer.grpo.rollout_batch_seq_length ({fixed_length}) must be a multiple of "
            f"{multiple} (FP8 and sequence parallelism need it): use "
            f"{round_up(fixed_length, multiple)}")
    return multiple


def _gather_rows(local: torch.Tensor, num_rows: int, global_batch_size: int) -> torch.Tensor:
    """(num_rows,) in the gathered batch's order, from each DP rank's values (n,) of its
    ``shard_rows``."""
    size = parallel_state.get_data_parallel_world_size()
    parts = [local]
    if size > 1:
        parts = [torch.empty_like(local) for _ in range(size)]
        torch.distributed.all_gather(parts, local.contiguous(),
                                     group=mcore_parallel_state.get_data_parallel_group())
    out = torch.empty(num_rows, dtype=local.dtype, device=local.device)
    for rank, part in enumerate(parts):
        out[shard_rows(num_rows, rank, size, global_batch_size).to(local.device)] = part
    return out


def _generation_mismatch(generation: torch.Tensor, trainer: torch.Tensor, mask: torch.Tensor
                         ) -> float:
    """Mean |generation log-prob - trainer log-prob| of the sampled response tokens over
    the whole step (all DP ranks), as NeMo-RL and verl log it: ~0 when the engine samples
    from the model being trained; an engine built without, e.g., the QKV biases or the RoPE
    scaling shows at once. ``generation`` (B, T') is aligned with ``trainer`` (B, T)
    (position t: the token at t + 1) and cut or zero-padded to T."""
    width = trainer.size(1)
    generation = torch.nn.functional.pad(generation[:, :width].to(trainer),
                                         (0, max(width - generation.size(1), 0)))
    sums = torch.stack([weighted_sum((generation - trainer).abs(), mask, torch.ones_like(trainer)),
                        (mask != 0).sum().to(trainer.dtype)]).double()
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(sums, group=mcore_parallel_state.get_data_parallel_group())
    return float(sums[0] / sums[1].clamp(min=1))


def _device() -> str:
    dist = torch.distributed
    nccl = dist.is_initialized() and dist.get_backend() == "nccl"
    return f"cuda:{torch.cuda.current_device()}" if nccl else "cpu"


def _is_rank_zero() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
