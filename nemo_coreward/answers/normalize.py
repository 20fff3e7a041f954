"""Canonical keys for answers, in the style of the Hendrycks MATH normaliser.

Two answers with the same key are treated as the same answer without asking a symbolic
engine; that is what makes equivalence-aware voting cheap. The rules only merge surface
forms that denote the same value: ``\\dfrac12``, ``\\frac{1}{2}``, ``1/2`` and ``0.5`` all
become ``1/2``; ``\\left(``, spacing, ``\\text{}`` units, degrees, percent signs,
thousands separators, trailing ``.0`` and an ``x =`` prefix go away.

Deviation from the Hendrycks normaliser (``is_equiv`` in the MATH repository): numbers
are keyed by their exact rational value, so ``0.5`` and ``\\frac12`` match. Like Hendrycks,
``50\\%`` keys as ``50`` (math-verify also equates those, but additionally equates
``50\\%`` with ``0.5``; we do not).
"""
from __future__ import annotations

import re
from fractions import Fraction

MAX_KEY_INPUT = 2000  # longer answers are keyed on a stripped copy, never parsed further

_DROP = (
    "\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\quad", "\\qquad", "\\displaystyle",
    "^{\\circ}", "^\\circ", "\\circ", "°", "\\%", "%", "\\$", "$",
)
_UNIT_TAIL = re.compile(r"(?<=\S)\s*\\(?:text|mbox|mathrm)\{\s*[A-Za-z][A-Za-z\s.^0-9]*\}\s*$")
_WRAPPER = re.compile(r"\\(?:text|textbf|mbox|mathrm|mathbf|boxed)\{([^{}]*)\}")
_LHS = re.compile(r"^[A-Za-z]\s*=\s*(?=\S)")
_FRAC_SHORT = re.compile(r"\\frac(\d)(\d)(?!\d)")  # \frac111: math-verify reads 1/11
_FRAC_HALF = re.compile(r"\\frac(\d)(?=\{)|\\frac\{([^{}]*)\}(\d)")
_SQRT_SHORT = re.compile(r"\\sqrt(\w)")
_ONE_CHAR_GROUP = re.compile(r"([\^_])\{(\w)\}")
_INT = r"[+-]?\d+"
_DEC = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_NUM_DEC = re.compile(rf"^{_DEC}$")
_NUM_FRAC = re.compile(rf"^([+-]?)\\frac\{{({_INT})\}}\{{({_INT})\}}$")
_NUM_SLASH = re.compile(rf"^({_INT})/({_INT})$")


def _fix_frac_sqrt(s: str) -> str:
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF.sub(
        lambda m: (f"\\frac{{{m.group(1)}}}" if m.group(1)
                   else f"\\frac{{{m.group(2)}}}{{{m.group(3)}}}"),
        s,
    )
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    return _ONE_CHAR_GROUP.sub(r"\1\2", s)  # x^{2} -> x^2


def numeric_value(key: str) -> Fraction | None:
    """The exact value of a key that denotes a rational number, else ``None``."""
    if _NUM_DEC.match(key):
        return Fraction(key)
    m = _NUM_FRAC.match(key)
    if m:
        sign, num, den = m.groups()
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return -value if sign == "-" else value
    m = _NUM_SLASH.match(key)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    return None


def _format_number(value: Fraction) -> str:
    return (str(value.numerator) if value.denominator == 1
            else f"{value.numerator}/{value.denominator}")


def normalize(answer: str) -> str:
    """Canonical key of ``answer``; ``""`` for an empty or whitespace-only answer."""
    s = answer.strip()
    if not s:
        return ""
    if len(s) > MAX_KEY_INPUT:
        return re.sub(r"\s+", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _UNIT_TAIL.sub("", s)
    for token in _DROP:
        s = s.replace(token, "")
    for _ in range(3):  # unwrap nested \text{\textbf{x}} a few levels, bounded
        s, n = _WRAPPER.subn(r"\1", s)
        if not n:
            break
    s = _LHS.sub("", s.strip())
    s = re.sub(r"\s+", "", s)
    s = _fix_frac_sqrt(s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = s.rstrip(".") if s.endswith(".") and s[:-1].replace(".", "").isdigit() else s
    if s.startswith("{") and s.endswith("}") and s.count("{") == 1:
        s = s[1:-1]
    value = numeric_value(s)
    return _format_number(value) if value is not None else s
