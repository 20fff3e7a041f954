"""A real kill: ``coreward eval`` in a subprocess is SIGKILLed mid-run, then rerun."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nemo_coreward.eval.benchmarks import get_benchmark

RECORDS = get_benchmark("synthetic").load(limit=6)
GOLD = {r.question: r.answer for r in RECORDS}


@pytest.mark.slow
def test_sigkill_then_rerun_skips_done_items(tmp_path, chat_server):
    server = chat_server(lambda q, t, i: f"\\boxed{{{GOLD[q]}}}", delay_s=0.4)
    out = tmp_path / "out"
    args = ["-m", "nemo_coreward.cli", "eval", "m", "--base-url", server.base_url,
            "--benchmarks", "synthetic", "--limit", "6", "--k", "2", "--batch-size", "1",
            "--out", str(out), "--no-progress", "--equivalence", "exact", "--concurrency", "1"]
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    items = out / "items.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if items.exists() and items.read_text().count("\n") >= 2:
            break
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    complete = items.read_text().split("\n")[:-1]  # a torn last line is not done
    done = {json.loads(line)["id"] for line in complete if line.strip()}
    assert 2 <= len(done) < 6
    asked_before = sum(server.calls.values())

    rerun = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr
    # Items are worked one at a time (greedy request, then samples request, then written):
    # every item done before the kill was asked exactly twice and never again; the rerun
    # asks exactly twice for each remaining item.
    for rec in RECORDS:
        if rec.id in done:
            assert server.calls[rec.question] == 2
    assert sum(server.calls.values()) - asked_before == 2 * (6 - len(done))
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["synthetic"]["metrics"]["n"] == 6
    assert results["benchmarks"]["synthetic"]["metrics"]["pass@1_greedy"] == 1.0
    lines = [json.loads(x) for x in items.read_text().splitlines() if x.strip()]
    assert sorted(r["id"] for r in lines) == sorted(r.id for r in RECORDS)  # no duplicates
