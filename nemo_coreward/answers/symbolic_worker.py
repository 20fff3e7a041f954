"""Child process of ``SymbolicJudge``: one JSON request per line in, one verdict out.

Each request carries a time budget, enforced here with ``setitimer`` (this is the
child's main thread, so signals work and sub-second budgets are possible); math-verify's
own whole-second alarms are switched off. The budget is a ``BaseException``, so neither
math-verify nor sympy swallows it, and math-verify's own errors count as "not equal",
as they do for a plain ``verify`` call. The parent's kill is the hard limit behind it.
Parses are cached per answer. The child warms math-verify's LaTeX parser up before it
says it is ready, so a replacement child answers as fast as the one it replaces.
"""
from __future__ import annotations

import json
import signal
import sys
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify


class Budget(BaseException):
    """The request's time budget ran out."""


def _on_alarm(signum, frame):  # noqa: ARG001
    raise Budget()


@lru_cache(maxsize=65536)
def parse_answer(answer: str) -> tuple:
    """Parse a bare answer (the text that was inside ``\\boxed{}``)."""
    return tuple(
        parse(
            "\\boxed{" + answer + "}",
            extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
            parsing_timeout=None,
        )
    )


def judge(gold: str, pred: str) -> bool:
    g, p = parse_answer(gold), parse_answer(pred)
    if not g or not p:
        return False
    return bool(verify(list(g), list(p), timeout_seconds=None))


def answer(req: dict) -> bool | None:
    """True/False, or None when the budget ran out or math-verify failed.

    ``{"parse": a}`` asks whether ``a`` parses to something math-verify can compare
    (a pathological answer is found here, alone, rather than in every comparison);
    ``{"gold": a, "pred": b}`` asks for equivalence.
    """
    signal.setitimer(signal.ITIMER_REAL, float(req.get("budget_s", 1.0)))
    try:
        if "parse" in req:
            parsed = parse_answer(req["parse"])
            # Evaluating is what math-verify's comparisons do first, and where an answer
            # like 10^{10^{10^{10}}} hangs in C: find that here, once per answer.
            for expr in parsed:
                if hasattr(expr, "doit"):
                    expr.doit()
            return any(not isinstance(expr, str) for expr in parsed)
        return judge(req["gold"], req["pred"])
    except Budget:
        return None
    except Exception:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main() -> None:
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    signal.signal(signal.SIGALRM, _on_alarm)
    judge("(w+1)^3", "w^3+3w^2+3w+1")  # loads the LaTeX grammar: ~1 s cold, not a request's time
    parse_answer.cache_clear()
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        out.write(json.dumps({"eq": answer(json.loads(line))}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
