"""``coreward score``: score logged rollouts offline; the reference interface of the reward.

Input: JSONL, one rollout a line: ``pair_id`` (string or integer), ``side`` (0 = the
original, 1..k = rephrasings), ``response``, optional ``ground_truth``,
``self_certainty``, ``entropy``, and ``role`` ("policy", the default, or "teacher" for
the Co-rewarding-II label rollouts). Output: one line per input line, in order, with
``pair_id``, ``side``, ``answer``, ``label`` and ``reward`` (``null`` for teacher lines).
Everything is read and checked before anything is written, and the output is written
atomically (``nemo_coreward.io``), so a bad line never leaves a half-written file. Input is
read by the shared JSONL reader: a torn last line is skipped with a warning, and text that
is not valid Unicode (bad UTF-8, an escaped lone surrogate) is replaced with U+FFFD and
counted (``repaired_lines``), so such text never loses the scores already computed. Bad
input ends in one line naming the file and line, exit status 2.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

from nemo_coreward.answers import FALLBACKS, MODES
from nemo_coreward.errors import CommandParser, one_line_errors
from nemo_coreward.io.atomic import atomic_write
from nemo_coreward.io.jsonl import (
    JsonlRows,
    dumps_line,
    parse_jsonl,
    read_jsonl,
    write_jsonl,
)
from nemo_coreward.reward.rewards import REWARDS
from nemo_coreward.reward.scoring import RewardConfig, score_rollouts
from nemo_coreward.reward.types import Rollout


class BadLine(ValueError):
    pass


@dataclass(frozen=True)
class InputLine:
    where: str
    rollout: Rollout
    teacher: bool


def _optional_float(obj: dict[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadLine(f"{where}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def parse_row(obj: Any, where: str) -> InputLine:
    """One rollout from a parsed input line; ``where`` ("file:line") starts any error."""
    if not isinstance(obj, dict):
        raise BadLine(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("pair_id", "side", "response"):
        if key not in obj:
            raise BadLine(f"{where}: missing key {key!r}")
    pair_id, side, response = obj["pair_id"], obj["side"], obj["response"]
    if isinstance(pair_id, bool) or not isinstance(pair_id, (str, int)):
        raise BadLine(f"{where}: 'pair_id' must be a string or an integer, got {pair_id!r}")
    if isinstance(side, bool) or not isinstance(side, int) or side < 0:
        raise BadLine(f"{where}: 'side' must be an integer >= 0, got {side!r}")
    if not isinstance(response, str):
        raise BadLine(f"{where}: 'response' must be a string, got {type(response).__name__}")
    gt = obj.get("ground_truth")
    if gt is not None and not isinstance(gt, (str, int, float)):
        raise BadLine(f"{where}: 'ground_truth' must be a string or a number, got {gt!r}")
    role = obj.get("role", "policy")
    if role not in ("policy", "teacher"):
        raise BadLine(f"{where}: 'role' must be 'policy' or 'teacher', got {role!r}")
    rollout = Rollout(
        pair_id=pair_id,
        side=side,
        response=response,
        ground_truth=None if gt is None else str(gt),
        self_certainty=_optional_float(obj, "self_certainty", where),
        entropy=_optional_float(obj, "entropy", where),
    )
    return InputLine(where, rollout, role == "teacher")


def read_input(found: JsonlRows, skip_bad: bool) -> tuple[list[InputLine], list[str]]:
    """Rollouts of the lines the shared JSONL reader returned; bad rows raise ``BadLine``
    or, with ``skip_bad``, are counted with the reader's own skipped lines."""
    parsed, skipped = [], list(found.skipped)
    for obj, number in zip(found.rows, found.lines):
        try:
            parsed.append(parse_row(obj, f"{found.path}:{number}"))
        except BadLine as e:
            if not skip_bad:
                raise
            skipped.append(str(e))
    return parsed, skipped


@one_line_errors("coreward score")
def main(argv: list[str]) -> int:
    ap = CommandParser(prog="coreward score", description=__doc__.split("\n\n")[0])
    ap.add_argument("rollouts", help="input JSONL ('-' for standard input)")
    ap.add_argument("--reward", default="co_reward", choices=REWARDS.names())
    ap.add_argument("--equivalence", default="exact", choices=MODES)
    ap.add_argument("--fallback", action="append", default=[], choices=FALLBACKS,
                    help="answer extraction fallback, in order (repeatable)")
    ap.add_argument("--timeout", type=float, default=1.0, help="seconds per symbolic comparison")
    ap.add_argument("--out", required=True, help="scored JSONL ('-' for standard output)")
    ap.add_argument("--metrics", help="write the collapse metrics here as JSON")
    ap.add_argument("--skip-bad", action="store_true", help="skip and count malformed lines")
    args = ap.parse_args(argv)

    if args.rollouts == "-":
        found = parse_jsonl(sys.stdin.buffer.read(), "<stdin>", objects=False,
                            skip_bad=args.skip_bad)
    elif not os.path.isfile(args.rollouts):
        raise FileNotFoundError(f"{args.rollouts}: no such file (give a rollouts JSONL file, "
                                "or - for standard input)")
    else:
        found = read_jsonl(args.rollouts, objects=False, skip_bad=args.skip_bad)
    lines, skipped = read_input(found, args.skip_bad)
    config = RewardConfig(args.reward, args.equivalence, tuple(args.fallback), args.timeout)
    policy = [x.rollout for x in lines if not x.teacher]
    teacher = [x.rollout for x in lines if x.teacher]
    scored = score_rollouts(policy, config, teacher=teacher or None)

    out_rows, scores = [], iter(scored.scores)
    for x in lines:
        r = x.rollout
        if x.teacher:
            row = {"pair_id": r.pair_id, "side": r.side, "role": "teacher", "reward": None}
        else:
            s = next(scores)
            row = {"pair_id": r.pair_id, "side": r.side, "answer": s.answer, "label": s.label,
                   "reward": s.reward}
            if s.failure:
                row["failure"] = s.failure
        out_rows.append(row)
    metrics = dict(scored.metrics, skipped_lines=float(len(skipped)),
                   repaired_lines=float(found.repaired))
    if args.out == "-":
        sys.stdout.write("".join(dumps_line(row) for row in out_rows))
    else:
        write_jsonl(args.out, out_rows)
    if args.metrics:
        atomic_write(args.metrics, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    for msg in skipped:
        print(f"coreward score: skipped {msg}", file=sys.stderr)
    summary = ", ".join(f"{k}={metrics[k]:.3f}"
                        for k in ("reward_mean", "majority_ratio", "twin_agreement")
                        if k in metrics)
    print(f"coreward score: {len(scored.scores)} rollouts scored with {args.reward} "
          f"({args.equivalence}); {summary}; {len(skipped)} lines skipped, "
          f"{found.repaired} with invalid Unicode repaired", file=sys.stderr)
    return 0
