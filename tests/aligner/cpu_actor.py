"""A duck-typed CPU stand-in for ``MegatronGPTCoRewardActorModel``: the methods the trainer
calls (hooks doc, "Actor surface"), on a tiny torch policy, with scripted generations.

Why a stand-in: the real actor cannot be built on CPU (``MegatronGPTModel.__init__`` needs a
Lightning trainer with NeMo's DDP strategy and CUDA, and its generation TensorRT-LLM or
NeMo's CUDA sampling loop). Its training loss path does run on CPU and is tested with the
real methods in test_actor_loss_megatron.py; this stand-in computes the same loss
(``aligner.loss.actor_loss``, scaled by the DP size, gradients averaged over DP).
``Recorder`` stands in for exp_manager's loggers, checkpoint callback and run timer, which
need a Lightning trainer.

Generation is scripted (answers drawn per (pair, side) from a seeded generator) because the
test checks the data path, not the model; log-probs, the loss and the optimiser are real.
"""
from __future__ import annotations

from typing import Any

import torch

from nemo_coreward.aligner.actor import copy_twin_keys
from nemo_coreward.aligner.loss import actor_loss
from nemo_coreward.aligner.teacher import EngineWeights, TeacherRollouts, teacher_from_state
from nemo_coreward.rl import LossConfig

from .helpers import EOS, CharTokenizer

VOCAB = 260


class TinyPolicy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(VOCAB, 8)
        self.out = torch.nn.Linear(8, VOCAB)

    def logprobs(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, S-1): log p(token t+1 | token t)."""
        logits = self.out(self.emb(tokens[:, :-1])).log_softmax(-1)
        return logits.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def fingerprint(state) -> float:
    """A fixed random linear functional of the weights: averaging weights averages it."""
    flat = torch.cat([v.detach().double().flatten() for v in state.values()])
    probe = torch.randn(flat.numel(), generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    return float(flat @ probe)


class CpuActor:
    """``keyed``: each answer is drawn from (seed, pair, side, how often that (pair, side)
    was generated), so runs with different data-parallel layouts generate the same rollouts;
    otherwise from one sequential generator (``generator``, whose state a resumed run
    restores). Gradients are averaged over Megatron-core's DP group after backward, as
    Megatron's DDP and NeMo's optimisers do. Policy rollouts carry ``generation_logprobs``
    from the "engine": a copy of the weights taken at each refit, without the output bias
    when ``engine_drops_bias`` (as an engine built without the model's QKV biases)."""

    def __init__(self, loss: LossConfig, seed: int = 0, keyed: bool = False,
                 engine_drops_bias: bool = False) -> None:
        self.tokenizer = CharTokenizer()
        self.model = TinyPolicy()
        self.init_policy_state_dict = teacher_from_state(self.model.state_dict())
        self.coreward_loss = loss
        self.generator = torch.Generator().manual_seed(seed)
        self.seed, self.keyed = seed, keyed
        self.draws: dict[tuple[int, int], int] = {}
        self.calls: list[str] = []
        self.loss_batches: list[dict[str, torch.Tensor]] = []
        self.generated: list[tuple[int, int, str, str]] = []  # (pair, side, who, text)
        self.teacher: TeacherRollouts | None = None
        self.engine_weights = EngineWeights()
        self.weights_at_refit: list[float] = []
        self.engine_drops_bias = engine_drops_bias
        self.engine = TinyPolicy()

    def set_coreward_loss(self, loss: LossConfig) -> None:
        self.coreward_loss = loss

    # -- generation
    def prepare_for_inference(self):
        self.calls.append("prepare_for_inference")
        self._refit()
        self.engine_weights.mark("policy")

    def finish_inference(self):
        self.calls.append("finish_inference")

    def _refit(self):
        self.weights_at_refit.append(fingerprint(self.model.state_dict()))
        self.engine.load_state_dict(self.model.state_dict())
        if self.engine_drops_bias:
            with torch.no_grad():
                self.engine.out.bias.zero_()

    def _generate(self, batch, who):
        texts = []
        for pair, side in zip(batch["pair_id"].tolist(), batch["side"].tolist()):
            k = int(torch.randint(0, 4, (1,), generator=self._generator_for(pair, side, who)))
            texts.append("hmm" if k == 3 else f"\\boxed{{{pair % 2 + k}}}")
            self.generated.append((pair, side, who, texts[-1]))
        ids = [self.tokenizer.text_to_ids(t) + [EOS] for t in texts]
        lengths = batch["length"]
        width = int(lengths.max()) + max(len(i) for i in ids)
        tokens = torch.full((len(ids), width), EOS, dtype=torch.long)
        for r, (n, extra) in enumerate(zip(lengths.tolist(), ids)):
            tokens[r, :n] = batch["text"][r, :n]
            tokens[r, n:n + len(extra)] = torch.tensor(extra)
        out = {"response_tokens": tokens, "prompt_lengths": lengths.clone(),
               "response_lengths": lengths + torch.tensor([len(i) for i in ids]),
               "is_end": torch.ones(len(ids), dtype=torch.bool)}
        if who == "policy":
            with torch.no_grad():
                out["generation_logprobs"] = self.engine.logprobs(tokens)
        return copy_twin_keys(batch, out)

    def _generator_for(self, pair: int, side: int, who: str) -> torch.Generator:
        if not self.keyed:
            return self.generator
        key = (pair, side if who == "policy" else side + 100)
        count = self.draws[key] = self.draws.get(key, -1) + 1
        return torch.Generator().manual_seed(hash((self.seed, *key, count)) % 2**62)

    def infer(self, batch):
        self.calls.append("infer")
        if self.engine_weights.policy_refit_needed:
            self._refit()
            self.engine_weights.mark("policy")
        return self._generate(batch, "policy")

    def teacher_rollouts(self, batches, num_rollouts, step, total_steps):
        self.calls.append("teacher_rollouts")
        return self.teacher.rollouts(_Hooks(self), batches, num_rollouts, step, total_steps)

    @torch.no_grad()
    def get_inference_log_probs(self, response_tokens, forward_micro_batch_size=None):
        return self.model.logprobs(response_tokens)

    @torch.no_grad()
    def get_init_policy_logprobs(self, response_tokens):
        self.calls.append("init_logprobs")
        policy = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.init_policy_state_dict)
        try:
            return self.model.logprobs(response_tokens)
        finally:
            self.model.load_state_dict(policy)

    # -- training
    def prepare_for_training(self):
        self.calls.append("prepare_for_training")

    def finish_training(self):
        self.calls.append("finish_training")

    def prepare_for_training_step(self):
        pass

    def finish_training_step(self):
        pass

    def get_loss_and_metrics(self, batch, forward_only):
        """One micro-batch per optimiser step; the loss is scaled by the DP size and the
        gradients averaged over DP, as the Megatron actor does (``aligner.actor``)."""
        from megatron.core import parallel_state

        self.loss_batches.append({k: v.clone() for k, v in batch.items()})
        dp = parallel_state.get_data_parallel_world_size()
        loss, metrics = actor_loss(self.model.logprobs(batch["response_tokens"]), batch,
                                   self.coreward_loss, scale=dp)
        if not forward_only:
            loss.backward()
            if dp > 1:
                for param in self.model.parameters():
                    torch.distributed.all_reduce(param.grad,
                                                 group=parallel_state.get_data_parallel_group())
                    param.grad /= dp
        return float(loss.detach()), {k: float(v) for k, v in metrics.items()}


