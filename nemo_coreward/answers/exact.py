"""Exact canonical forms of simple answers, to prove two answers EQUAL without sympy.

``fingerprint.py`` proves answers different; what is left are mostly spellings of one
answer (``(x+2)(x+3)`` and ``x^2+5x+6``, ``\\frac{\\sqrt3}{3}`` and ``\\frac{1}{\\sqrt3}``,
``\\frac{\\pi}{3}`` and ``\\frac13\\pi``). math-verify needs 5-100 ms to parse each of
them; here they are expanded exactly, in microseconds, as polynomials in the letters
and ``\\pi`` whose coefficients lie in Q(sqrt 2, sqrt 3, sqrt 5, ...): a monomial holds each
``sqrt p`` (p prime) at most once, and ``sqrt p * sqrt p = p``. Square roots of distinct
primes are linearly independent over Q and ``\\pi`` is transcendental, so two forms
are equal exactly when the answers are equal as functions, which is what math-verify
then finds (structural equality, ``evalf`` of the difference, or ``simplify``).

Only what math-verify is known to equate is claimed: no decimals (math-verify keeps
them as floats and rounds), no division by anything but a constant monomial, small
exponents and expansions (``simplify`` on a huge expansion can hit math-verify's own
time limit), and never when an answer is a lone variable (math-verify compares a
``Symbol`` with a non-symbol by its string, so ``x`` against ``(x+1)^2-x^2-x-1`` is
left to the engine). Sets are claimed equal only with constant elements.
"""
from __future__ import annotations

from collections.abc import Hashable
from fractions import Fraction

from nemo_coreward.answers.fingerprint import Unsupported, evaluate, parse_key

MAX_EXPONENT = 12
MAX_TERMS = 64
MAX_RADICAND = 10**8

Monomial = tuple[tuple[str, int], ...]  # sorted (name, exponent); "√p" names have exponent 1


def _mul_monomials(a: Monomial, b: Monomial) -> tuple[Monomial, int]:
    """Product of two monomials and the integer that ``sqrt p * sqrt p`` leaves behind."""
    exps = dict(a)
    factor = 1
    for name, e in b:
        if name.startswith("√") and name in exps:
            del exps[name]
            factor *= int(name[1:])
        else:
            exps[name] = exps.get(name, 0) + e
    return tuple(sorted(exps.items())), factor


class Exact:
    """A polynomial over Q(sqrt primes) in letters and pi; immutable."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict[Monomial, Fraction]) -> None:
        if len(terms) > MAX_TERMS:
            raise Unsupported("expansion too large")
        self.terms = {m: c for m, c in terms.items() if c}

    def __add__(self, other: Exact) -> Exact:
        out = dict(self.terms)
        for m, c in other.terms.items():
            out[m] = out.get(m, Fraction(0)) + c
        return Exact(out)

    def __neg__(self) -> Exact:
        return Exact({m: -c for m, c in self.terms.items()})

    def __sub__(self, other: Exact) -> Exact:
        return self + (-other)

    def __mul__(self, other: Exact) -> Exact:
        out: dict[Monomial, Fraction] = {}
        for ma, ca in self.terms.items():
            for mb, cb in other.terms.items():
                m, factor = _mul_monomials(ma, mb)
                out[m] = out.get(m, Fraction(0)) + ca * cb * factor
        return Exact(out)

    def inverse(self) -> Exact:
        """1 / (c * sqrt m) = sqrt m / (c * m); anything else is not supported."""
        if len(self.terms) != 1:
            raise Unsupported("division by a sum")
        (m, c), = self.terms.items()
        if any(not name.startswith("√") for name, _ in m):
            raise Unsupported("division by a variable")
        radicand = 1
        for name, _ in m:
            radicand *= int(name[1:])
        return Exact({m: 1 / (c * radicand)})

    def __truediv__(self, other: Exact) -> Exact:
        return self * other.inverse()

    def constant(self) -> Fraction | None:
        """The value when this is a rational constant, else ``None``."""
        if not self.terms:
            return Fraction(0)
        if len(self.terms) == 1 and () in self.terms:
            return self.terms[()]
        return None

    def form(self) -> frozenset[tuple[Monomial, Fraction]]:
        return frozenset(self.terms.items())

    def is_lone_variable(self) -> bool:
        if len(self.terms) != 1:
            return False
        (m, c), = self.terms.items()
        return (c == 1 and len(m) == 1 and m[0][1] == 1 and m[0][0] != "\\pi"
                and not m[0][0].startswith("√"))

    def has_letters(self) -> bool:
        return any(name != "\\pi" and not name.startswith("√") for m in self.terms for name, _ in m)


def _squarefree_split(n: int) -> tuple[int, list[int]]:
    """n = s^2 * (product of the returned distinct primes)."""
    s, primes, p = 1, [], 2
    while p * p <= n:
        while n % (p * p) == 0:
            n //= p * p
            s *= p
        if n % p == 0:
            n //= p
            primes.append(p)
        p += 1
    if n > 1:
        primes.append(n)
    return s, primes


class _ExactDomain:
    def number(self, token: str) -> Exact:
        if not token.isdigit():
            raise Unsupported("decimals are floats to math-verify")
        return Exact({(): Fraction(int(token))})

    def variable(self, name: str) -> Exact:
        return Exact({((name, 1),): Fraction(1)})

    def sqrt(self, value: Exact) -> Exact:
        c = value.constant()
        if c is None or c < 0 or c.numerator * c.denominator > MAX_RADICAND:
            raise Unsupported("square root of a non-constant or negative value")
        s, primes = _squarefree_split(c.numerator * c.denominator)
        monomial = tuple(sorted((f"√{p}", 1) for p in primes))
        return Exact({monomial: Fraction(s, c.denominator)})

    def power(self, base: Exact, exponent: Exact) -> Exact:
        n = exponent.constant()
        if n is None or n.denominator != 1 or abs(n) > MAX_EXPONENT:
            raise Unsupported("exponent not a small integer")
        if n < 0:
            base, n = base.inverse(), -n
        out = Exact({(): Fraction(1)})
        for _ in range(int(n)):
            out = out * base
        return out


_DOMAIN = _ExactDomain()


def canonical(key: str) -> Hashable | None:
    """Exact canonical form of a canonical key (see ``normalize``), or ``None`` when the
    answer is outside what may be claimed equal (module docstring)."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    try:
        values = [None if s else evaluate(x, _DOMAIN)
                  for x, s in zip(parsed.elements, parsed.infinity)]
    except (Unsupported, ZeroDivisionError):
        return None
    if any(v is not None and v.is_lone_variable() for v in values):
        return None
    elements = tuple(v.form() if v is not None else s for v, s in zip(values, parsed.infinity))
    if parsed.brackets == "{}":
        if any(v.has_letters() for v in values if v is not None):
            return None
        if len(elements) == 1:  # math-verify compares a value as the set {value}
            return ("", elements)
        return ("{}", frozenset(elements))
    return (parsed.brackets, elements)
