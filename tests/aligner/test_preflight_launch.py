"""The GRPO sbatch files run preflight before anything starts and hand the actor its time limit.

Each file runs unchanged under bash on the host (no container) with small stand-ins for
``srun``, ``squeue`` and ``scontrol`` on PATH: ``srun`` runs the preflight step for real
(``coreward preflight`` from the main venv), answers the reward server's readiness probes
on its port until ``scancel`` stops it, and records the actor's command instead of starting
Megatron.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.aligner.helpers import save_word_tokenizer
from tests.aligner.test_preflight_cli import LLAMA31_8B, make_nemo

ROOT = Path(__file__).resolve().parents[2]
SBATCH = {
    "het": ROOT / "examples/slurm/coreward_grpo.sbatch",
    "single": ROOT / "examples/slurm/coreward_grpo_single_node.sbatch",
}

SRUN = r"""#!/bin/bash
# srun stand-in: drop the options, then run the step the way its job name says.
name=""
while [[ $# -gt 0 && $1 == --* ]]; do
    case $1 in
        --job-name=*) name=${1#--job-name=} ;;
        --chdir=*) cd "${1#--chdir=}" ;;
    esac
    shift
done
case $name in
    coreward-preflight) exec "$@" ;;
    coreward-serve) echo $$ > "$STUBS/serve_pid"; exec "$STUBS/ready_server" "$@" ;;
    *) printf '%s\n' "$@" > "$STUBS/actor_args"; env | grep _OFFLINE | sort > "$STUBS/actor_env" ;;
esac
"""
READY_SERVER = f"""#!{sys.executable}
# The reward server's stand-in: 200 to every GET on its http_port, until SIGTERM.
import http.server, sys
port = int(next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("http_port=")))
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Ready).serve_forever()
"""
SQUEUE = """#!/bin/bash
[[ " $* " == *" -o %l "* ]] && echo 4:00:00
[[ " $* " == *" -s "* ]] && echo "7.1 coreward-serve"
exit 0
"""
SCANCEL = """#!/bin/bash
kill -TERM "$(cat "$STUBS/serve_pid")"
"""
SCONTROL = """#!/bin/bash
case "$1 $2" in
    "show hostnames") echo n1 ;;
    "show node") echo "NodeName=n1 NodeAddr=127.0.0.1 NodeHostName=n1" ;;
esac
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def job(tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in (
        ("srun", SRUN),
        ("ready_server", READY_SERVER),
        ("squeue", SQUEUE),
        ("scontrol", SCONTROL),
        ("scancel", SCANCEL),
    ):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    hf = tmp_path / "Llama-3.1-8B-Instruct"
    save_word_tokenizer(hf, ["1+1?"])  # preflight counts the pairs with it
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"{i}+1?", "rephrasings": [f"1+{i}?"]}) + "\n"
            for i in range(1000)
        )
    )
    http_port = _free_port()
    env = {
        **os.environ,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "STUBS": str(stubs),
        "SLURM_SUBMIT_DIR": str(ROOT),
        "SLURM_JOB_ID": "7",
        "SLURM_JOB_NODELIST_HET_GROUP_0": "n1",
        "VENV": str(ROOT / ".venv"),
        "NEMO_CKPT": str(make_nemo(tmp_path / "m.nemo", LLAMA31_8B)),
        "HF_MODEL_DIR": str(hf),
        "TRAIN_DATA": str(train),
        "VAL_DATA": str(train),
        "RESULTS": str(tmp_path / "results"),
        "SERVER_HTTP_PORT": str(http_port),
        "SERVER_BIND": "127.0.0.1",
        "SERVER_READY_TIMEOUT": "30",
    }
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    return stubs, env


def _submit(path, env, **extra):
    return subprocess.run(
        ["bash", str(path)],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.parametrize("kind", sorted(SBATCH))
def test_actor_gets_the_checked_overrides_and_its_time_limit(job, kind):
    stubs, env = job
    result = _submit(SBATCH[kind], env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "run plan: {" in result.stdout
    plan = json.loads(result.stdout.split("run plan: ", 1)[1].splitlines()[0])
    assert plan["max_time_per_run"] == "00:03:30:00" and plan["tokenizer"] == env["HF_MODEL_DIR"]
    actor = (stubs / "actor_args").read_text().splitlines()
    assert actor[1:4] == ["-u", "examples/train_gpt_grpo_coreward.py", "--config-name"]
    assert f"model.tokenizer.type={env['HF_MODEL_DIR']}" in actor
    assert "exp_manager.max_time_per_run=00:03:30:00" in actor
    assert (stubs / "actor_env").read_text().split() == [
        "HF_HUB_OFFLINE=1",
        "TRANSFORMERS_OFFLINE=1",
    ]


@pytest.mark.parametrize("kind", sorted(SBATCH))
def test_refused_run_fails_before_the_server_starts(job, kind):
    stubs, env = job
    result = _submit(
        SBATCH[kind], env, TRAIN_ARGS="aligner/precision=fp8 model.encoder_seq_length=4100"
    )
    assert result.returncode != 0
    assert (
        "coreward preflight: model.encoder_seq_length (4100) must be a multiple of 16"
        in result.stderr
    )
    assert "preflight refused the run" in result.stderr
    assert "reward server" not in result.stdout and not (stubs / "actor_args").exists()


def test_a_time_limit_passed_by_the_user_is_kept(job):
    stubs, env = job
    result = _submit(SBATCH["single"], env, TRAIN_ARGS="exp_manager.max_time_per_run=00:02:00:00")
    assert result.returncode == 0, result.stderr
    actor = (stubs / "actor_args").read_text()
    assert "exp_manager.max_time_per_run=00:03:30:00" not in actor
