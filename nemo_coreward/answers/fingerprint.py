"""Numeric fingerprints of simple answers, to prove two answers DIFFERENT without sympy.

Most symbolic comparisons in a vote are between answers that are not equal (a wrong
answer against the majority). A math-verify comparison costs milliseconds (its LaTeX
parse alone 5-100 ms); evaluating a small LaTeX expression at fixed points in plain
Python costs microseconds. If two answers evaluate to clearly different values at the
same point, no equivalence checker can call them equal, so the engine is never asked.
Equal fingerprints prove nothing: ``exact.py`` may still prove such answers equal, and
otherwise the engine is asked, so labels stay exactly math-verify's.

Supported (the grammar, shared with ``exact.py`` through ``parse_key``): numbers,
single-letter variables (not ``e``/``i``, which may be constants), ``\\pi``, ``+ - * /``,
implicit products, ``^`` (LaTeX single-token exponents), ``\\frac``, ``\\sqrt``,
``\\cdot``, ``\\times``, parentheses and braces; top-level comma lists in ``( )`` / ``[ ]``
brackets (tuples, intervals; ``\\infty`` as an element) and in ``\\{ \\}`` (sets).
Anything else has no fingerprint.
"""
from __future__ import annotations

import cmath
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

MAX_LEN = 200
MAX_EXPONENT = 64
REL_TOL = 1e-4  # far above math-verify's 6-digit rounding; only clear differences count
VARIABLES = "abcdfghjklmnopqrstuvwxyz"
INFINITIES = {"\\infty": 1, "+\\infty": 1, "-\\infty": -1}
_POINTS = (
    {v: complex(0.37 + 0.113 * k, 0.05 * ((k % 5) - 2)) for k, v in enumerate(VARIABLES)},
    {v: complex(1.7 - 0.061 * k, 0.021 * k) for k, v in enumerate(VARIABLES)},
)
_TOKEN = re.compile(r"\d+\.\d+|\d+|\\frac|\\sqrt|\\cdot|\\times|\\pi|[a-zA-Z]|[-+*/^(){}\[\],]")


class Unsupported(Exception):
    """The answer is outside the grammar (or too large to evaluate safely)."""


class Domain(Protocol):
    """What values an expression evaluates to: complex numbers here, exact forms in
    ``exact.py``. Values support ``+ - * /`` and unary minus."""

    def number(self, token: str) -> Any: ...
    def variable(self, name: str) -> Any: ...
    def sqrt(self, value: Any) -> Any: ...
    def power(self, base: Any, exponent: Any) -> Any: ...


@dataclass(frozen=True)
class ParsedKey:
    """A key split into its shape and elements: ``brackets`` is ``""`` for one
    expression, else the two brackets (``"[)"``, ``"()"``, ``"{}"`` for a set);
    ``elements`` are the element texts; ``infinity[k]`` is +1/-1 for an infinite
    element, else 0."""

    brackets: str
    elements: tuple[str, ...]
    infinity: tuple[int, ...]


def _tokens(s: str) -> list[str]:
    out, pos = [], 0
    for m in _TOKEN.finditer(s):
        if m.start() != pos:
            raise Unsupported(s[pos : m.start()])
        out.append(m.group())
        pos = m.end()
    if pos != len(s):
        raise Unsupported(s[pos:])
    return out


class _Parser:
    def __init__(self, tokens: list[str], domain: Domain) -> None:
        self.t, self.i, self.d = tokens, 0, domain

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise Unsupported(f"expected {expected!r}")
        self.i += 1
        return tok

    def expr(self) -> Any:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> Any:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "\\cdot", "\\times"):
                self.take()
                value = value * self.unary()
            elif tok == "/":
                self.take()
                value = value / self.unary()
            elif tok is not None and (tok[0].isalnum()
                                      or tok in ("(", "{", "\\frac", "\\sqrt", "\\pi")):
                value = value * self.power()  # implicit product: 2x, x(y+1)
            else:
                return value

    def unary(self) -> Any:
        if self.peek() in ("-", "+"):
            return -self.unary() if self.take() == "-" else self.unary()
        return self.power()

    def power(self) -> Any:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            tok = self.peek()
            if tok is not None and tok.isdigit() and len(tok) > 1:  # x^23 is x^2 * 3 in LaTeX
                self.t[self.i] = tok[1:]
                exponent = self.d.number(tok[0])
            else:
                exponent = self.group()
            return self.d.power(base, exponent)
        return base

    def group(self) -> Any:
        """A LaTeX argument: ``{...}`` or one token (``\\frac12`` has been normalised)."""
        if self.peek() == "{":
            self.take()
            value = self.expr()
            self.take("}")
            return value
        return self.atom()

    def atom(self) -> Any:
        tok = self.take()
        if tok[0].isdigit():
            return self.d.number(tok)
        if tok in ("(", "{"):
            value = self.expr()
            self.take(")" if tok == "(" else "}")
            return value
        if tok == "\\frac":
            num = self.group()
            return num / self.group()
        if tok == "\\sqrt":
            return self.d.sqrt(self.group())
        if tok == "\\pi" or (len(tok) == 1 and tok in VARIABLES):
            return self.d.variable(tok)
        raise Unsupported(tok)


def evaluate(expression: str, domain: Domain) -> Any:
    """The value of one expression of the grammar in ``domain``."""
    p = _Parser(_tokens(expression), domain)
    value = p.expr()
    if p.peek() is not None:
        raise Unsupported("trailing input")
    return value


