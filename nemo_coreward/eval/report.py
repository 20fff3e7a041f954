"""Plots and a markdown page over one or more training run directories (``coreward report``).

A run directory (see ``nemo_coreward.embedded.rundir``) holds ``metrics.jsonl`` (one row
per step), ``eval.json`` (held-out accuracy before/after) and ``config.yaml`` (the reward's
name labels the run in legends). Each panel is one PNG with every run overlaid; a metric a
run did not log is left out of that run's lines, and a panel no run has is not drawn.
Collapse shows in curves, not in a final number: majority ratio and twin agreement going
up while held-out or pseudo-label accuracy goes down is the failure the paper's figures
show for self-rewarding baselines, so the page also runs the collapse alarm per run.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_coreward.reward.alarm import AlarmConfig, AlarmResult, collapse_alarm, read_rows, series

HELDOUT_KEY = "heldout_accuracy"
MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # per run, on sparse (marked) lines


@dataclass(frozen=True)
class Line:
    """One curve of a panel: the first of ``keys`` a run logged, drawn with ``style``."""

    keys: tuple[str, ...]
    label: str
    style: str = "-"


@dataclass(frozen=True)
class Panel:
    name: str
    title: str
    lines: tuple[Line, ...]
    ylabel: str = ""
    unit_range: bool = False  # a rate or accuracy: y from 0 to 1


PANELS: tuple[Panel, ...] = (
    Panel("reward", "Reward (mean over rollouts)", (Line(("reward_mean",), "reward"),),
          "reward", True),
    Panel("heldout_accuracy", "Held-out greedy accuracy",
          (Line((HELDOUT_KEY,), "held-out accuracy", "-o"),), "accuracy", True),
    Panel("label_accuracy", "Pseudo-label and reward accuracy (vs known answers)",
          (Line(("pseudo_label_accuracy",), "pseudo-label acc."),
           Line(("reward_accuracy",), "reward acc.", "--"),
           Line(("teacher_label_accuracy",), "teacher label acc.", ":")), "accuracy", True),
    Panel("majority_ratio", "Majority ratio",
          (Line(("majority_ratio",), "policy"),
           Line(("teacher_majority_ratio",), "teacher", "--")), "ratio", True),
    Panel("twin_agreement", "Twin agreement",
          (Line(("twin_agreement",), "twin agreement"),
           Line(("teacher_policy_agreement",), "teacher-policy agreement", "--")),
          "share of pairs", True),
    Panel("answer_entropy", "Answer entropy (per group)",
          (Line(("answer_entropy",), "answer entropy"),), "nats"),
    Panel("empty_answer_rate", "Empty-answer rate",
          (Line(("empty_answer_rate",), "no final answer"),), "share of rollouts", True),
    Panel("response_length", "Response length",
          (Line(("response_length",), "tokens"),), "tokens"),
    Panel("kl", "KL to the reference", (Line(("kl", "kl_loss"), "KL"),), "KL"),
    Panel("entropy", "Token entropy",
          (Line(("entropy", "token_entropy", "rollout_entropy"), "entropy"),), "nats"),
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
    rows = read_rows(run_dir / "metrics.jsonl")
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


def plot_panel(panel: Panel, runs: Sequence[Run], path: Path, alarms: dict[str, AlarmResult],
               smooth: int = 1) -> bool:
    """Draw one panel to ``path``; False (and no file) when no run has any of its lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = False
    for i, run in enumerate(runs):
        colour, marker = colours[i % len(colours)], MARKERS[i % len(MARKERS)]
        for line in panel.lines:
            key = next((k for k in line.keys if run.points(k)), None)
            if key is None:
                continue
            steps, values = zip(*run.points(key))
            shown = _trailing_mean(values, smooth) if smooth > 1 else list(values)
            label = run.label if len(panel.lines) == 1 else f"{run.label}: {line.label}"
            ax.plot(steps, shown, line.style.replace("o", marker), color=colour, label=label,
                    linewidth=1.6, markersize=5, alpha=0.85)
            drawn = True
        alarm = alarms.get(run.label)
        if alarm is not None and alarm.fired:
            ax.axvline(alarm.step, color=colour, linestyle=":", linewidth=1.2,
                       label=f"{run.label}: collapse alarm")
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
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
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
    }
    chosen = "; ".join(rules[r] for r in alarm.rules)
    return (f"Rules, over {alarm.window}-step means, each holding at {alarm.patience} points "
            f"in a row: {chosen}.")


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path,
                 alarm: AlarmConfig = AlarmConfig(), smooth: int = 1,
                 title: str = "Training report") -> Path:
    """Draw every panel, run the alarm per run, write ``report.md``; returns its path."""
    runs = [load_run(p) for p in run_dirs]
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two run directories share a name: {labels}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    alarms = {run.label: collapse_alarm(run.alarm_rows(), alarm) for run in runs}
    drawn = [p for p in PANELS if plot_panel(p, runs, out / f"{p.name}.png", alarms, smooth)]
    md = [f"# {title}", "", summary_table(runs, alarms), "", "## Collapse alarm", "",
          alarm_rules_text(alarm), ""]
    md += [f"- {run.label}: {alarms[run.label].summary()}" for run in runs]
    md += ["", "## Curves", ""]
    md += [f"![{p.title}]({p.name}.png)\n" for p in drawn]
    missing = [p.name for p in PANELS if p not in drawn]
    if missing:
        md += ["", f"Not logged by any run: {', '.join(missing)}."]
    md += ["", "## Runs", ""] + [f"- `{run.path}`" for run in runs]
    page = out / "report.md"
    page.write_text("\n".join(md) + "\n", encoding="utf-8")
    return page
