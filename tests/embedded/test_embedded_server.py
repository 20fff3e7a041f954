"""Scoring through a real ``coreward serve`` gives the run the in-process rewards (slow)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from nemo_coreward.embedded.config import load
from nemo_coreward.embedded.rundir import read_metrics
from nemo_coreward.embedded.trainer import train

_SERVERPROC = Path(__file__).resolve().parents[1] / "server" / "serverproc.py"


def _serverproc():
    spec = importlib.util.spec_from_file_location("embedded_serverproc", _SERVERPROC)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_training_through_the_reward_server_matches_in_process(tiny_model_dir, tmp_path):
    sp = _serverproc()
    server = sp.ServerProcess(tuple(sp.free_ports(3)), tmp_path / "serve.log", workers=1,
                              instances=1)
    common = [f"model.path={tiny_model_dir}", "loss.entropy_coef=0.01", "eval.enabled=false"]
    server.start()
    try:
        remote = train(load("tiny", [*common, f"output_root={tmp_path / 'remote'}",
                                     f"reward.server_url={server.http_url}"]), echo=lambda _: None)
    finally:
        code, _ = server.terminate()
        if code is None or server.wait_session_gone(30):
            server.kill_group()
    local = train(load("tiny", [*common, f"output_root={tmp_path / 'local'}"]), echo=lambda _: None)

    def comparable(run):
        return [{k: v for k, v in row.items() if not k.startswith("time/") and k != "tokens_per_s"}
                for row in read_metrics(run)]

    assert comparable(remote.run_dir) == comparable(local.run_dir)
    assert len(comparable(local.run_dir)) == 2
