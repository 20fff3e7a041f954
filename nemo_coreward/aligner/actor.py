"""The Co-Reward actor: NeMo-Aligner's REINFORCE actor plus twin keys, our loss and a teacher.

``MegatronGPTCoRewardActorModel`` changes three things in
``MegatronGPTReinforceActorModel`` (NeMo-Aligner 0.7.0) and inherits the rest (Megatron
TP/PP, TensorRT-LLM generation and refit, Adam offload, reference log-probs):

- ``infer`` copies ``pair_id`` and ``side`` from the collated batch into the rollout dict;
  1-D keys present in every rollout survive NeMo-Aligner's stacking, DP gathering and
  chunking, so the trainer can group rollouts by (pair, side) instead of by prompt tokens.
- once the trainer has set the loss (``set_coreward_loss``, always done by
  ``CoRewardGRPOTrainer``), the Megatron loss function computes
  ``nemo_coreward.aligner.loss.actor_loss`` with the trainer's per-token ``loss_weights``,
  scaled by micro-batches x DP size: Megatron-core's ``forward_step_calc_loss`` divides a
  two-output loss by ``num_microbatches`` before backward, and every NeMo gradient
  reduction averages over the DP group (``MegatronBaseModel.allreduce_gradients`` divides
  by the DP size; apex's distributed Adam and Megatron-core's DDP average as well), so
  the scale makes the step's gradient that of the configured aggregate over its global
  batch. Context parallelism (which also multiplies the loss by its size) is not
  supported. Without a loss set, NeMo-Aligner's own REINFORCE loss runs.
- ``infer`` without TensorRT-LLM samples through NeMo's own sampling loop with
  ``compute_logprob`` on (``generate_with_logprobs``), so every rollout carries the
  engine's log-probs of its tokens as ``generation_logprobs`` and the trainer logs their
  gap to its own (``coreward_gen_logprob_mismatch``). Same tokens: the flag only adds a
  log-softmax and a gather per generated token.
- ``teacher_rollouts`` runs the Co-rewarding-II teacher pass (``aligner.teacher``): the
  teacher is the CPU state dict in ``init_policy_state_dict``, and the generation engine
  is refit with it and, before any later policy generation, with the policy again.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from megatron.core import parallel_state as mcore_parallel_state
from megatron.core.num_microbatches_calculator import get_num_microbatches
from megatron.core.pipeline_parallel.schedules import get_forward_backward_func
from nemo.collections.nlp.modules.common.megatron.utils import (
    average_losses_across_data_parallel_group,
    get_iterator_k_split,
)
from nemo.collections.nlp.parts.utils_funcs import get_last_rank
from nemo_aligner.models.nlp.gpt.megatron_gpt_reinforce_actor import MegatronGPTReinforceActorModel
from nemo_aligner.utils import parallel_state
from nemo_aligner.utils.distributed import (
    broadcast_2d_tensor_within_pp,
    from_parallel_logits_to_logprobs,
)
from nemo_aligner.utils.train_utils import set_sync_funcs
from nemo_aligner.utils.utils import retrieve_model_state_dict_in_cpu, swap_dict

from nemo_coreward.aligner.loss import LOSS_METRICS, actor_loss
from nemo_coreward.aligner.teacher import EngineWeights, TeacherRollouts
from nemo_coreward.rl import LossConfig

TWIN_KEYS = ("pair_id", "side")
# Keys the last pipeline stage needs for our loss, on top of NeMo-Aligner's.
LOSS_KEYS = ("response_tokens", "baseline", "mask", "rewards_with_kl", "is_end",
             "loss_weights", "prev_logprobs", "init_logprobs")

__all__ = ["MegatronGPTCoRewardActorModel", "copy_twin_keys", "generate_with_logprobs",
           "infer_keeping_logprobs"]


def copy_twin_keys(batch: Mapping[str, Any], rollout: dict[str, Any]) -> dict[str, Any]:
    """Add the batch's ``pair_id``/``side`` rows to a rollout dict, on the rollout's device."""
    device = rollout["response_tokens"].device
    for key in TWIN_KEYS:
        if key not in batch:
            raise KeyError(f"rollout batch has no {key!r}: "
                           "use nemo_coreward.aligner.data.twin_collate")
        rollout[key] = batch[key].to(device)
    return rollout


def generate_with_logprobs(model: Any, inputs: Any, length_params: Mapping[str, Any],
                           sampling_params: Mapping[str, Any], strategy: Any = None) -> Any:
    """NeMo's sampling call with the per-token log-probs of what it samples.

    Contract (NeMo 2.2.0 and 2.4.1, identical in ``text_generation_utils``):
    ``MegatronGPTModel.generate`` ends in ``megatron_gpt_generate``, whose sampling path is
    one call of ``text_generation_utils.generate`` with exactly the arguments below but
    ``compute_logprob``. ``megatron_gpt_generate`` cannot be asked for log-probs itself: with
    ``compute_logprob`` it scores the prompt greedily for one token instead of sampling.
    With the flag, ``generate`` returns ``logprob`` (B, L - 1): column j is the log-softmax
    at position j of token j + 1, over the full vocabulary at temperature 1, the same
    alignment as the trainer's log-probs. The sampling is unchanged: the flag only makes
    ``sample_sequence_batch`` keep the gathered logits and gather the chosen tokens'
    log-probabilities. One caveat read there: the sampler scales and masks the last
    position's logits in place after ``logits.float()``, which copies bf16/fp16 logits but
    aliases fp32 ones, so with fp32 logits the later columns would be the tempered, top-k/p
    masked distribution; ``MegatronGPTCoRewardActorModel`` asks only in bf16/fp16 runs.
    Read in ``megatron_gpt_generate`` and ``sample_sequence_batch`` of both versions.
    """
    from nemo.collections.nlp.modules.common import text_generation_utils

    return text_generation_utils.generate(
        model,
        inputs=inputs,
        tokens_to_generate=length_params["max_length"],
        all_probs=sampling_params["all_probs"],
        compute_logprob=True,
        temperature=sampling_params["temperature"],
        add_BOS=sampling_params["add_BOS"],
        top_k=sampling_params["top_k"],
        top_p=sampling_params["top_p"],
        greedy=sampling_params["use_greedy"],
        repetition_penalty=sampling_params["repetition_penalty"],
        end_strings=sampling_params["end_strings"],
        min_tokens_to_generate=length_params["min_length"],
        **({} if strategy is None else {"strategy": strategy}),
    )


def infer_keeping_logprobs(actor: Any, infer: Any) -> dict[str, Any]:
    """``infer()`` (NeMo-Aligner's ``MegatronGPTReinforceActorModel.infer`` on ``actor``)
    sampling through ``generate_with_logprobs``; its rollout gains ``generation_logprobs``
    (B, L - 1) float32, broadcast within the pipeline like the tokens.

    Contract (NeMo-Aligner 0.7.0): that ``infer`` calls ``self.generate(inputs=,
    length_params=, sampling_params=, strategy=)`` once and reads only ``token_ids`` of its
    output; an instance attribute shadows the method for that one call.
    """
    kept: dict[str, Any] = {}

    def generate(inputs, length_params, sampling_params=None, *, strategy=None):
        output = generate_with_logprobs(actor, inputs, length_params, sampling_params, strategy)
        kept["logprob"] = output["logprob"] if output else None
        return output

    actor.generate = generate
    try:
        rollout = infer()
    finally:
        del actor.generate
    logprob = kept.get("logprob")
    rollout["generation_logprobs"] = broadcast_2d_tensor_within_pp(
        None if logprob is None else logprob.float(), dtype=torch.float32)
    return rollout


def low_precision_logits(precision: Any) -> bool:
    """Whether a Lightning precision setting runs the model in bf16/fp16 (see
    ``generate_with_logprobs``: only then are NeMo's generation log-probs untempered)."""
    return str(precision).split("-")[0] in ("bf16", "16", "fp16")


class MegatronGPTCoRewardActorModel(MegatronGPTReinforceActorModel):
    """See the module docstring. ``coreward_loss`` and ``teacher`` are set by the entry
    script after the model is restored (they are not part of the .nemo config)."""

    def __init__(self, cfg, trainer) -> None:
        super().__init__(cfg, trainer=trainer)
        self.coreward_loss: LossConfig | None = None
        self.teacher: TeacherRollouts | None = None
        self.engine_weights = EngineWeights()
        # The engine's log-probs ride in the rollouts (the mismatch metric); see infer.
        self.generation_logprobs = True

    # -- configuration --------------------------------------------------------------------
    def set_coreward_loss(self, loss: LossConfig | None) -> None:
        self.coreward_loss = loss

    def set_teacher(self, teacher: TeacherRollouts) -> None:
        """The teacher doubles as the KL reference: NeMo-Aligner swaps it in for ref log-probs."""
        teacher.engine = self.engine_weights
        self.teacher = teacher
        self.init_policy_state_dict = teacher.state

    # -- generation -----------------------------------------------------------------------
    def prepare_for_inference(self) -> None:
        super().prepare_for_inference()  # refits the engine with the policy weights
        self.engine_weights.mark("policy")

    @torch.no_grad()
    def infer(self, inference_batch):
        if self.use_trtllm_generation and self.engine_weights.policy_refit_needed:
            self.engine_weights.mark(None)
            self.trtllm_generate.refit(self.model)
            self.engine_weights.mark("policy")
        if (self.use_trtllm_generation or not self.generation_logprobs
                or not low_precision_logits(self.trainer.precision)):
            return copy_twin_keys(inference_batch, super().infer(inference_batch))
        rollout = infer_keeping_logprobs(
            self, lambda: super(MegatronGPTCoRewardActorModel, self).infer(inference_batch))
        return copy_twin_keys(inference_batch, rollout)

    @torch.no_grad()
    def teacher_rollouts(self, batches: Sequence[Mapping[str, Any]], num_rollouts: int,
                         step: int, total_steps: int) -> list[dict[str, Any]]:
        if self.teacher is None:
            raise RuntimeError("teacher_rollouts: no teacher set (coreward.reward needs one)")
        return self.teacher.rollouts(_ActorHooks(self), batches, num_rollouts, step, total_steps)

    # -- training -------------------------------------------------------------------------
    def get_actor_forward_output_and_loss_func(self):
        if self.coreward_loss is None:
            return super().get_actor_forward_output_and_loss_func()
        loss_cfg = self.coreward_loss

        def fwd_output_and_loss_func(data_iterator, model):
            batch = next(data_iterator)
            if parallel_state.get_pipeline_model_parallel_world_size() == 1:
                needed = set(batch)
            else:
                needed = {"attention_mask"}
                if parallel_state.is_pipeline_first_stage():
                    needed |= {"response_tokens", "position_ids"}
                if parallel_state.is_pipeline_last_stage():
                    needed |= set(LOSS_KEYS) & set(batch)
            batch = {k: v.cuda(non_blocking=True) if k in needed else None
                     for k, v in batch.items()}
            parallel_logits = model(batch["response_tokens"], batch["position_ids"],
                                    batch["attention_mask"], labels=None)

            def loss_func(logits):
                logprobs = from_parallel_logits_to_logprobs(
                    vocab_parallel_logits=logits, target=batch["response_tokens"],
                    higher_stability=True)
                loss, metrics = actor_loss(logprobs, batch, loss_cfg, scale=loss_scale())
                reduced = average_losses_across_data_parallel_group(
                    [metrics[k].to(logprobs.device) for k in LOSS_METRICS])
                return loss, dict(zip(LOSS_METRICS, reduced))

            return parallel_logits, loss_func

        return fwd_output_and_loss_func

    def get_loss_and_metrics(self, batch, forward_only):
        if self.coreward_loss is None:
            return super().get_loss_and_metrics(batch, forward_only)
        seq_length = batch["response_tokens"].size(1)
        attention_mask, _, position_ids = self.get_ltor_masks_and_position_ids(
            tokens=batch["response_tokens"])
        batch["attention_mask"], batch["position_ids"] = attention_mask, position_ids
        set_sync_funcs(self, forward_only)
        per_micro_batch = get_forward_backward_func()(
            forward_step_func=self.get_actor_forward_output_and_loss_func(),
            data_iterator=self._make_data_iterator_list(
                get_iterator_k_split(batch, get_num_microbatches())),
            model=self.model, num_microbatches=get_num_microbatches(),
            forward_only=forward_only, seq_length=seq_length,
            micro_batch_size=self.cfg.micro_batch_size)
        # Only the last pipeline stage computes the loss; it broadcasts the means to all.
        if per_micro_batch:
            means = torch.stack([torch.stack([m[k] for k in LOSS_METRICS]) for m in per_micro_batch]
                                ).mean(0)
        else:
            means = torch.zeros(len(LOSS_METRICS), device=torch.cuda.current_device())
        torch.distributed.broadcast(means, get_last_rank())
        metrics = dict(zip(LOSS_METRICS, means.cpu().tolist()))
        return metrics["loss"], metrics


def loss_scale() -> int:
    """Micro-batches x DP size: what Megatron-core and the DP gradient average divide by."""
    return get_num_microbatches() * mcore_parallel_state.get_data_parallel_world_size()


class _ActorHooks:
    """The teacher pass's view of the actor (``aligner.teacher.TeacherHooks``)."""

    def __init__(self, actor: MegatronGPTCoRewardActorModel) -> None:
        self.actor = actor

    def policy_state_to_cpu(self) -> dict[str, Any]:
        return retrieve_model_state_dict_in_cpu(self.actor,
                                                megatron_amp_O2=self.actor.megatron_amp_O2)

    def load_weights(self, state: Mapping[str, Any]) -> None:
        swap_dict(self.actor, state, offload_onto_cpu=False,
                  megatron_amp_O2=self.actor.megatron_amp_O2)

    def refit_engine(self) -> None:
        if self.actor.use_trtllm_generation:
            self.actor.trtllm_generate.refit(self.actor.model)

    def generate(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        # The parent's infer: no policy refit check, the engine holds the teacher on purpose.
        return copy_twin_keys(batch, MegatronGPTReinforceActorModel.infer(self.actor, batch))
