"""A tiny Megatron-core GPTModel and the real Co-Reward actor's training methods on CPU, shared
by test_actor_loss_megatron.py and its data-parallel worker (_mp_megatron_loss_worker.py).

The actor object is made with ``__new__`` and given the attributes its methods read:
``MegatronGPTModel.__init__`` needs a Lightning trainer with NeMo's DDP strategy and CUDA, so
the full model cannot be built here. CPU shims at the test boundary only
(``megatron_cpu_shims``): ``Tensor.cuda`` is the identity (the loss function moves its batch
to the GPU), the current CUDA device is the CPU (Megatron's GlobalMemoryBuffer allocates the
attention scores there), Megatron's no-pipelining schedule allocates its token counter with
``device="cuda"``, and the CUDA RNG tracker's ``fork`` (dropout under tensor parallelism;
dropout is 0 here) is a no-op.
"""
from __future__ import annotations

import contextlib
import types
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import OmegaConf

from nemo_coreward.rl import LossConfig, compute_policy_loss, token_weights

S, VOCAB = 12, 64


def megatron_cpu_shims(setattr_: Callable[[Any, str, Any], None]) -> None:
    from megatron.core import tensor_parallel
    from megatron.core.pipeline_parallel import schedules

    setattr_(torch.Tensor, "cuda", lambda self, *a, **k: self)
    setattr_(torch.cuda, "current_device", lambda: "cpu")
    cpu_torch = types.SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch)
                                         if not k.startswith("__")})
    cpu_torch.zeros = lambda *a, device=None, **k: torch.zeros(*a, **k)
    setattr_(schedules, "torch", cpu_torch)
    setattr_(tensor_parallel.get_cuda_rng_tracker(), "fork",
             lambda *a, **k: contextlib.nullcontext())


def tiny_gpt():
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.transformer_config import TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig(num_layers=1, hidden_size=32, num_attention_heads=4,
                            use_cpu_initialization=True, hidden_dropout=0.0,
                            attention_dropout=0.0, pipeline_dtype=torch.float32)
    return GPTModel(config=cfg, transformer_layer_spec=get_gpt_layer_local_spec(),
                    vocab_size=VOCAB, max_sequence_length=S)


def actor_on(model, loss_cfg: LossConfig):
    """The real ``MegatronGPTCoRewardActorModel`` class around ``model`` (module docstring)."""
    from nemo_coreward.aligner.actor import MegatronGPTCoRewardActorModel

    actor = MegatronGPTCoRewardActorModel.__new__(MegatronGPTCoRewardActorModel)
    torch.nn.Module.__init__(actor)
    actor.model = model
    actor.cfg = OmegaConf.create({"micro_batch_size": 1, "data": {}})
    actor.tokenizer = types.SimpleNamespace(eos_id=0)
    actor.with_distributed_adam = False
    actor.use_mcore_dist_optim = False
    actor.coreward_loss = loss_cfg
    return actor


def global_batch(rows: int, agg: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(batch, sides): ``rows`` sequences of S tokens with response lengths that differ (so
    the aggregations differ), two sides, loss weights of ``agg`` over all rows."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, VOCAB, (rows, S), generator=g)
    prompt = torch.randint(2, 5, (rows,), generator=g)
    ends = torch.minimum(prompt + 1 + torch.randint(0, 9, (rows,), generator=g),
                         torch.tensor(S))
    positions = torch.arange(S - 1)[None, :]
    mask = ((positions >= prompt[:, None] - 1) & (positions < ends[:, None] - 1)).float()
    sides = torch.arange(rows) % 2
    return {
        "response_tokens": tokens, "mask": mask,
        "loss_weights": token_weights(mask, agg, sides).float(),
        "rewards_with_kl": torch.rand(rows, generator=g),
        "baseline": torch.full((rows,), 0.5),
        "is_end": torch.ones(rows, dtype=torch.bool),
        "init_logprobs": -torch.rand(rows, S - 1, generator=g) - 3.0,
    }, sides


def full_batch_loss(model, batch, sides, loss_cfg: LossConfig) -> float:
    """One autograd pass of the aggregate over all rows, no micro-batches (grads into model)."""
    from nemo_aligner.utils.distributed import from_parallel_logits_to_logprobs

    tokens = batch["response_tokens"]
    rows = tokens.size(0)
    causal = torch.tril(torch.ones(S, S)).lt(0.5)[None, None].expand(rows, 1, S, S)
    logits = model(tokens, torch.arange(S).expand(rows, -1), causal)
    logp = from_parallel_logits_to_logprobs(vocab_parallel_logits=logits, target=tokens,
                                            higher_stability=True)
    adv = batch["rewards_with_kl"] - batch["baseline"]
    loss, _ = compute_policy_loss(logp, logp.detach(), batch["init_logprobs"], adv,
                                  batch["mask"], loss_cfg,
                                  weights=token_weights(batch["mask"], loss_cfg.agg, sides))
    loss.backward()
    return float(loss)
