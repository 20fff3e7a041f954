"""Markdown tables of evaluation results (``results.md``), from ``results.json``'s data."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


def _metric_order(key: str) -> tuple[int, int, str]:
    """pass@1_greedy first, then avg@k, maj@k, pass@k by k."""
    match = re.fullmatch(r"(pass|avg|maj)@(\d+)(_greedy)?", key)
    if not match:
        return (9, 0, key)
    kind = {"avg": 1, "maj": 2, "pass": 3}[match.group(1)]
    return (0 if match.group(3) else kind, int(match.group(2)), key)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def metrics_table(by_name: Mapping[str, Mapping[str, float]], first: str) -> str:
    """One row per name (benchmark or level): n, then every metric in percent."""
    keys = sorted({k for m in by_name.values() for k in m if k != "n"}, key=_metric_order)
    rows = [[name, str(int(m.get("n", 0)))] + [_pct(m[k]) if k in m else "" for k in keys]
            for name, m in by_name.items()]
    return table(rows, [first, "n", *keys])


def results_markdown(summary: Mapping[str, Any]) -> str:
    """The whole ``results.md``: headline table, all metrics, per-level breakdowns."""
    benchmarks = summary["benchmarks"]
    settings = summary["settings"]
    out = [f"# Evaluation of `{summary['model']}`", ""]
    out.append(
        f"Temperature {settings['temperature']}, greedy {'on' if settings['greedy'] else 'off'}, "
        f"max {settings['max_new_tokens']} new tokens, grader `{settings['equivalence']}`. "
        "All numbers in percent."
    )
    out += ["", "## Headline", ""]
    rows = []
    for name, res in benchmarks.items():
        head = res.get("headline")
        rows.append([name, str(int(res["metrics"]["n"])),
                     head["metric"] if head else "", _pct(head["value"]) if head else ""])
    out.append(table(rows, ["benchmark", "n", "metric", "score"]))
    out += ["", "## All metrics", "", metrics_table(
        {name: res["metrics"] for name, res in benchmarks.items()}, "benchmark")]
    for name, res in benchmarks.items():
        if res.get("levels"):
            out += ["", f"## {name} by level", "", metrics_table(res["levels"], "level")]
    return "\n".join(out) + "\n"
