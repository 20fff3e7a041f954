"""Scoring under Megatron-core parallel_state on gloo, several processes.

Shows: only the model-parallel source of each DP rank sends a scoring request; requests
hold whole pairs (both sides, and the teacher's rollouts on them) even when the twins were
generated on different DP ranks; every rank of every model-parallel group ends with every
reward, equal to scoring the whole batch at once.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_coreward.aligner.scoring import SHARD_MEAN_METRICS
from nemo_coreward.reward import RewardConfig, score_rollouts

from .helpers import records

pytest.importorskip("megatron.core.parallel_state")
WORKER = Path(__file__).with_name("_mp_scoring_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(world: int, tp: int, pp: int, tmp_path: Path) -> list[dict]:
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), str(tp), str(pp),
                               str(port), str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(world)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for rank, (p, text) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{text[-3000:]}"
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


def _check(infos: list[dict], dp: int) -> None:
    ref = infos[0]
    truth = {p: str(p % 3 + 1) for p in range(8)}
    policy = [tuple(r) for r in ref["policy_rows"]]
    teacher = [tuple(r) for r in ref["teacher_rows"]]
    expected = {
        "co_reward": score_rollouts(records(policy, truth), RewardConfig()),
        "co_rewarding_combined": score_rollouts(records(policy, truth),
                                                RewardConfig(name="co_rewarding_combined"),
                                                teacher=records(teacher, truth)),
    }
    senders = [i for i in infos if i["calls"]]
    assert all(i["is_mp_src"] and i["tp_rank"] == 0 and i["pp_rank"] == 0 for i in senders)
    assert sorted(i["dp_rank"] for i in senders) == list(range(dp))
    assert all(not i["calls"] for i in infos if not i["is_mp_src"])
    for name in expected:
        seen = []
        for i in senders:
            call = next(c for c in i["calls"] if c["reward"] == name)
            sent = [tuple(k) for k in call["policy"]]
            pairs = {p for p, _ in sent}
            assert sent == sorted((p, s) for p in pairs for s in (0, 1))  # twins together
            if name == "co_rewarding_combined":  # the teacher's rollouts on the same pairs
                assert [tuple(k) for k in call["teacher"]] == sent
            seen += sorted(pairs)
        assert sorted(seen) == list(range(8))  # every pair scored exactly once
        # Metrics across pairs are the mean of the shards' own (SHARD_MEAN_METRICS).
        shards = [sorted({p for p, _ in next(c for c in i["calls"] if c["reward"] == name)
                          ["policy"]}) for i in senders]
        local = [score_rollouts(
            records([r for r in policy if r[0] in shard], truth), RewardConfig(name=name),
            teacher=(records([r for r in teacher if r[0] in shard], truth)
                     if name == "co_rewarding_combined" else None)).metrics for shard in shards]
        whole = dict(expected[name].metrics)
        for key in SHARD_MEAN_METRICS:
            values = [m[key] for m in local if key in m]
            whole[key] = sum(values) / len(values)
        for i in infos:  # every rank, source or not, holds every reward
            assert i["results"][name]["rewards"] == expected[name].rewards
            assert i["results"][name]["metrics"] == pytest.approx(whole)


@pytest.mark.slow
def test_tp2_pp2_dp2_gloo(tmp_path):
    _check(_run(8, tp=2, pp=2, tmp_path=tmp_path), dp=2)
