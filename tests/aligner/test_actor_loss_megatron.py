"""The Co-Reward actor's training loss through Megatron-core's real forward/backward schedule.

``MegatronGPTCoRewardActorModel.get_loss_and_metrics`` (the real method, with its real
``get_actor_forward_output_and_loss_func``) runs a tiny Megatron-core ``GPTModel`` (local,
non-Transformer-Engine spec) through ``get_forward_backward_func`` in micro-batches of one
sequence, and its gradients must equal one autograd pass of the configured aggregate over
the whole batch. Megatron divides every micro-batch's loss by the number of micro-batches,
so a per-micro-batch mean would instead train the mean of per-sequence means.

The actor object is made with ``__new__`` and given the attributes these methods read:
``MegatronGPTModel.__init__`` needs a Lightning trainer with NeMo's DDP strategy and CUDA,
so the full model cannot be built here. CPU shims at the test boundary only: ``Tensor.cuda``
is the identity (the loss function moves its batch to the GPU), the current CUDA device is
the CPU (Megatron's GlobalMemoryBuffer allocates the attention scores there), Megatron's no-pipelining
schedule allocates its token counter with ``device="cuda"``, and the CUDA RNG tracker's
``fork`` (dropout under tensor parallelism; dropout is 0 here) is a no-op.
"""
from __future__ import annotations

import contextlib
import types

import pytest
import torch

pytest.importorskip("nemo_aligner")
pytest.importorskip("megatron.core")

from omegaconf import OmegaConf  # noqa: E402

from nemo_coreward.rl import LossConfig, compute_policy_loss, token_weights  # noqa: E402

from .fit_setup import gloo_one_rank  # noqa: E402

B, S, VOCAB = 4, 12, 64


@pytest.fixture(scope="module")
def one_rank():
    with gloo_one_rank():
        yield


@pytest.fixture
def cpu_shims(monkeypatch):
    from megatron.core import tensor_parallel
    from megatron.core.pipeline_parallel import schedules

    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: "cpu")  # GlobalMemoryBuffer
    cpu_torch = types.SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch)
                                         if not k.startswith("__")})
    cpu_torch.zeros = lambda *a, device=None, **k: torch.zeros(*a, **k)
    monkeypatch.setattr(schedules, "torch", cpu_torch)
    tracker = tensor_parallel.get_cuda_rng_tracker()
    monkeypatch.setattr(tracker, "fork", lambda *a, **k: contextlib.nullcontext())


def _gpt():
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.transformer_config import TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig(num_layers=1, hidden_size=32, num_attention_heads=4,
                            use_cpu_initialization=True, hidden_dropout=0.0,
                            attention_dropout=0.0, pipeline_dtype=torch.float32)
    return GPTModel(config=cfg, transformer_layer_spec=get_gpt_layer_local_spec(),
                    vocab_size=VOCAB, max_sequence_length=S)


def _actor(model, loss_cfg):
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


def _batch(agg: str):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, VOCAB, (B, S), generator=g)
    prompt = torch.tensor([3, 2, 4, 3])
    ends = torch.tensor([12, 5, 9, 7])  # response lengths differ: the aggregations differ
    positions = torch.arange(S - 1)[None, :]
    mask = ((positions >= prompt[:, None] - 1) & (positions < ends[:, None] - 1)).float()
    sides = torch.tensor([0, 0, 1, 1])
    return {
        "response_tokens": tokens, "mask": mask,
        "loss_weights": token_weights(mask, agg, sides).float(),
        "rewards_with_kl": torch.tensor([1.0, 0.0, 1.0, 1.0]),
        "baseline": torch.tensor([0.25, 0.5, 0.0, 0.75]),
        "is_end": torch.ones(B, dtype=torch.bool),
        "init_logprobs": -torch.rand(B, S - 1, generator=g) - 3.0,
    }, sides


def _full_batch_reference(model, batch, sides, loss_cfg):
    """One autograd pass of the aggregate over all B rows, no micro-batches."""
    from nemo_aligner.utils.distributed import from_parallel_logits_to_logprobs

    tokens = batch["response_tokens"]
    causal = torch.tril(torch.ones(S, S)).lt(0.5)[None, None].expand(B, 1, S, S)
    logits = model(tokens, torch.arange(S).expand(B, -1), causal)
    logp = from_parallel_logits_to_logprobs(vocab_parallel_logits=logits, target=tokens,
                                            higher_stability=True)
    adv = batch["rewards_with_kl"] - batch["baseline"]
    loss, _ = compute_policy_loss(logp, logp.detach(), batch["init_logprobs"], adv,
                                  batch["mask"], loss_cfg,
                                  weights=token_weights(batch["mask"], loss_cfg.agg, sides))
    loss.backward()
    return float(loss)


@pytest.mark.parametrize("agg", ["token-mean", "side-token-mean-sum", "seq-mean-token-sum"])
def test_micro_batched_megatron_gradients_equal_the_full_batch_aggregate(one_rank, cpu_shims,
                                                                         agg):
    from nemo_aligner.utils.utils import configure_batch_sizes

    loss_cfg = LossConfig(kl_coef=0.05, agg=agg)
    model = _gpt()
    reference = _gpt()
    reference.load_state_dict(model.state_dict())
    batch, sides = _batch(agg)
    configure_batch_sizes(mbs=1, gbs=B, dp=1)  # 4 micro-batches of one sequence
    actor = _actor(model, loss_cfg)
    loss, metrics = actor.get_loss_and_metrics(dict(batch), forward_only=False)
    expected_loss = _full_batch_reference(reference, batch, sides, loss_cfg)

    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)
    grads = dict(model.named_parameters())
    checked = 0
    for name, ref_param in reference.named_parameters():
        if ref_param.grad is None:
            continue
        torch.testing.assert_close(grads[name].grad, ref_param.grad, rtol=1e-4, atol=1e-7)
        checked += 1
    assert checked > 5 and any(p.grad.abs().sum() > 0 for p in reference.parameters()
                               if p.grad is not None)
