"""``coreward score``: score logged rollouts offline; the reference interface of the reward.

Input: JSONL, one rollout a line: ``pair_id`` (string or integer), ``side`` (0 = the
original, 1..k = rephrasings), ``response``, optional ``ground_truth``,
``self_certainty``, ``entropy``, and ``role`` ("policy", the default, or "teacher" for
the Co-rewarding-II label rollouts). Output: one line per input line, in order, with
``pair_id``, ``side``, ``answer``, ``label`` and ``reward`` (``null`` for teacher lines).
Everything is read and checked before anything is written, and the output is written
to a temporary file and renamed, so a bad line never leaves a half-written file.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Iterable

from nemo_coreward.answers import FALLBACKS, MODES
from nemo_coreward.reward.rewards import REWARDS
from nemo_coreward.reward.scoring import RewardConfig, score_rollouts
from nemo_coreward.reward.types import Rollout


class BadLine(ValueError):
    pass


@dataclass(frozen=True)
class InputLine:
    number: int
    rollout: Rollout
    teacher: bool


def _optional_float(obj: dict[str, Any], key: str, number: int) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadLine(f"line {number}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def parse_line(text: str, number: int) -> InputLine:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadLine(f"line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise BadLine(f"line {number}: expected a JSON object, got {type(obj).__name__}")
    for key in ("pair_id", "side", "response"):
        if key not in obj:
            raise BadLine(f"line {number}: missing key {key!r}")
    pair_id, side, response = obj["pair_id"], obj["side"], obj["response"]
    if isinstance(pair_id, bool) or not isinstance(pair_id, (str, int)):
        raise BadLine(f"line {number}: 'pair_id' must be a string or an integer, got {pair_id!r}")
    if isinstance(side, bool) or not isinstance(side, int) or side < 0:
        raise BadLine(f"line {number}: 'side' must be an integer >= 0, got {side!r}")
    if not isinstance(response, str):
        raise BadLine(f"line {number}: 'response' must be a string, got {type(response).__name__}")
    gt = obj.get("ground_truth")
    if gt is not None and not isinstance(gt, (str, int, float)):
        raise BadLine(f"line {number}: 'ground_truth' must be a string or a number, got {gt!r}")
    role = obj.get("role", "policy")
    if role not in ("policy", "teacher"):
        raise BadLine(f"line {number}: 'role' must be 'policy' or 'teacher', got {role!r}")
    rollout = Rollout(
        pair_id=pair_id,
        side=side,
        response=response,
        ground_truth=None if gt is None else str(gt),
        self_certainty=_optional_float(obj, "self_certainty", number),
        entropy=_optional_float(obj, "entropy", number),
    )
    return InputLine(number, rollout, role == "teacher")


def read_lines(lines: Iterable[str], skip_bad: bool) -> tuple[list[InputLine], list[str]]:
    parsed, skipped = [], []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            parsed.append(parse_line(text, number))
        except BadLine as e:
            if not skip_bad:
                raise
            skipped.append(str(e))
    return parsed, skipped


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".coreward-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="coreward score", description=__doc__.split("\n\n")[0])
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

    try:
        if args.rollouts == "-":
            lines, skipped = read_lines(sys.stdin, args.skip_bad)
        else:
            with open(args.rollouts, encoding="utf-8", errors="strict") as f:
                lines, skipped = read_lines(f, args.skip_bad)
        config = RewardConfig(args.reward, args.equivalence, tuple(args.fallback), args.timeout)
        policy = [x.rollout for x in lines if not x.teacher]
        teacher = [x.rollout for x in lines if x.teacher]
        scored = score_rollouts(policy, config, teacher=teacher or None)
    except (BadLine, ValueError, UnicodeDecodeError, OSError) as e:
        where = "" if isinstance(e, BadLine) or args.rollouts == "-" else f"{args.rollouts}: "
        print(f"coreward score: {where}{e}", file=sys.stderr)
        return 1

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
        out_rows.append(json.dumps(row, ensure_ascii=False))
    text = "".join(line + "\n" for line in out_rows)
    metrics = dict(scored.metrics, skipped_lines=float(len(skipped)))
    if args.out == "-":
        sys.stdout.write(text)
    else:
        _write_atomic(args.out, text)
    if args.metrics:
        _write_atomic(args.metrics, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    for msg in skipped:
        print(f"coreward score: skipped {msg}", file=sys.stderr)
    summary = ", ".join(f"{k}={metrics[k]:.3f}" for k in ("reward_mean", "majority_ratio", "twin_agreement")
                        if k in metrics)
    print(f"coreward score: {len(scored.scores)} rollouts scored with {args.reward} "
          f"({args.equivalence}); {summary}; {len(skipped)} lines skipped", file=sys.stderr)
    return 0
