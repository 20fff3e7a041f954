"""Plots and a markdown page over one or more training run directories (``coreward report``).

A run directory (see ``nemo_coreward.embedded.rundir``) holds ``metrics.jsonl`` (one row
per step), ``eval.json`` (held-out accuracy before/after) and ``config.yaml`` (the reward's
name labels the run in legends). Runs are grouped by arm (their reward): each figure shows
one metric, one line per arm, the mean over the arm's runs (seeds) with a band of one sample
sd when it has several, the legend outside the axes. A metric a run did not log is left out
of that arm's line, and a figure no run has is not drawn.
Collapse shows in curves, not in a final number: majority ratio and twin agreement going
up while held-out or pseudo-label accuracy goes down is the failure the paper's figures
show for self-rewarding baselines, so the page also runs the collapse alarm per run.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

from nemo_coreward.io import atomic_write, read_jsonl
from nemo_coreward.reward.alarm import AlarmConfig, AlarmResult, collapse_alarm, series

HELDOUT_KEY = "heldout_accuracy"
FIGSIZE = (10, 4)  # inches at 100 dpi; the legend sits right of the axes


@dataclass(frozen=True)
class Panel:
    """One figure, one metric: the first of ``keys`` a run logged."""

    name: str
    title: str
    keys: tuple[str, ...]
    ylabel: str = ""
    unit_range: bool = False  # a rate or accuracy: y from 0 to 1
    marked: bool = False  # sparse points (held-out evaluations): draw markers


PANELS: tuple[Panel, ...] = (
    Panel("reward", "Reward (mean over rollouts)", ("reward_mean",), "reward", True),
    Panel("heldout_accuracy", "Held-out greedy accuracy", (HELDOUT_KEY,), "accuracy", True,
          marked=True),
    Panel("pseudo_label_accuracy", "Pseudo-label accuracy (vs known answers)",
          ("pseudo_label_accuracy",), "accuracy", True),
    Panel("reward_accuracy", "Reward accuracy (reward = correctness)", ("reward_accuracy",),
          "accuracy", True),
    Panel("teacher_label_accuracy", "Teacher's label accuracy", ("teacher_label_accuracy",),
          "accuracy", True),
    Panel("majority_ratio", "Majority ratio (policy)", ("majority_ratio",), "ratio", True),
    Panel("teacher_majority_ratio", "Majority ratio (teacher)", ("teacher_majority_ratio",),
          "ratio", True),
    Panel("twin_agreement", "Twin agreement (training batch)", ("twin_agreement",),
          "share of pairs", True),
    Panel("shared_answer_rate", "Questions answered alike", ("shared_answer_rate",),
          "0 = each its own answer, 1 = all one", True),
    Panel("teacher_policy_agreement", "Teacher-policy agreement",
          ("teacher_policy_agreement",), "share of groups", True),
    Panel("answer_entropy", "Answer entropy (per group)", ("answer_entropy",), "nats"),
    Panel("empty_answer_rate", "Empty-answer rate", ("empty_answer_rate",),
          "share of rollouts", True),
    Panel("response_length", "Response length", ("response_length",), "tokens"),
    Panel("kl", "KL to the reference", ("kl", "kl_loss"), "KL"),
    Panel("entropy", "Token entropy", ("entropy", "token_entropy", "rollout_entropy"), "nats"),
)


@dataclass(frozen=True)
class Run:
    """A loaded run directory: its metric rows plus held-out points from ``eval.json``."""

    path: Path
    label: str
    reward: str
    rows: tuple[dict, ...]
    evals: dict = field(default_factory=dict)

    @property
    def last_step(self) -> int:
        steps = [int(r["step"]) for r in self.rows if isinstance(r.get("step"), (int, float))]
        return max(steps) if steps else 0

    def points(self, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of ``key``; held-out accuracy also takes ``eval.json``'s
        ``before`` (step 0) and ``after`` (the last step) accuracies."""
        pts = dict(series(self.rows, key))
        if key == HELDOUT_KEY:
            for name, step in (("before", 0), ("after", self.last_step)):
                value = (self.evals.get(name) or {}).get("accuracy")
                if isinstance(value, (int, float)):
                    pts.setdefault(step, float(value))
        return sorted(pts.items())

    def alarm_rows(self) -> list[dict]:
        """Metric rows with the held-out points merged in, for the collapse alarm."""
        merged = {int(r["step"]): dict(r) for r in self.rows if "step" in r}
        for step, value in self.points(HELDOUT_KEY):
            merged.setdefault(step, {"step": step})[HELDOUT_KEY] = value
        return [merged[s] for s in sorted(merged)]


