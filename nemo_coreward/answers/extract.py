"""Pull the final answer out of a model response.

The default reproduces the official Co-Reward code (verl's ``last_boxed_only_string`` +
``remove_boxed``): the text inside the LAST ``\\boxed{...}`` (brace-matched) or after
``\\boxed `` up to the next ``$``; no box, or an unclosed last box, gives ``""``.
Deliberate differences, all cases where the official code returns ``""`` or garbage:

- ``\\fbox{x}`` yields ``x`` (the official ``remove_boxed`` raises on it, giving ``""``);
- the position of the last box decides between the ``\\boxed x`` and ``\\boxed{x}``
  forms (the official code takes the space form whenever it appears anywhere).

Fallbacks (off by default, so the paper's reward is unchanged) recover answers that small
models state in prose: ``answer_is`` ("the answer is 16") and ``last_number``.

Cost is linear in the text length for any input: one reverse search and one forward
brace scan, no backtracking regular expression over the whole text.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

BOX_COMMANDS = ("\\boxed", "\\fbox")
FALLBACKS = ("answer_is", "last_number")

# Fallback patterns only ever run on a bounded tail of the text (see _TAIL).
_TAIL = 2000
_ANSWER_IS = re.compile(
    r"(?:final answer|answer)\s*(?:is|:|=)\s*:?\s*\$?([^\n$]{1,200}?)\$?\s*(?:\.\s*)?(?:\n|$)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last box in ``text``, or ``None`` when there is none or it is unclosed.

    ``\\boxed{a{b}c}`` gives ``a{b}c``; ``\\boxed 5$`` gives ``5``; ``\\boxed{`` with no
    matching close gives ``None`` (an earlier closed box is NOT used instead, as in the
    official code, so a truncated response cannot be rewarded for an earlier guess).
    """
    start, command = -1, ""
    for cmd in BOX_COMMANDS:
        idx = text.rfind(cmd)
        if idx > start:
            start, command = idx, cmd
    if start < 0:
        return None
    rest_at = start + len(command)
    if command == "\\boxed" and text.startswith(" ", rest_at):
        return text[rest_at + 1 :].split("$", 1)[0]
    if not text.startswith("{", rest_at):
        return None
    brace, depth = rest_at, 0
    for i in range(brace, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i]
    return None


def _answer_is(text: str) -> str | None:
    matches = _ANSWER_IS.findall(text[-_TAIL:])
    if not matches:
        return None
    answer = matches[-1].strip().rstrip(".").strip()
    return answer or None


def _last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text[-_TAIL:])
    return matches[-1] if matches else None


_FALLBACK_FUNCS = {"answer_is": _answer_is, "last_number": _last_number}


def extract_answer(text: str, fallbacks: Sequence[str] = ()) -> str:
    """The final answer of ``text``: the last box, else the first fallback that finds one.

    Returns ``""`` when nothing is found. ``fallbacks`` is an ordered subset of
    ``FALLBACKS``; an unknown name raises ``ValueError`` listing the valid ones.
    """
    for name in fallbacks:
        if name not in _FALLBACK_FUNCS:
            raise ValueError(f"unknown answer fallback {name!r}; valid: {', '.join(FALLBACKS)}")
    if not isinstance(text, str):
        raise TypeError(f"response must be str, got {type(text).__name__}")
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for name in fallbacks:
        found = _FALLBACK_FUNCS[name](text)
        if found is not None:
            return found
    return ""