class _Hooks:
    def __init__(self, actor: CpuActor) -> None:
        self.actor = actor

    def policy_state_to_cpu(self):
        self.actor.calls.append("policy_to_cpu")
        return {k: v.clone() for k, v in self.actor.model.state_dict().items()}

    def load_weights(self, state):
        self.actor.calls.append("load_weights")
        self.actor.model.load_state_dict(state)

    def refit_engine(self):
        self.actor.calls.append("refit_teacher")
        self.actor._refit()

    def generate(self, batch):
        self.actor.calls.append("teacher_infer")
        return self.actor._generate(batch, "teacher")


class Recorder:
    """Logger, checkpoint callback and run timer in one: records what the trainer reports.
    ``time_limit_after``: the timer says "finished" after that many steps (a job's time
    limit, as ``exp_manager.max_time_per_run`` does)."""

    def __init__(self, time_limit_after: int | None = None) -> None:
        self.time_limit_after = time_limit_after
        self.timer_checks = 0
        self.metrics: list[tuple[str, int, dict[str, Any]]] = []
        self.tables: list[Any] = []
        self.saves: list[dict[str, Any]] = []

    def log_metrics(self, metrics, step, prefix=""):
        self.metrics.append((prefix, step, dict(metrics)))

    def log_table(self, key, dataframe, step):
        self.tables.append((key, step, dataframe.copy()))

    def finalize(self):
        pass

    def custom_save(self, monitor_candidates, is_train_end):
        self.saves.append(dict(monitor_candidates))

    def start_time(self):
        pass

    def is_finished(self):
        self.timer_checks += 1
        return self.time_limit_after is not None and self.timer_checks >= self.time_limit_after
