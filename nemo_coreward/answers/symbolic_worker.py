"""Child process of ``SymbolicJudge``: one JSON request per line in, one verdict out.

Runs math-verify on its own main thread, so math-verify's ``signal.alarm`` limits work
here as a soft bound; the parent's kill is the hard one. Parses are cached per answer.
"""
from __future__ import annotations

import json
import sys
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

SOFT_TIMEOUT_S = 1


@lru_cache(maxsize=65536)
def parse_answer(answer: str) -> tuple:
    """Parse a bare answer (the text that was inside ``\\boxed{}``)."""
    return tuple(
        parse(
            "\\boxed{" + answer + "}",
            extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
            parsing_timeout=SOFT_TIMEOUT_S,
        )
    )


def judge(gold: str, pred: str) -> bool:
    g, p = parse_answer(gold), parse_answer(pred)
    if not g or not p:
        return False
    return bool(verify(list(g), list(p), timeout_seconds=SOFT_TIMEOUT_S))


def main() -> None:
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            eq: bool | None = judge(req["gold"], req["pred"])
        except Exception:
            eq = None
        out.write(json.dumps({"eq": eq}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
