"""Data parallelism trains each rollout once, on-policy, and equals one rank on the whole batch.

NeMo-Aligner 0.7.0's ``ReinforceRolloutBatch.chunk`` returns the whole gathered batch on
every DP rank, and ``fit`` cuts each rank's rows into optimiser steps of
global_batch_size / DP: with DP = 2 both replicas trained every row, in two optimiser steps
per rollout batch, the second off-policy. Here the real ``ReinforceTrainer.fit`` drives
CoRewardGRPOTrainer in two gloo processes (DP = 2) and in one (DP = 1) with the CPU actor
(cpu_actor.py: a tiny torch policy standing in for the Megatron actor, which needs
CUDA; its gradients are averaged over DP after backward as Megatron's DDP does), on the
same rollouts, and compares what each trained.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("nemo_aligner")
pytest.importorskip("megatron.core")

from .cpu_actor import TinyPolicy  # noqa: E402

WORKER = Path(__file__).with_name("_mp_fit_worker.py")
ROOT = Path(__file__).resolve().parents[2]
ROLLOUTS = 4 * 2 * 3  # pairs per step x sides x rollouts per prompt (fit_setup)

CONFIGS = [
    # the paper's layout: KL as a loss term, one optimiser step per rollout batch
    {"coreward": {"loss": {"agg": "side-token-mean-sum"}}},
    # KL in the reward (per-response KL gathered over DP), two optimiser steps per batch
    {"coreward": {"kl": {"mode": "reward"}, "loss": {"agg": "token-mean", "ppo_clip": True,
                                                     "truncated": "keep"}},
     "global_batch_size": ROLLOUTS // 2},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world: int, out: Path) -> list[subprocess.Popen]:
    out.mkdir(parents=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    port = _free_port()
    return [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), str(port),
                              str(out), json.dumps(CONFIGS)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for r in range(world)]


def _collect(procs: list[subprocess.Popen], out: Path) -> list[list[dict]]:
    texts = [p.communicate(timeout=600)[0] for p in procs]
    for rank, (p, text) in enumerate(zip(procs, texts)):
        assert p.returncode == 0, f"rank {rank} failed:\n{text[-4000:]}"
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(len(procs))]


def _rows(*batches: dict) -> list[tuple]:
    """The rows trained in one optimiser step, as (tokens, advantage, loss weights), sorted."""
    rows = []
    for batch in batches:
        adv = (torch.tensor(batch["rewards_with_kl"]) - torch.tensor(batch["baseline"])).tolist()
        rows += [(tuple(t), a, w) for t, a, w in zip(batch["response_tokens"], adv,
                                                      batch["loss_weights"])]
    return sorted(rows, key=lambda r: (r[0], round(r[1], 3)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("dp")
    two, one = _launch(2, base / "dp2"), _launch(1, base / "dp1")
    return _collect(two, base / "dp2"), _collect(one, base / "dp1")[0]


@pytest.mark.slow
@pytest.mark.parametrize("which", range(len(CONFIGS)))
def test_each_rollout_is_trained_once_and_the_update_equals_one_rank(runs, which):
    (rank0, rank1), single = (r[which] for r in runs[0]), runs[1][which]
    steps_per_batch = ROLLOUTS // CONFIGS[which].get("global_batch_size", ROLLOUTS)
    # two rollout batches: steps_per_batch optimiser steps each, on every layout
    for run in (rank0, rank1, single):
        assert len(run["loss_batches"]) == len(run["optim_logs"]) == 2 * steps_per_batch
    for step in range(2 * steps_per_batch):
        both = _rows(rank0["loss_batches"][step], rank1["loss_batches"][step])
        one = _rows(single["loss_batches"][step])
        assert len(both) == len(one) == ROLLOUTS // steps_per_batch  # each row once
        # the same rows, advantages and weights (float noise of the KL aside)
        assert [r[0] for r in both] == [r[0] for r in one]
        assert [r[1] for r in both] == pytest.approx([r[1] for r in one], abs=1e-4)
        for (_, _, mine), (_, _, theirs) in zip(both, one):
            assert mine == pytest.approx(theirs, abs=1e-7)
        # the weights of an optimiser step add up to its aggregate's normaliser
        total = sum(sum(w) for _, _, w in both)
        assert total == pytest.approx(2.0 if which == 0 else 1.0, rel=1e-5)
    for key, value in single["weights"].items():
        torch.testing.assert_close(torch.tensor(rank0["weights"][key]), torch.tensor(value),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.tensor(rank1["weights"][key]), torch.tensor(value),
                                   rtol=1e-5, atol=1e-6)
    start = TinyPolicy().state_dict()
    assert any(not torch.equal(torch.tensor(v), start[k]) for k, v in single["weights"].items())