def _top_level_split(inner: str) -> tuple[str, ...] | None:
    """Elements of a comma list; ``None`` when a bracket nests a list or does not close
    (``((1,2),3)``, ``(1,2]3)``): those stay with the engine."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif c == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
        elif c == "," or (c == "\\" and inner.startswith(("\\{", "\\}"), i)):
            return None  # a comma inside brackets, or a nested set
    if depth:
        return None
    parts.append(inner[start:])
    return tuple(parts)


def parse_key(key: str) -> ParsedKey | None:
    """Split a canonical key into shape and elements, or ``None`` if it has no shape
    the grammar covers (nested brackets inside a list, too long, empty)."""
    if not key or len(key) > MAX_LEN:
        return None
    if key.startswith("\\{") and key.endswith("\\}"):
        brackets, inner = "{}", key[2:-2]
    elif key[0] in "([" and key[-1] in ")]" and "," in key:
        brackets, inner = key[0] + key[-1], key[1:-1]
    else:
        return ParsedKey("", (key,), (0,))
    elements = _top_level_split(inner)
    if elements is None:
        return None
    infinity = tuple(INFINITIES.get(x, 0) for x in elements)
    if brackets == "{}" and any(infinity):
        return None
    return ParsedKey(brackets, elements, infinity)


class _Complex:
    """Evaluation at one fixed point of the complex plane per variable."""

    def __init__(self, point: dict[str, complex]) -> None:
        self.point = point

    def number(self, token: str) -> complex:
        return complex(float(token))

    def variable(self, name: str) -> complex:
        return complex(math.pi) if name == "\\pi" else self.point[name]

    def sqrt(self, value: complex) -> complex:
        return cmath.sqrt(value)

    def power(self, base: complex, exponent: complex) -> complex:
        if abs(exponent) > MAX_EXPONENT:
            raise Unsupported("exponent too large")
        return base**exponent


_DOMAINS = tuple(_Complex(p) for p in _POINTS)


UNDEFINED = "undefined"


@dataclass(frozen=True)
class Fingerprint:
    """``brackets``: ``""`` for a plain expression, e.g. ``"[)"`` for an interval, ``"{}"``
    for a set, ``UNDEFINED`` for a constant divided by zero (math-verify's ``zoo`` or
    ``nan``, which it equates with nothing); ``values``: per element, its value at each
    point."""

    brackets: str
    values: tuple[tuple[complex, ...], ...]


def _element(text: str, sign: int) -> tuple[complex, ...]:
    if sign:
        return tuple(complex(sign * math.inf) for _ in _DOMAINS)
    return tuple(evaluate(text, d) for d in _DOMAINS)


def fingerprint(key: str) -> Fingerprint | None:
    """Fingerprint of a canonical key (see ``normalize``), or ``None`` when unsupported."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    try:
        return Fingerprint(parsed.brackets, tuple(
            _element(x, s) for x, s in zip(parsed.elements, parsed.infinity)))
    except ZeroDivisionError:
        constant = not parsed.brackets and not any(c in VARIABLES for c in _letters(key))
        return Fingerprint(UNDEFINED, ()) if constant else None
    except (Unsupported, OverflowError, ValueError):
        return None


def _letters(key: str) -> str:
    """The variables of a key (command names such as ``\\frac`` removed)."""
    return "".join(t for t in _tokens(key) if len(t) == 1)


def _close(a: complex, b: complex) -> bool:
    if not (cmath.isfinite(a) and cmath.isfinite(b)):
        return a == b
    return abs(a - b) <= REL_TOL * max(1.0, abs(a), abs(b))


def _same(x: tuple[complex, ...], y: tuple[complex, ...]) -> bool:
    return all(_close(a, b) for a, b in zip(x, y))


def _distinct(a: Fingerprint) -> bool:
    """Whether some two elements of ``a`` are clearly different values."""
    return any(not _same(x, a.values[0]) for x in a.values[1:])


def _some_unmatched(a: Fingerprint, b: Fingerprint) -> bool:
    return any(not any(_same(x, y) for y in b.values) for x in a.values)


def clearly_different(a: Fingerprint | None, b: Fingerprint | None) -> bool:
    """True only when the two answers cannot be equal under any equivalence checker."""
    if a is None or b is None:
        return False
    if a.brackets == UNDEFINED or b.brackets == UNDEFINED:
        return True
    if a.brackets == "" and b.brackets == "":
        return not _same(a.values[0], b.values[0])
    if a.brackets == "{}" or b.brackets == "{}":
        # Sets compare without order. A set of two or more distinct values is never one
        # value, and {x} is x to math-verify; against a tuple or interval (math-verify
        # equates {1, 2} with the open interval (1, 2)) the engine decides.
        if a.brackets == b.brackets:
            return _some_unmatched(a, b) or _some_unmatched(b, a)
        one, other = (a, b) if a.brackets == "{}" else (b, a)
        return other.brackets == "" and (_distinct(one) or _some_unmatched(one, other))
    if a.brackets and b.brackets:
        # math-verify never equates an interval or tuple with one of another length or
        # with different brackets ("[1,2)" vs "(1,2)").
        if len(a.values) != len(b.values) or a.brackets != b.brackets:
            return True
        return any(not _same(x, y) for x, y in zip(a.values, b.values))
    return True  # an interval or tuple is never equal to a single value

