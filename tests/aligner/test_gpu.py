"""What only a GPU shows: Megatron-core's GPTModel on the transformer-engine-free local spec
and NCCL collectives, with our loss on its real log-probs. Skipped without CUDA."""
from __future__ import annotations

import os
import socket

import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def nccl_one_rank():
    pytest.importorskip("megatron.core")
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("LOCAL_RANK", "0")
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
    ps.initialize_model_parallel(1, 1)
    model_parallel_cuda_manual_seed(0)
    yield
    ps.destroy_model_parallel()
    dist.destroy_process_group()


def test_local_spec_gpt_logprobs_and_grpo_loss_backward(nccl_one_rank):
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.transformer_config import TransformerConfig

    from nemo_coreward.aligner.loss import actor_loss
    from nemo_coreward.rl import LossConfig

    cfg = TransformerConfig(num_layers=2, hidden_size=64, num_attention_heads=4,
                            use_cpu_initialization=True, pipeline_dtype=torch.float32)
    model = GPTModel(config=cfg, transformer_layer_spec=get_gpt_layer_local_spec(),
                     vocab_size=128, max_sequence_length=32).cuda()
    tokens = torch.randint(0, 128, (4, 16), device="cuda")
    position_ids = torch.arange(16, device="cuda").expand(4, -1)
    mask = torch.tril(torch.ones(16, 16, device="cuda", dtype=torch.bool)).logical_not()[None, None]
    logits = model(tokens, position_ids, mask)
    logprobs = logits[:, :-1].float().log_softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    batch = {"mask": torch.ones_like(logprobs),
             "rewards_with_kl": torch.tensor([1., 0., 1., 0.], device="cuda"),
             "baseline": torch.full((4,), 0.5, device="cuda"),
             "init_logprobs": logprobs.detach() - 0.1}
    loss, metrics = actor_loss(logprobs, batch, LossConfig(kl_coef=0.005))
    loss.backward()
    assert torch.isfinite(loss) and float(metrics["kl_loss"]) > 0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_nccl_object_collectives_carry_rewards(nccl_one_rank):
    from nemo_coreward.aligner.scoring import ParallelLayout, RewardRouter
    from nemo_coreward.reward import RewardConfig
    from nemo_coreward.server import LocalScorer

    router = RewardRouter(LocalScorer(), ParallelLayout.from_megatron())
    pairs = torch.tensor([0, 0, 1, 1])
    sides = torch.tensor([0, 1, 0, 1])
    texts = ["\\boxed{1}", "\\boxed{1}", "\\boxed{2}", "\\boxed{3}"]
    rewards, _ = router.score(RewardConfig(), pairs, sides, lambda rows: [texts[r] for r in rows])
    assert rewards.tolist() == [1.0, 1.0, 0.0, 0.0]
