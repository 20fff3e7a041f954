"""Grading cost of one paper-scale Co-Reward step, against a naive equivalence-aware peer.

A step of the paper's recipe is 128 pairs x 2 sides x 8 rollouts = 2,048 responses of
about 1,500 words each. Their boxed answers here take the surface forms real models
write: integers, fractions (``\\frac``, ``\\dfrac``, ``a/b``), decimals, ``\\text{}``
units, spacing, intervals, tuples and algebraic expressions, plus wrong and missing
answers.

The peer is what an equivalence-aware Co-Reward grader does without bucketing: parse
every answer with math-verify and call ``verify`` on every pair of answers of a pair's
rollouts, then cluster greedily and vote. Ours (``co_reward`` in ``math_verify`` mode)
must give the same rewards, at least 20x faster, in at most 1 s for the step on one core,
on both answer mixes: ``plain`` (mostly numbers) and ``symbolic`` (mostly expressions:
polynomials expanded and factored, radicals, multiples of pi, tuples, intervals, sets,
fraction spellings, and a few pathological answers). The peer parses each distinct
answer once (parsing is deterministic, so its verdicts are unchanged).

    python benchmarks/reward_throughput.py [--mix plain] [--mix symbolic] [--pairs 128]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter

from machine import describe

from nemo_coreward.answers import extract_answer
from nemo_coreward.reward import RewardConfig, Rollout, score_rollouts
from nemo_coreward.reward.scoring import grader_for

WORDS = ("we", "compute", "the", "sum", "of", "both", "terms", "then", "simplify", "each",
         "factor", "so", "that", "value", "gives", "check", "again", "since", "hence", "note")


def forms_of(kind: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """(equivalent surface forms of one answer, wrong answers) for an answer kind."""
    if kind == "int":
        n = rng.randint(2, 999)
        return ([str(n), f"{n}.0", f"{n} \\text{{ cm}}", f" {n} ", f"x = {n}"],
                [str(n + 1), str(n - 1)])
    if kind == "frac":
        a, b = rng.randint(1, 9), rng.choice([2, 4, 5, 8])
        while a % b == 0:
            a += 1
        return ([f"\\frac{{{a}}}{{{b}}}", f"\\dfrac{{{a}}}{{{b}}}", f"{a}/{b}", str(a / b)],
                [f"\\frac{{{a + 1}}}{{{b}}}", f"\\frac{{{b}}}{{{a}}}"])
    if kind == "decimal":
        v = rng.randint(11, 999) / 10
        return [f"{v}", f"{v}0", f"\\${v}", f"{v} "], [f"{v + 1}", f"{v / 10}"]
    if kind == "expr":
        a = rng.randint(1, 9)
        return ([f"(x+{a})^2", f"x^2+{2 * a}x+{a * a}", f"(x + {a})^{{2}}", f"({a}+x)^2"],
                [f"x^2+{a * a}", f"(x-{a})^2"])
    if kind == "interval":
        a, b = rng.randint(-9, 0), rng.randint(1, 9)
        return ([f"[{a}, {b})", f"[{a},{b})", f"\\left[{a}, {b}\\right)"],
                [f"({a}, {b})", f"[{a}, {b}]"])
    if kind == "sqrt":
        a = rng.choice([2, 3, 5, 6, 7])
        return ([f"2\\sqrt{{{a}}}", f"\\sqrt{{{4 * a}}}", f"2 \\sqrt{a}"],
                [f"\\sqrt{{{a}}}", f"4\\sqrt{{{a}}}"])
    raise ValueError(kind)


def symbolic_forms_of(kind: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """(equivalent spellings, wrong answers) for the symbolic kinds of MATH answers."""
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    if kind == "poly":  # expanded and factored
        return ([f"(x+{a})(x+{b})", f"x^2+{a + b}x+{a * b}", f"(x+{b})(x+{a})",
                 f"x^{{2}} + {a + b}x + {a * b}"],
                [f"(x-{a})(x+{b})", f"x^2+{a * b}", f"x^2+{a + b}x-{a * b}"])
    if kind == "radical":
        p = rng.choice([2, 3, 5, 6, 7])
        return ([f"\\frac{{\\sqrt{{{p}}}}}{{{p}}}", f"\\frac{{1}}{{\\sqrt{{{p}}}}}",
                 f"\\dfrac{{\\sqrt{p}}}{{{p}}}", f"\\frac{{{a}\\sqrt{{{p}}}}}{{{a * p}}}"],
                [f"\\sqrt{{{p}}}", f"\\frac{{\\sqrt{{{p}}}}}{{2}}", f"{p}\\sqrt{{{p}}}"])
    if kind == "pi":
        return ([f"\\frac{{{a}\\pi}}{{{b + 1}}}", f"\\frac{{{a}}}{{{b + 1}}}\\pi",
                 f"{a}\\pi/{b + 1}", f"\\dfrac{{{a}}}{{{b + 1}}}\\pi"],
                [f"\\frac{{{a + 1}\\pi}}{{{b + 1}}}", f"{a}\\pi", f"\\frac{{\\pi}}{{{b + 2}}}"])
    if kind == "tuple":
        return ([f"({a}, -{b})", f"({a},-{b})", f"\\left({a}, -{b}\\right)",
                 f"(\\frac{{{2 * a}}}{{2}}, -{b})"],
                [f"(-{b}, {a})", f"({a}, {b})", f"({a}, -{b}, 0)"])
    if kind == "interval":
        return ([f"(-\\infty, {a}]", f"(-\\infty,{a}]", f"\\left(-\\infty, {a}\\right]"],
                [f"(-\\infty, {a})", f"[{a}, \\infty)", f"(-\\infty, {a + 1}]"])
    if kind == "set":
        return ([f"\\{{{a}, {a + b}\\}}", f"\\{{{a + b}, {a}\\}}", f"\\{{{a},{a + b}\\}}"],
                [f"\\{{{a}, {a + b + 1}\\}}", f"\\{{{a}\\}}"])
    if kind == "fraction":
        d = rng.choice([3, 7, 9, 11])
        return ([f"\\frac{{{a}}}{{{d}}}", f"\\dfrac{{{a}}}{{{d}}}", f"{a}/{d}", f"\\tfrac{a}{d}",
                 f"\\frac{{{2 * a}}}{{{2 * d}}}"],
                [f"\\frac{{{d}}}{{{a}}}", f"\\frac{{{a + 1}}}{{{d}}}", f"{a / d:.2f}"])
    raise ValueError(kind)


KINDS = ["int"] * 10 + ["frac"] * 3 + ["decimal"] * 2 + ["expr"] * 2 + ["interval"] * 2 + ["sqrt"]
SYMBOLIC_KINDS = (["poly"] * 3 + ["radical"] * 2 + ["pi"] * 2 + ["tuple", "interval", "set"]
                  + ["fraction"] * 2)
# Answers a sampling policy also writes: broken LaTeX, a division by zero, a tower of
# exponents, deep parentheses, an answer far too long to parse.
PATHOLOGICAL = ["x^{x^{x^{x^{x}}}}", "\\frac{1}{0}", "\\sqrt{", "}{", "((((((((((x))))))))))",
                "+".join(["y"] * 300), "\\left(1, \\right]"]
MIXES = {"plain": (KINDS, forms_of), "symbolic": (SYMBOLIC_KINDS, symbolic_forms_of)}


def reasoning(rng: random.Random, words: int) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return body + f" so $\\frac{{{rng.randint(1, 9)}}}{{{rng.randint(2, 9)}}}$ and " \
                  f"an earlier guess \\boxed{{{rng.randint(0, 9)}}} is refined. "


def make_step(pairs: int, rollouts: int, seed: int, words: int,
              mix: str = "plain") -> list[Rollout]:
    """One step; the ``symbolic`` mix also writes a pathological answer in 2% of rollouts."""
    kinds, forms = MIXES[mix]
    rng = random.Random(seed)
    out = []
    for p in range(pairs):
        right, wrong = forms(rng.choice(kinds), rng)
        for side in (0, 1):
            for _ in range(rollouts):
                u = rng.random()
                if u < 0.6:
                    tail = f"The final answer is $\\boxed{{{rng.choice(right)}}}$."
                elif u < 0.85:
                    tail = f"The final answer is $\\boxed{{{rng.choice(wrong)}}}$."
                elif mix == "symbolic" and u < 0.87:
                    tail = f"The final answer is $\\boxed{{{rng.choice(PATHOLOGICAL)}}}$."
                else:
                    tail = "I could not finish."
                out.append(Rollout(f"q{p}", side, reasoning(rng, words) + tail, right[0]))
    return out


def naive_rewards(rollouts: list[Rollout]) -> list[float]:
    """All-pairs math-verify inside each pair, greedy clusters, twin majority vote."""
    from math_verify import parse, verify

    cache: dict[str, list] = {}

    def parsed(a: str):  # parsing is deterministic: one parse per distinct answer
        if a not in cache:
            cache[a] = parse("\\boxed{" + a + "}")
        return cache[a]

    answers = [extract_answer(r.response) for r in rollouts]
    by_pair: dict[str, list[int]] = {}
    for i, r in enumerate(rollouts):
        by_pair.setdefault(r.pair_id, []).append(i)
    cls = [-1] * len(rollouts)
    for idx in by_pair.values():
        n = len(idx)
        same = [[False] * n for _ in range(n)]
        for a in range(n):
            for b in range(a + 1, n):
                ga, gb = answers[idx[a]].strip(), answers[idx[b]].strip()
                if ga and gb:
                    same[a][b] = same[b][a] = verify(parsed(ga), parsed(gb))
        reps: list[int] = []
        for a in range(n):
            if not answers[idx[a]].strip():
                continue
            for c, r in enumerate(reps):
                if r == a or same[r][a] or answers[idx[r]].strip() == answers[idx[a]].strip():
                    cls[idx[a]] = c
                    break
            else:
                reps.append(a)
                cls[idx[a]] = len(reps) - 1
    labels = {}
    for pid, idx in by_pair.items():
        for side in (0, 1):
            votes = Counter(cls[i] for i in idx if rollouts[i].side != side and cls[i] >= 0)
            labels[(pid, side)] = votes.most_common(1)[0][0] if votes else -1
    return [1.0 if cls[i] >= 0 and cls[i] == labels[(r.pair_id, r.side)] else 0.0
            for i, r in enumerate(rollouts)]


def cpu_seconds() -> float:
    """CPU time of this process, its finished children and math-verify's live child.

    The step is sequential (the parent waits while the child compares), so on an idle
    core its wall time is this sum; on a shared machine the sum is what stays fair."""
    judge = grader_for("math_verify", 1.0)._judge
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    for proc in (judge._proc, judge._spare):
        try:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (AttributeError, OSError):
            continue
    return total


def run_mix(mix: str, args: argparse.Namespace) -> bool:
    """Time every mode and the peer on one step of ``mix``; True when the targets hold."""
    step = make_step(args.pairs, args.rollouts, args.seed, args.words, mix)
    chars = sum(len(r.response) for r in step)
    print(f"\n[{mix} mix] {args.pairs} pairs x 2 sides x {args.rollouts} rollouts = {len(step)} "
          f"responses, {chars / len(step):,.0f} chars each on average")

    t = time.perf_counter()
    for r in step:
        extract_answer(r.response)
    print(f"extract last \\boxed{{}} of all responses: {1e3 * (time.perf_counter() - t):.1f} ms")

    results = {}
    judge = grader_for("math_verify", 1.0)._judge
    calls_before = judge.calls
    for mode in ("exact", "normalized", "math_verify"):
        t, cpu = time.perf_counter(), cpu_seconds()
        scored = score_rollouts(step, RewardConfig("co_reward", mode))
        results[mode] = (time.perf_counter() - t, cpu_seconds() - cpu, scored)
        print(f"ours  co_reward {mode:<11}: {results[mode][0]:7.3f} s wall, "
              f"{results[mode][1]:6.2f} s CPU  "
              f"reward_mean={scored.metrics['reward_mean']:.3f}")
    print(f"      math-verify comparisons asked by ours: {judge.calls - calls_before}, "
          f"timeouts so far: {judge.timeouts}")

    subset = step if args.naive_pairs is None else step[: args.naive_pairs * 2 * args.rollouts]
    t, cpu = time.perf_counter(), cpu_seconds()
    naive = naive_rewards(subset)
    naive_s = (time.perf_counter() - t) * len(step) / len(subset)
    naive_cpu = (cpu_seconds() - cpu) * len(step) / len(subset)
    scale = "" if subset is step else f" (measured on {len(subset)} responses, scaled)"
    print(f"naive all-pairs math-verify            : {naive_s:7.3f} s wall, "
          f"{naive_cpu:6.2f} s CPU{scale}")

    ours_sub = score_rollouts(subset, RewardConfig("co_reward", "math_verify")).rewards
    mismatches = sum(a != b for a, b in zip(ours_sub, naive))
    ours_s, ours_cpu = results["math_verify"][:2]
    print(f"rewards identical to the naive peer: {mismatches == 0} ({mismatches} mismatches "
          f"of {len(naive)})")
    print(f"speed-up math_verify mode vs naive: {naive_s / ours_s:.1f}x wall, "
          f"{naive_cpu / ours_cpu:.1f}x CPU (target >= 20x)")
    print(f"whole step on one core: {ours_s:.3f} s wall, {ours_cpu:.3f} s CPU (target <= 1 s CPU)")
    return mismatches == 0 and naive_cpu / ours_cpu >= 20 and ours_cpu <= 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--words", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix", choices=sorted(MIXES), action="append",
                    help="answer mix (repeatable; default: all)")
    ap.add_argument("--naive-pairs", type=int, default=None,
                    help="time the naive peer on this many pairs only and scale up (it is slow)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, children too
    print(f"CPU: {describe()}; one core used")

    # Start math-verify's child and its LaTeX parser outside the timing, as in a running
    # trainer (the child lives across steps); no answer of the step is cached by this.
    grader_for("math_verify", 1.0)._judge.parsable(r"\sin w")
    ok = [run_mix(mix, args) for mix in args.mix or sorted(MIXES)]
    print("PASS" if all(ok) else "FAIL")
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
