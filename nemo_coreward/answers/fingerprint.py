"""Numeric fingerprints of simple answers, to prove two answers DIFFERENT without sympy.

Most symbolic comparisons in a vote are between answers that are not equal (a wrong
answer against the majority). A sympy comparison costs ~5-10 ms; evaluating a small
LaTeX expression at fixed points in plain Python costs microseconds. If two answers
evaluate to clearly different values at the same point, no equivalence checker can call
them equal, so the engine is never asked. Equal fingerprints prove nothing: those pairs
still go to math-verify, so labels stay exactly math-verify's.

Supported: numbers, single-letter variables (not ``e``/``i``, which may be constants),
``+ - * /``, implicit products, ``^`` (LaTeX single-token exponents), ``\\frac``,
``\\sqrt``, ``\\cdot``, ``\\times``, parentheses and braces, and top-level comma lists in
``( )`` / ``[ ]`` brackets. Anything else has no fingerprint.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LEN = 200
MAX_EXPONENT = 64
REL_TOL = 1e-4  # far above math-verify's 6-digit rounding; only clear differences count
VARIABLES = "abcdfghjklmnopqrstuvwxyz"
_POINTS = (
    {v: complex(0.37 + 0.113 * k, 0.05 * ((k % 5) - 2)) for k, v in enumerate(VARIABLES)},
    {v: complex(1.7 - 0.061 * k, 0.021 * k) for k, v in enumerate(VARIABLES)},
)
_TOKEN = re.compile(r"\d+\.\d+|\d+|\\frac|\\sqrt|\\cdot|\\times|[a-zA-Z]|[-+*/^(){}\[\],]")


class _Unsupported(Exception):
    pass


@dataclass(frozen=True)
class Fingerprint:
    brackets: str  # "" for a plain expression, else e.g. "[)" for a list/interval
    values: tuple[tuple[complex, ...], ...]  # per element, its value at each point


def _tokens(s: str) -> list[str]:
    out, pos = [], 0
    for m in _TOKEN.finditer(s):
        if m.start() != pos:
            raise _Unsupported(s[pos : m.start()])
        out.append(m.group())
        pos = m.end()
    if pos != len(s):
        raise _Unsupported(s[pos:])
    return out


class _Parser:
    def __init__(self, tokens: list[str], point: dict[str, complex]) -> None:
        self.t, self.i, self.point = tokens, 0, point

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise _Unsupported(f"expected {expected!r}")
        self.i += 1
        return tok

    def expr(self) -> complex:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> complex:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                value *= self.unary()
            elif tok == "/":
                self.take()
                value /= self.unary()
            elif tok is not None and (tok[0].isalnum() or tok in ("(", "{", "\\frac", "\\sqrt")):
                value *= self.power()  # implicit product: 2x, x(y+1)
            else:
                return value

    def unary(self) -> complex:
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> complex:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            tok = self.peek()
            if tok is not None and tok.isdigit() and len(tok) > 1:  # x^23 is x^2 * 3 in LaTeX
                self.t[self.i] = tok[1:]
                exponent = complex(int(tok[0]))
            else:
                exponent = self.group()
            if abs(exponent) > MAX_EXPONENT:
                raise _Unsupported("exponent too large")
            return base**exponent
        return base

    def group(self) -> complex:
        """A LaTeX argument: ``{...}`` or one token (``\\frac12`` has been normalised)."""
        if self.peek() == "{":
            self.take()
            value = self.expr()
            self.take("}")
            return value
        return self.atom()

    def atom(self) -> complex:
        tok = self.take()
        if tok[0].isdigit():
            return complex(float(tok))
        if tok in ("(", "{"):
            value = self.expr()
            self.take(")" if tok == "(" else "}")
            return value
        if tok == "\\frac":
            num = self.group()
            return num / self.group()
        if tok == "\\sqrt":
            return self.group() ** 0.5
        if len(tok) == 1 and tok in VARIABLES:
            return self.point[tok]
        raise _Unsupported(tok)


def _evaluate(s: str) -> tuple[complex, ...]:
    values = []
    for point in _POINTS:
        p = _Parser(_tokens(s), point)
        v = p.expr()
        if p.peek() is not None:
            raise _Unsupported("trailing input")
        values.append(v)
    return tuple(values)


def fingerprint(key: str) -> Fingerprint | None:
    """Fingerprint of a canonical key (see ``normalize``), or ``None`` when unsupported."""
    if not key or len(key) > MAX_LEN:
        return None
    try:
        if key[0] in "([" and key[-1] in ")]" and "," in key:
            inner = key[1:-1]
            if any(c in inner for c in "()[]{}"):
                return None  # nested brackets: leave to the engine
            return Fingerprint(key[0] + key[-1], tuple(_evaluate(x) for x in inner.split(",")))
        return Fingerprint("", (_evaluate(key),))
    except (_Unsupported, ZeroDivisionError, OverflowError, ValueError):
        return None


def _close(a: complex, b: complex) -> bool:
    return abs(a - b) <= REL_TOL * max(1.0, abs(a), abs(b))


def clearly_different(a: Fingerprint | None, b: Fingerprint | None) -> bool:
    """True only when the two answers cannot be equal under any equivalence checker."""
    if a is None or b is None:
        return False
    if a.brackets == "" and b.brackets == "":
        return not all(_close(x, y) for x, y in zip(a.values[0], b.values[0]))
    if a.brackets and b.brackets:
        # math-verify never equates an interval or tuple with one of another length or
        # with different brackets ("[1,2)" vs "(1,2)"); sets ("\{1,2\}") have no
        # fingerprint, so their order-free comparison stays with the engine.
        if len(a.values) != len(b.values) or a.brackets != b.brackets:
            return True
        return any(not _close(x, y) for ea, eb in zip(a.values, b.values) for x, y in zip(ea, eb))
    return True  # an interval or tuple is never equal to a single value
