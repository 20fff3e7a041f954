"""The Co-Reward actor's training loss through Megatron-core's real forward/backward schedule.

``MegatronGPTCoRewardActorModel.get_loss_and_metrics`` (the real method, with its real
``get_actor_forward_output_and_loss_func``) runs a tiny Megatron-core ``GPTModel`` (local,
non-Transformer-Engine spec) through ``get_forward_backward_func`` in micro-batches of one
sequence, and its gradients must equal one autograd pass of the configured aggregate over
the whole batch. Megatron divides every micro-batch's loss by the number of micro-batches,
so a per-micro-batch mean would instead train the mean of per-sequence means. With DP 2
(two gloo processes), after NeMo's own ``allreduce_gradients`` (which averages over DP),
each rank's gradients equal the full global batch's. Set-up and CPU shims:
megatron_setup.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("nemo_aligner")
pytest.importorskip("megatron.core")

from nemo_coreward.rl import LossConfig  # noqa: E402

from .fit_setup import gloo_one_rank  # noqa: E402
from .megatron_setup import actor_on, full_batch_loss, global_batch, megatron_cpu_shims, tiny_gpt  # noqa: E402

WORKER = Path(__file__).with_name("_mp_megatron_loss_worker.py")
ROOT = Path(__file__).resolve().parents[2]
AGGS = ["token-mean", "side-token-mean-sum", "seq-mean-token-sum"]


@pytest.fixture(scope="module")
def one_rank():
    with gloo_one_rank():
        yield


@pytest.mark.parametrize("agg", AGGS)
def test_micro_batched_megatron_gradients_equal_the_full_batch_aggregate(one_rank, monkeypatch,
                                                                         agg):
    from nemo_aligner.utils.utils import configure_batch_sizes

    megatron_cpu_shims(monkeypatch.setattr)
    loss_cfg = LossConfig(kl_coef=0.05, agg=agg)
    model, reference = tiny_gpt(), tiny_gpt()
    reference.load_state_dict(model.state_dict())
    batch, sides = global_batch(4, agg)
    configure_batch_sizes(mbs=1, gbs=4, dp=1)  # 4 micro-batches of one sequence
    loss, metrics = actor_on(model, loss_cfg).get_loss_and_metrics(dict(batch),
                                                                   forward_only=False)
    expected_loss = full_batch_loss(reference, batch, sides, loss_cfg)

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


@pytest.mark.slow
def test_two_dp_ranks_after_nemos_gradient_average_equal_the_global_batch(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), "2", str(port),
                               str(tmp_path), json.dumps(AGGS)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    texts = [p.communicate(timeout=600)[0] for p in procs]
    for rank, (p, text) in enumerate(zip(procs, texts)):
        assert p.returncode == 0, f"rank {rank} failed:\n{text[-4000:]}"
    for rank in range(2):
        results = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for agg, result in zip(AGGS, results):
            assert result["loss"] == pytest.approx(result["expected_loss"], rel=1e-5), agg
            assert result["checked"] > 5 and result["grad_norm"] > 0, agg
            assert result["max_rel_grad_error"] < 1e-4, agg