def _reward_name(run_dir: Path) -> str:
    config = run_dir / "config.yaml"
    if config.is_file():
        from omegaconf import OmegaConf

        name = OmegaConf.select(OmegaConf.load(config), "reward.name", default=None)
        if name:
            return str(name)
    return "unknown reward"


def load_run(path: str | Path) -> Run:
    """Read a run directory; ``FileNotFoundError`` when it has neither metrics nor evals."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: not a directory")
    rows = read_jsonl(run_dir / "metrics.jsonl").rows
    eval_file = run_dir / "eval.json"
    evals = json.loads(eval_file.read_text(encoding="utf-8")) if eval_file.is_file() else {}
    if not rows and not evals:
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl rows and no eval.json")
    reward = _reward_name(run_dir)
    label = reward if run_dir.name == reward else f"{reward} ({run_dir.name})"
    return Run(run_dir, label, reward, tuple(rows), evals)


def _trailing_mean(values: Sequence[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1):i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs by arm (their reward's name), arms in order of first appearance: the seeds of
    one arm are drawn as one mean line with a band."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.reward, []).append(run)
    return groups


def mean_band(curves: Sequence[Sequence[tuple[int, float]]]
              ) -> tuple[list[int], list[float], list[float]]:
    """Steps, mean and sample sd over the curves that have a point at each step (sd 0 where
    only one has)."""
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    means = [fmean(by_step[s]) for s in steps]
    sds = [stdev(by_step[s]) if len(by_step[s]) > 1 else 0.0 for s in steps]
    return steps, means, sds


def plot_panel(panel: Panel, runs: Sequence[Run], path: Path, alarms: dict[str, AlarmResult],
               smooth: int = 1) -> bool:
    """Draw one panel to ``path``: per arm, its run's curve, or the mean over its runs
    (seeds) with a band of one sd; legend outside the axes. False (and no file) when no run
    logged the panel's metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig = plt.figure(figsize=FIGSIZE, dpi=100)
    ax = fig.add_axes((0.08, 0.13, 0.58, 0.77))  # the right third holds the legend
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = False
    style = "-o" if panel.marked else "-"
    for i, (arm, members) in enumerate(group_runs(runs).items()):
        colour = colours[i % len(colours)]
        curves = []
        for run in members:
            key = next((k for k in panel.keys if run.points(k)), None)
            if key is None:
                continue
            steps, values = zip(*run.points(key))
            shown = _trailing_mean(values, smooth) if smooth > 1 else list(values)
            curves.append(list(zip(steps, shown)))
        if curves:
            drawn = True
            steps, means, sds = mean_band(curves)
            label = members[0].label if len(members) == 1 else f"{arm}: mean ± sd of {len(curves)}"
            ax.plot(steps, means, style, color=colour, label=label, linewidth=1.6,
                    markersize=5, alpha=0.9)
            if len(curves) > 1:
                ax.fill_between(steps, [m - d for m, d in zip(means, sds)],
                                [m + d for m, d in zip(means, sds)], color=colour, alpha=0.18)
        fired = [alarms[r.label].step for r in members
                 if r.label in alarms and alarms[r.label].fired]
        for n, step in enumerate(fired):
            ax.axvline(step, color=colour, linestyle=":", linewidth=1.2,
                       label=f"{arm}: collapse alarm ({len(fired)})" if n == 0 else None)
    if not drawn:
        plt.close(fig)
        return False
    ax.set_title(panel.title)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(panel.ylabel)
    if panel.unit_range:
        ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.savefig(path)
    plt.close(fig)
    return True


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def summary_table(runs: Sequence[Run], alarms: dict[str, AlarmResult]) -> str:
    keys = ("reward_mean", "majority_ratio", "twin_agreement", "pseudo_label_accuracy",
            "empty_answer_rate")
    header = ["run", "steps", "held-out before", "held-out after",
              *[f"last {k}" for k in keys], "collapse alarm"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        last = {k: (run.points(k)[-1][1] if run.points(k) else None) for k in keys}
        before = (run.evals.get("before") or {}).get("accuracy")
        after = (run.evals.get("after") or {}).get("accuracy")
        alarm = alarms[run.label]
        flag = f"**fired at step {alarm.step}**" if alarm.fired else "no"
        lines.append("| " + " | ".join([run.label, str(run.last_step), _fmt(before), _fmt(after),
                                         *[_fmt(last[k]) for k in keys], flag]) + " |")
    return "\n".join(lines)


def arm_table(runs: Sequence[Run], alarms: dict[str, AlarmResult]) -> str:
    """Per arm: mean ± sd over its runs of the held-out accuracy after training and of the
    last logged value of the collapse metrics; how many runs' alarm fired."""
    keys = ("majority_ratio", "twin_agreement", "pseudo_label_accuracy")
    header = ["arm", "runs", "held-out after", *[f"last {k}" for k in keys], "alarms fired"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def pm(values: list[float]) -> str:
        if not values:
            return "–"
        sd = stdev(values) if len(values) > 1 else 0.0
        return f"{fmean(values):.3f} ± {sd:.3f}"

    for arm, members in group_runs(runs).items():
        after = [v for r in members
                 if isinstance(v := (r.evals.get("after") or {}).get("accuracy"), (int, float))]
        last = {k: [r.points(k)[-1][1] for r in members if r.points(k)] for k in keys}
        fired = sum(alarms[r.label].fired for r in members)
        lines.append("| " + " | ".join([arm, str(len(members)), pm(after),
                                         *[pm(last[k]) for k in keys],
                                         f"{fired}/{len(members)}"]) + " |")
    return "\n".join(lines)


def _distinct_labels(runs: Sequence[Run]) -> list[Run]:
    """Runs of one arm from several seeds share a directory name (``seed0/runs/majority``,
    ``seed1/runs/majority``): label them by as much of their path as tells them apart."""
    if len({r.label for r in runs}) == len(runs):
        return list(runs)
    if len({r.path.resolve() for r in runs}) != len(runs):
        raise ValueError(f"a run directory is given twice: {[str(r.path) for r in runs]}")
    depth = 2
    while True:
        labels = [f"{r.reward} ({'/'.join(r.path.parts[-depth:])})" for r in runs]
        if len(set(labels)) == len(labels):
            return [replace(r, label=label) for r, label in zip(runs, labels)]
        depth += 1


def alarm_rules_text(alarm: AlarmConfig) -> str:
    """The alarm's rules with this report's thresholds, in words."""
    rules = {
        "drop": f"**drop**: an accuracy ({', '.join(alarm.accuracy_keys)}) at least "
                f"{alarm.accuracy_drop:.2f} below its peak while {alarm.majority_key} rose at "
                f"least {alarm.majority_rise:.2f} since that peak",
        "gap": f"**gap**: {alarm.majority_key} at least {alarm.gap:.2f} above an accuracy, the "
               f"gap {alarm.gap_rise:.2f} wider than its smallest earlier value while "
               f"{alarm.majority_key} rose at least {alarm.majority_rise:.2f}",
        "split": f"**split** (label-free): {alarm.majority_key} at least {alarm.split:.2f} "
                 f"above {alarm.twin_key}",
        "shared": f"**shared** (label-free): {alarm.shared_key} at least {alarm.shared:.2f} "
                  "(the questions' majority answers collapsed onto one)",
    }
    chosen = "; ".join(rules[r] for r in alarm.rules)
    noise = (f" A fall or widening of {', '.join(alarm.counted_keys)} must also exceed "
             f"{alarm.noise_z:g} standard errors of its sampling noise ({alarm.count_key} "
             "labels per point)." if alarm.noise_z > 0 and alarm.counted_keys else "")
    return (f"Rules, over {alarm.window}-step means, each holding at {alarm.patience} points "
            f"in a row: {chosen}.{noise}")


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path,
                 alarm: AlarmConfig = AlarmConfig(), smooth: int = 1,
                 title: str = "Training report") -> Path:
    """Draw every panel, run the alarm per run, write ``report.md``; returns its path."""
    runs = _distinct_labels([load_run(p) for p in run_dirs])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    alarms = {run.label: collapse_alarm(run.alarm_rows(), alarm) for run in runs}
    drawn = [p for p in PANELS if plot_panel(p, runs, out / f"{p.name}.png", alarms, smooth)]
    md = [f"# {title}", "", summary_table(runs, alarms), ""]
    if len(group_runs(runs)) < len(runs):  # several runs (seeds) of an arm: their spread
        md += ["## Arms (mean ± sd over runs)", "", arm_table(runs, alarms), ""]
    md += ["## Collapse alarm", "", alarm_rules_text(alarm), ""]
    md += [f"- {run.label}: {alarms[run.label].summary()}" for run in runs]
    md += ["", "## Curves", ""]
    md += [f"![{p.title}]({p.name}.png)\n" for p in drawn]
    missing = [p.name for p in PANELS if p not in drawn]
    if missing:
        md += ["", f"Not logged by any run: {', '.join(missing)}."]
    md += ["", "## Runs", ""] + [f"- `{run.path}`" for run in runs]
    page = out / "report.md"
    atomic_write(page, "\n".join(md) + "\n")
    return page
