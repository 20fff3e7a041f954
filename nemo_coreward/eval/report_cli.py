"""``coreward report RUN_DIR [RUN_DIR ...] --out DIR``: plots, a page and the collapse alarm.

Writes one PNG per metric (every run overlaid, labelled by its reward) and ``report.md``
with a summary table and the collapse alarm's verdict per run. Exit status 0; 3 when
``--fail-on-alarm`` is given and the alarm fired for some run (for scripts and CI).
"""
from __future__ import annotations

import argparse
import sys

from nemo_coreward.errors import CommandParser
from nemo_coreward.reward.alarm import AlarmConfig


def _parser() -> CommandParser:
    d = AlarmConfig()
    p = CommandParser(prog="coreward report", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (with metrics.jsonl / eval.json)")
    p.add_argument("--out", required=True, help="output directory for PNGs and report.md")
    p.add_argument("--title", default="Training report")
    p.add_argument("--smooth", type=int, default=1, help="trailing mean over N steps in plots")
    p.add_argument("--alarm-window", type=int, default=d.window)
    p.add_argument("--alarm-accuracy-drop", type=float, default=d.accuracy_drop)
    p.add_argument("--alarm-majority-rise", type=float, default=d.majority_rise)
    p.add_argument("--alarm-gap", type=float, default=d.gap)
    p.add_argument("--alarm-gap-rise", type=float, default=d.gap_rise)
    p.add_argument("--alarm-split", type=float, default=d.split)
    p.add_argument("--alarm-shared", type=float, default=d.shared)
    p.add_argument("--alarm-rules", default=",".join(d.rules),
                   help="comma-separated subset of drop,gap,split,shared (docs/evaluation.md)")
    p.add_argument("--alarm-patience", type=int, default=d.patience)
    p.add_argument("--alarm-noise-z", type=float, default=d.noise_z,
                   help="standard errors of label noise a fall must exceed (0: off)")
    p.add_argument("--fail-on-alarm", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from nemo_coreward.eval.report import load_run, write_report
    from nemo_coreward.reward.alarm import collapse_alarm

    try:
        if args.smooth < 1:
            raise ValueError(f"--smooth must be >= 1, got {args.smooth}")
        alarm = AlarmConfig(window=args.alarm_window, accuracy_drop=args.alarm_accuracy_drop,
                            majority_rise=args.alarm_majority_rise, gap=args.alarm_gap,
                            gap_rise=args.alarm_gap_rise, split=args.alarm_split,
                            shared=args.alarm_shared,
                            rules=tuple(r for r in args.alarm_rules.split(",") if r),
                            patience=args.alarm_patience, noise_z=args.alarm_noise_z)
        page = write_report(args.runs, args.out, alarm, smooth=args.smooth, title=args.title)
    except (ValueError, FileNotFoundError) as exc:
        print(f"coreward report: {exc}", file=sys.stderr)
        return 2
    print(page.read_text(encoding="utf-8"))
    print(f"written to {page}")
    fired = [r for r in args.runs if collapse_alarm(load_run(r).alarm_rows(), alarm).fired]
    return 3 if args.fail_on_alarm and fired else 0
