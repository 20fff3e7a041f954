"""Load on the Co-Reward reward server: concurrent clients sending paper-scale steps.

A step of the paper's recipe is 128 pairs x 2 sides x 8 rollouts = 2,048 responses of
about 1,500 words, each ending in a boxed answer in the surface forms models write
(integers, fractions, decimals, units, expressions, intervals; some wrong, some with no
box). ``--clients`` threads each send ``--requests`` whole steps through
``RewardClient`` (loopback only; a server is started on free ports unless ``--url`` is
given) and every reply is checked, reward by reward and metric by metric, against
in-process ``score_rollouts`` on the same step: the mismatch count must be 0.

Reported: requests/s, rollouts/s, p50/p99 request latency under load, and the overhead
of one step through an idle server against scoring it in process (same step, medians
of ``--repeats``): the client extracts answers and sends those (the default; target:
at most 0.1 s over in process), and, as the peer, sends whole responses. The run is
bounded in requests and in time (``--time-limit-s``: no new request is sent after it).

    python benchmarks/server_load.py [--clients 8] [--requests 3] [--equivalence exact]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from machine import cpu_model

from nemo_coreward.reward import RewardConfig, Rollout, ScoredBatch, score_rollouts
from nemo_coreward.server import RewardClient

REPO = Path(__file__).resolve().parents[1]
WORDS = ("we", "compute", "the", "sum", "of", "both", "terms", "then", "simplify", "each",
         "factor", "so", "that", "value", "gives", "check", "again", "since", "hence", "note",
         "$x^2 + 3x - 4 = 0$", "$\\frac{a}{b}$", "by", "Vieta", "substituting", "into")


def answer_forms(rng: random.Random) -> tuple[list[str], list[str]]:
    """(equivalent forms of the right answer, wrong answers) for one question."""
    kind = rng.choice(["int"] * 5 + ["frac", "decimal", "expr", "interval"])
    if kind == "int":
        n = rng.randint(2, 999)
        return [str(n), f"{n}.0", f"{n} \\text{{ cm}}", f"x = {n}"], [str(n + 1), str(n - 1)]
    if kind == "frac":
        a, b = rng.randint(1, 9), rng.choice([3, 7, 9])
        return ([f"\\frac{{{a}}}{{{b}}}", f"\\dfrac{{{a}}}{{{b}}}", f"{a}/{b}"],
                [f"\\frac{{{b}}}{{{a}}}"])
    if kind == "decimal":
        v = rng.randint(11, 999) / 10
        return [f"{v}", f"{v}0"], [f"{v + 1}"]
    if kind == "expr":
        a = rng.randint(1, 9)
        return [f"(x+{a})^2", f"(x + {a})^{{2}}"], [f"(x-{a})^2"]
    a, b = rng.randint(-9, 0), rng.randint(1, 9)
    return [f"[{a}, {b})", f"\\left[{a}, {b}\\right)"], [f"({a}, {b})"]


def make_step(pairs: int, sides: int, n: int, words: int, seed: int) -> list[Rollout]:
    """One step of rollouts; paragraphs are drawn from a pool so generation stays fast."""
    rng = random.Random(seed)
    pool = [" ".join(rng.choice(WORDS) for _ in range(100)) for _ in range(64)]
    out = []
    for p in range(pairs):
        right, wrong = answer_forms(rng)
        for side in range(sides):
            for _ in range(n):
                body = " ".join(rng.choice(pool) for _ in range(max(1, words // 100)))
                u = rng.random()
                if u < 0.6:
                    tail = f"The final answer is $\\boxed{{{rng.choice(right)}}}$."
                elif u < 0.9:
                    tail = f"Therefore $\\boxed{{{rng.choice(wrong)}}}$."
                else:
                    tail = "I am not sure how to finish."
                out.append(Rollout(f"s{seed}-q{p}", side,
                                   f"{body} An early guess was \\boxed{{0}}. {tail}",
                                   ground_truth=right[0]))
    return out


def same(got: ScoredBatch, want: ScoredBatch) -> int:
    """Mismatching rows plus mismatching metrics (NaN equals NaN)."""
    rows = sum(a != b for a, b in zip(got.scores, want.scores))
    rows += abs(len(got.scores) - len(want.scores))
    keys = set(got.metrics) | set(want.metrics)
    bad = sum(not (k in got.metrics and k in want.metrics and (
        got.metrics[k] == want.metrics[k]
        or (math.isnan(got.metrics[k]) and math.isnan(want.metrics[k])))) for k in keys)
    return rows + bad


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_server(workers: int, instances: int, log: Path) -> tuple[subprocess.Popen, str]:
    http, grpc, metrics = free_ports(3)
    cmd = [sys.executable, "-m", "nemo_coreward.cli", "serve", f"http_port={http}",
           f"grpc_port={grpc}", f"metrics_port={metrics}", f"workers={workers}",
           f"instances={instances}", "request_timeout_s=600"]
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/v2/models/co_reward/ready", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server not ready after 180 s; see {log}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=3, help="requests per client")
    p.add_argument("--pairs", type=int, default=128)
    p.add_argument("--sides", type=int, default=2)
    p.add_argument("--rollouts", type=int, default=8, help="rollouts per side")
    p.add_argument("--words", type=int, default=1500)
    p.add_argument("--distinct-steps", type=int, default=4)
    p.add_argument("--reward", default="co_reward")
    p.add_argument("--equivalence", default="exact")
    p.add_argument("--repeats", type=int, default=3, help="for the one-step overhead ratio")
    p.add_argument("--time-limit-s", type=float, default=600.0)
    p.add_argument("--url", default=None, help="an already running server (loopback)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    if args.url and not any(h in args.url for h in ("127.0.0.1", "localhost", "[::1]")):
        p.error("--url must be a loopback address")
    config = RewardConfig(args.reward, args.equivalence)

    t0 = time.perf_counter()
    steps = [make_step(args.pairs, args.sides, args.rollouts, args.words, seed)
             for seed in range(args.distinct_steps)]
    mb = sum(len(r.response.encode()) for r in steps[0]) / 2**20
    print(f"generated {len(steps)} steps of {len(steps[0])} rollouts ({mb:.1f} MB each) "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    expected, local_s = [], []
    for step in steps:
        t = time.perf_counter()
        expected.append(score_rollouts(step, config))
        local_s.append(time.perf_counter() - t)

    proc = None
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"server_load_{os.getpid()}.log"
    url = args.url
    if url is None:
        proc, url = start_server(args.workers, args.instances, log)
        print(f"server: {url} ({args.workers} workers, {args.instances} instances; log {log})")
    try:
        with RewardClient(url, timeout_s=600, retries=2) as client, \
                RewardClient(url, timeout_s=600, retries=2, send_answers=False) as full_text:
            client.score(steps[0], config)  # warm-up
            full_text.score(steps[0], config)
            local, remote, remote_full = [], [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                score_rollouts(steps[0], config)
                local.append(time.perf_counter() - t)
                t = time.perf_counter()
                client.score(steps[0], config)
                remote.append(time.perf_counter() - t)
                t = time.perf_counter()
                full_text.score(steps[0], config)
                remote_full.append(time.perf_counter() - t)

            latencies: list[float] = []
            mismatches, lock = 0, threading.Lock()
            stop_at = time.monotonic() + args.time_limit_s

            def run(c: int) -> None:
                nonlocal mismatches
                for k in range(args.requests):
                    if time.monotonic() > stop_at:
                        return
                    i = (c + k) % len(steps)
                    t = time.perf_counter()
                    got = client.score(steps[i], config)
                    dt = time.perf_counter() - t
                    bad = same(got, expected[i])
                    with lock:
                        latencies.append(dt)
                        mismatches += bad

            # one RewardClient, one thread and one connection per concurrent client
            threads = [threading.Thread(target=run, args=(c,)) for c in range(args.clients)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    lat = sorted(latencies)
    one_local, one_remote, one_full = (statistics.median(x) for x in (local, remote, remote_full))
    report = {
        "cpu": cpu_model(), "load_average": round(os.getloadavg()[0], 2),
        "clients": args.clients, "requests": len(lat), "rollouts_per_request": len(steps[0]),
        "reward": args.reward, "equivalence": args.equivalence,
        "workers": args.workers, "instances": args.instances, "cpu_cores": os.cpu_count(),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(lat) / wall, 3),
        "rollouts_per_s": round(len(lat) * len(steps[0]) / wall, 1),
        "latency_p50_s": round(statistics.median(lat), 3),
        "latency_p99_s": round(lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)], 3),
        "mismatches": mismatches,
        "one_step_in_process_s": round(one_local, 3),
        "one_step_server_s": round(one_remote, 3),
        "server_overhead_s": round(one_remote - one_local, 3),
        "one_step_server_full_text_s": round(one_full, 3),
        "full_text_overhead_s": round(one_full - one_local, 3),
        "overhead_vs_full_text": round((one_remote - one_local) / (one_full - one_local), 3),
    }
    for k, v in report.items():
        print(f"{k:>24}: {v}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print("target: server_overhead_s <= 0.1:",
          "PASS" if report["server_overhead_s"] <= 0.1 else "FAIL")
    return 0 if mismatches == 0 and len(lat) == args.clients * args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
