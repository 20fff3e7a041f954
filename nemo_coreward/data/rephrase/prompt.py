"""The rewrite prompt and the parser for its result markers.

The default instruction is the one the Co-Reward paper gives (Appendix C) and its code sends
to Qwen3-32B: rewrite with different wording and a different real-world scenario, keep the
mathematics and the answer, and answer only between ``### RESULT_START`` /
``ORIGINAL:`` / ``REWRITE:`` / ``### RESULT_END``. Users may replace it with a template
file of their own; the only requirement is a ``{question}`` slot (filled by plain
substitution, so LaTeX braces elsewhere in a template need no escaping).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nemo_coreward.llm.prompts import PAPER_SYSTEM

START = "### RESULT_START"
END = "### RESULT_END"
ORIGINAL = "ORIGINAL:"
REWRITE = "REWRITE:"
SLOT = "{question}"

DEFAULT_TEMPLATE = f"""You are given a math problem. Please rewrite it using different wording \
and a different real-world scenario, while keeping the underlying mathematical meaning and answer \
exactly the same.

Guidelines:
1. Do not change the math logic or the final answer.
2. Use different words and a new context to make it look like a different problem.
3. Avoid copying phrases or sentence structures from the original.
4. Make sure the rewritten question is natural, clear, and solvable.
5. Output ONLY between the following markers, and strictly in this format (no extra \
explanation):

{START}
{ORIGINAL}
<original question>
{REWRITE}
<rewritten question>
{END}

{SLOT}"""

# The system turn the papers train and evaluate with; also used to solve both phrasings
# in the answer-consistency check.
SOLVE_SYSTEM = PAPER_SYSTEM  # the consistency check solves as the papers' models are prompted


class ParseError(ValueError):
    """The completion does not hold a well-formed result block; the message says why."""


@dataclass(frozen=True)
class Template:
    text: str = DEFAULT_TEMPLATE

    def __post_init__(self) -> None:
        if self.text.count(SLOT) != 1:
            raise ValueError(
                f"a rephrase template needs exactly one {SLOT} slot, found {self.text.count(SLOT)}"
            )

    def render(self, question: str) -> str:
        return self.text.replace(SLOT, question.strip())

    def messages(self, question: str) -> list[dict[str, str]]:
        """One user turn, as the reference rewrite script sends it."""
        return [{"role": "user", "content": self.render(question)}]


def load_template(path: str | Path) -> Template:
    """A user template file; the error names the file when its slot is missing."""
    path = Path(path)
    try:
        return Template(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def solve_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SOLVE_SYSTEM}, {"role": "user", "content": question}]


_THINK = re.compile(r"<think>.*?</think>", re.S)


@dataclass(frozen=True)
class ParsedRewrite:
    original: str
    rewrite: str


def parse_result(text: str) -> ParsedRewrite:
    """The ORIGINAL and REWRITE parts of a completion.

    A reasoning model's ``<think>`` block is dropped first (it may quote the markers). The
    block is the last ``### RESULT_START`` and the first ``### RESULT_END`` after it.
    """
    body = _THINK.sub("", text)
    start = body.rfind(START)
    if start < 0:
        raise ParseError(f"no '{START}' marker")
    end = body.find(END, start)
    if end < 0:
        raise ParseError(f"no '{END}' marker after '{START}'")
    block = body[start + len(START):end]
    if REWRITE not in block:
        raise ParseError(f"no '{REWRITE}' section between the markers")
    head, rewrite = block.split(REWRITE, 1)
    original = head.strip()
    if original.startswith(ORIGINAL):
        original = original[len(ORIGINAL):].strip()
    return ParsedRewrite(original=original, rewrite=rewrite.strip())
