"""One GRPO step of the embedded trainer against TRL's GRPOTrainer, same run, same work.

    .venv/bin/python benchmarks/trainer_vs_trl.py                  # fp32, 4 steps each
    .venv/bin/python benchmarks/trainer_vs_trl.py --precision bf16-mixed   # both in bf16
    .venv/bin/python benchmarks/trainer_vs_trl.py --precision bf16-mixed --trl-precision 32-true
    .venv/bin/python benchmarks/trainer_vs_trl.py --kl 0.005       # with a reference model
    .venv/bin/python benchmarks/trainer_vs_trl.py --which ours \
        --rewards co_reward,co_rewarding_ii,co_rewarding_combined   # the teacher's extra cost
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        .venv/bin/python benchmarks/trainer_vs_trl.py   # as on an AVX2-only CPU (all three
                                                        # limits: torch, oneDNN and MKL GEMMs)

Both sides train SmolLM2-135M-Instruct (the converted bundled GGUF) on the same synthetic
twins, in the same order (TRL without shuffling, twins adjacent), with the same prompt
(system turn + one-shot example through the chat template), the same number of prompts
per step, rollouts per prompt, temperature and generation length, the same precision and
torch threads (and OpenMP wait policy), and the same reward: TRL's reward function calls
the project's ``score_rollouts`` (Co-Reward, twins voting for each other). TRL keeps its
own defaults otherwise (gradient checkpointing, the "dapo" loss), as a user would run it.

Each trainer runs in its own process (peak RSS is per process). A last process measures
generation alone at the demo's batch against its FLOP floor (``_floor``) and against its
matrix products run alone at the rows each decode step had (what small row counts cost).
Reported: median step time over steps 2..N (step 1 carries one-off warm-up), generated
tokens per second of step time, peak RSS, and the ratio ours / TRL. On a machine shared with
other work, step times swing by 2x with the load; ``--repeats R`` alternates the two
trainers R times and takes, for each, its fastest repeat (noise only ever adds time), so
both are compared at their least disturbed. ``--rewards`` runs our trainer once per reward,
at the same batch (both sides of every pair for every reward, so the policy's own work is
equal) and reports each teacher reward's extra step time and peak memory against
``co_reward``: the teacher's rollouts, its weight averaging and its fp32 copy. Needs ``pip
install trl -c constraints.txt`` (TRL 1.16 works with torch 2.13.0); ``--which ours`` does
not.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _machine() -> str:
    """CPU model, core count and the ISA limits in force (the emulation of an older CPU)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    limits = [f"{k}={os.environ[k]}" for k in
              ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
              if k in os.environ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} cores, load {load:.1f}"
            + (f", {' '.join(limits)}" if limits else ", no ISA limit"))


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _ours(a: argparse.Namespace, out: Path) -> dict:
    import torch

    from nemo_coreward.embedded.config import load
    from nemo_coreward.embedded.rundir import read_metrics
    from nemo_coreward.embedded.trainer import train

    torch.set_num_threads(a.threads)
    cfg = load("default", [
        f"data.pairs_per_step={a.pairs}", f"rollout.n={a.n}",
        f"rollout.temperature={a.temperature}",
        f"rollout.max_new_tokens={a.max_new_tokens}", f"model.precision={a.precision}",
        f"model.threads={a.threads}", f"kl.coef={a.kl}", f"train.steps={a.steps}",
        f"optim.lr={a.lr}", f"update.micro_batch_prompts={a.pairs * 2}", "eval.enabled=false",
        "train.checkpoint_every=0", "train.export=false", "train.progress=false",
        "train.sample_every=0", f"output_root={out}", f"seed={a.seed}",
        f"reward.name={a.reward}",
    ])
    result = train(cfg, echo=lambda _: None)
    rows = read_metrics(result.run_dir)
    return {
        "step_s": [r["time/step"] for r in rows],
        "tokens": [r["response_length"] * r["n_rollouts"] for r in rows],
        "reward": [r["reward_mean"] for r in rows],
        "generate_s": [r["time/generate"] for r in rows],
        "update_s": [r["time/update"] for r in rows],
        "teacher_s": [r.get("time/teacher", 0.0) for r in rows],
    }


def _trl(a: argparse.Namespace, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from nemo_coreward.data import synthetic
    from nemo_coreward.embedded.config import load
    from nemo_coreward.embedded.model import ModelConfig, load_tokenizer, model_dir
    from nemo_coreward.embedded.prompts import messages
    from nemo_coreward.reward import RewardConfig, Rollout, score_rollouts

    torch.set_num_threads(a.threads)
    prompt_cfg = load("default").prompt
    records = synthetic.generate(a.pairs * a.steps, seed=a.seed)
    rows = [{"prompt": messages(text, prompt_cfg), "pair_id": r.id, "side": side,
             "answer": r.answer} for r in records for side, text in enumerate(
                 [r.question, r.rephrasings[0]])]

    def co_reward(prompts, completions, pair_id, side, answer, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        batch = [Rollout(p, s, t, g) for p, s, t, g in zip(pair_id, side, texts, answer)]
        return score_rollouts(batch, RewardConfig("co_reward")).rewards

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.step_s, self.lengths, self.rewards, self._t = [], [], [], 0.0

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.step_s.append(time.perf_counter() - self._t)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(logs["completions/mean_length"])
                self.rewards.append(logs.get("reward", float("nan")))

    path = model_dir(ModelConfig())
    args = GRPOConfig(
        output_dir=str(out), per_device_train_batch_size=a.pairs * 2 * a.n,
        num_generations=a.n, max_completion_length=a.max_new_tokens, temperature=a.temperature,
        top_p=1.0, beta=a.kl, learning_rate=a.lr, max_steps=a.steps, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True,
        bf16=(a.trl_precision or a.precision) != "32-true",
        shuffle_dataset=False, seed=a.seed, model_init_kwargs={"dtype": torch.float32},
        dataloader_num_workers=0,
    )
    clock = Clock()
    trainer = GRPOTrainer(model=str(path), reward_funcs=co_reward, args=args,
                          train_dataset=Dataset.from_list(rows),
                          processing_class=load_tokenizer(path), callbacks=[clock])
    trainer.train()
    per_step = a.pairs * 2 * a.n
    return {"step_s": clock.step_s, "tokens": [m * per_step for m in clock.lengths],
            "reward": clock.rewards}


def _gemm_gflops(threads: int) -> float:
    """Sustained float32 GEMM rate of this machine at ``threads`` threads, GFLOP/s: the
    best of a few (2048 x 576) @ (576 x 1536) products, SmolLM2's MLP shape at a prefill's
    row count."""
    import torch

    torch.set_num_threads(threads)
    x, w = torch.randn(2048, 576), torch.randn(1536, 576)
    best = float("inf")
    for _ in range(12):
        start = time.perf_counter()
        torch.nn.functional.linear(x, w)
        best = min(best, time.perf_counter() - start)
    return 2 * 2048 * 576 * 1536 / best / 1e9


def _decode_matmuls_s(model, live_rows: list[int], repeats: int = 3) -> float:
    """Seconds the decode loop's matrix products take run alone: for each decode step, every
    linear layer of the model (LM head included) on as many rows as were still generating,
    with the model's own weights, in order. The part of the FLOP floor that small row counts
    cost: at 64 rows and fewer a GEMM runs well below its large-matrix rate."""
    import torch

    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    best = float("inf")
    with torch.inference_mode():
        xs = {rows: {w.shape[1]: torch.randn(rows, w.shape[1]) for w in weights}
              for rows in set(live_rows)}
        for _ in range(repeats):
            start = time.perf_counter()
            for rows in live_rows:
                for w in weights:
                    torch.nn.functional.linear(xs[rows][w.shape[1]], w)
            best = min(best, time.perf_counter() - start)
    return best


def _floor(a: argparse.Namespace, out: Path) -> dict:
    """Generation at the demo's batch (conf/embedded/default.yaml: 8 pairs x 2 sides x 4
    rollouts, temperature 0.8, 40 new tokens) against its FLOP floor: 2 FLOPs per
    parameter per generated token, at the GEMM rate measured here (prefill, attention and
    sampling count as overhead)."""
    import torch

    from nemo_coreward.embedded.config import load
    from nemo_coreward.embedded.data import load_pairs, prompts_for
    from nemo_coreward.embedded.model import load_causal_lm, load_tokenizer, model_dir
    from nemo_coreward.embedded.prompts import render
    from nemo_coreward.embedded.rollout import encode_prompts, sample

    torch.set_num_threads(a.threads)
    cfg = load("default", ["model.precision=32-true", f"model.threads={a.threads}"])
    path = model_dir(cfg.model)
    tok, model = load_tokenizer(path), load_causal_lm(path, cfg.model)
    params = sum(p.numel() for p in model.parameters())
    prompts = prompts_for(load_pairs(cfg.data, a.seed)[:cfg.data.pairs_per_step], cfg.data)
    ids, mask = encode_prompts(tok, render(tok, [p.text for p in prompts], cfg.prompt),
                               cfg.rollout.max_prompt_tokens)
    torch.manual_seed(a.seed)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        r = sample(model, tok, ids, mask, cfg.rollout)
        runs.append((time.perf_counter() - start, r.num_tokens, r.response_mask))
    gflops = _gemm_gflops(a.threads)
    seconds, tokens, rmask = min(runs[1:], key=lambda r: r[0] / r[1])
    floor = 2 * params * tokens / (gflops * 1e9)
    # One forward per decode step after the first token, over the rows still generating.
    live = [int(c) for c in rmask[:, 1:].sum(0) if int(c) > 0]
    return {"generate_s": seconds, "tokens": tokens, "sequences": len(prompts) * cfg.rollout.n,
            "gemm_gflops": gflops, "floor_s": floor, "params": params,
            "decode_matmuls_s": _decode_matmuls_s(model, live)}


def _worker(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = {"ours": _ours, "trl": _trl, "floor": _floor}[a.worker](a, Path(tmp))
    result["peak_rss_gib"] = _peak_rss_gib()
    Path(a.json).write_text(json.dumps(result))


def _summary(r: dict) -> dict:
    steps = r["step_s"][1:] or r["step_s"]
    toks = r["tokens"][1:] or r["tokens"]
    out = {"step_s": statistics.median(steps),
           "tok_s": statistics.median(t / s for t, s in zip(toks, steps)),
           "rss": r["peak_rss_gib"], "reward": r["reward"]}
    for key in ("generate_s", "update_s", "teacher_s"):
        if key in r:
            out[key] = statistics.median(r[key][1:] or r[key])
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--pairs", type=int, default=4, help="pairs per step (x2 sides = prompts)")
    p.add_argument("--n", type=int, default=4, help="rollouts per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"],
                   help="ours (and TRL's unless --trl-precision); bf16-mixed also samples "
                        "from a bfloat16 copy of the weights (rollout.dtype auto)")
    p.add_argument("--trl-precision", choices=["32-true", "bf16-mixed"],
                   help="TRL's precision (bf16-mixed = bf16=True, autocast)")
    p.add_argument("--kl", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--which", default="both", choices=["both", "ours", "trl"],
                   help="ours also measures generation against its FLOP floor")
    p.add_argument("--repeats", type=int, default=1, help="alternate the trainers this often")
    p.add_argument("--rewards", default="co_reward",
                   help="comma-separated rewards our trainer runs, one process each (TRL "
                        "always scores co_reward); teacher rewards are compared with co_reward")
    p.add_argument("--reward", default="co_reward", help=argparse.SUPPRESS)  # a worker's
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--worker", choices=["ours", "trl", "floor"], help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        _worker(a)
        return 0
    # Same OpenMP wait policy for both workers (see nemo_coreward/embedded/__init__.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    rewards = [r.strip() for r in a.rewards.split(",") if r.strip()]
    jobs = [("ours", r) for r in rewards] if a.which in ("both", "ours") else []
    jobs += [("trl", "co_reward")] if a.which in ("both", "trl") else []
    runs: dict[str, list[dict]] = {}
    for _ in range(a.repeats):
        for which, reward in jobs:
            label = "trl" if which == "trl" else \
                ("ours" if reward == "co_reward" else f"ours:{reward}")
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", which,
                       "--reward", reward, "--json", f.name]
                start = time.perf_counter()
                subprocess.run(cmd, check=True)
                runs.setdefault(label, []).append(
                    {**_summary(json.loads(Path(f.name).read_text())),
                     "wall_s": time.perf_counter() - start})
    results = {k: min(v, key=lambda r: r["step_s"]) for k, v in runs.items()}
    for label, rows in runs.items():
        print(f"{label}: step time per repeat " + ", ".join(f"{r['step_s']:.2f} s" for r in rows))
    print(f"\n{_machine()}")
    print(f"{a.pairs * 2} prompts x {a.n} rollouts x {a.max_new_tokens} new tokens, ours "
          f"{a.precision}, TRL {a.trl_precision or a.precision}, KL {a.kl}, {a.threads} "
          f"threads, median of steps 2..{a.steps}, fastest of {a.repeats} repeat(s)")
    width = max(12, *(len(k) + 2 for k in results))
    print(f"{'':<22}" + "".join(f"{k:>{width}}" for k in results))
    for key, label in (("step_s", "step time (s)"), ("tok_s", "generated tok/s"),
                       ("rss", "peak RSS (GiB)")):
        print(f"{label:<22}" + "".join(f"{v[key]:>{width}.2f}" for v in results.values()))
    for label, r in results.items():
        if "generate_s" in r:
            print(f"{label}: generation {r['generate_s']:.2f} s, teacher {r['teacher_s']:.2f} s, "
                  f"update {r['update_s']:.2f} s per step")
    base = results.get("ours")
    for label, r in results.items():
        if base is not None and label.startswith("ours:"):
            print(f"{label[5:]} vs co_reward: step time x{r['step_s'] / base['step_s']:.2f} "
                  f"({r['step_s'] - base['step_s']:+.2f} s), peak RSS "
                  f"{r['rss'] - base['rss']:+.2f} GiB")
    if "ours" in results and "trl" in results:
        ratio = results["ours"]["step_s"] / results["trl"]["step_s"]
        print(f"ratio ours / TRL step time: {ratio:.2f}")
    floor = None
    if a.which in ("both", "ours"):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--worker", "floor",
                            "--json", f.name], check=True)
            floor = json.loads(Path(f.name).read_text())
        mm = floor["decode_matmuls_s"]
        print(f"generation at the demo's batch ({floor['sequences']} sequences, float32): "
              f"{floor['generate_s']:.2f} s for {floor['tokens']} tokens; FLOP floor "
              f"{floor['floor_s']:.2f} s (2 x {floor['params'] / 1e6:.0f}M FLOPs per token at "
              f"{floor['gemm_gflops']:.0f} GFLOP/s, float32 GEMM measured here); "
              f"ratio to the floor {floor['generate_s'] / floor['floor_s']:.2f}; the decode's "
              f"matrix products alone at its live row counts take "
              f"{mm:.2f} s ({mm / floor['floor_s']:.2f} x the floor); the rest is attention, "
              f"sampling and overhead")
    if a.out:
        Path(a.out).write_text(json.dumps({"args": vars(a), "results": results, "runs": runs,
                                           "generation_floor": floor}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
