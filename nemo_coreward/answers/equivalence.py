"""Decide which answers are the same answer, and group them into classes for voting.

Three modes, chosen by name:

- ``exact``: string equality, as the official Co-Reward code (``"\\frac{1}{2}"``,
  ``"\\dfrac12"`` and ``"0.5"`` are three answers). Whitespace-only answers are empty.
- ``normalized``: equality of canonical keys (``normalize``): cheap and safe.
- ``math_verify``: canonical keys first, then math-verify between the first-seen surface
  forms of *distinct* keys only, in a killable child process (``SymbolicJudge``).
  Two keys that are both plain numbers are decided here without sympy (exact rationals
  differ unless within 1e-6, where math-verify's 6-digit float rounding may still equate
  them and so is asked), and so are simple expressions and intervals whose numeric
  fingerprints prove them different (``fingerprint.py``); answers with a percent sign
  always go to math-verify, which reads ``50%`` both as 0.5 and as 50.

Grouping is greedy in first-appearance order: each new key joins the first existing
class whose representative it is equivalent to (representative as math-verify's gold),
else opens a class. That is the rule a naive all-pairs grader follows too, so both give
the same classes; ours only asks the engine about distinct keys and caches verdicts.
A comparison that times out counts as "not equivalent" and is reported in
``Grader.timeouts``; a key that timed out is not sent to the engine again in that call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from nemo_coreward.answers.fingerprint import Fingerprint, clearly_different, fingerprint
from nemo_coreward.answers.normalize import normalize, numeric_value
from nemo_coreward.answers.symbolic import SymbolicJudge

Mode = Literal["exact", "normalized", "math_verify"]
MODES: tuple[str, ...] = ("exact", "normalized", "math_verify")
NUMERIC_CLOSE = 1e-6


@dataclass(frozen=True)
class Grouping:
    """Class id per answer (-1 for empty answers) and each class's representative.

    Class ids are dense and numbered in order of first appearance; ``representatives[c]``
    is the first answer (as written) that opened class ``c``.
    """

    class_ids: list[int]
    representatives: list[str]


class Grader:
    """Equivalence of final answers under one mode; safe to share across threads."""

    def __init__(self, mode: str = "exact", timeout_s: float = 1.0) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown equivalence mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode = mode
        self.timeout_s = timeout_s
        self._judge = SymbolicJudge(timeout_s) if mode == "math_verify" else None
        self._fingerprints: dict[str, Fingerprint | None] = {}

    def _fingerprint(self, key: str) -> Fingerprint | None:
        if key not in self._fingerprints:
            if len(self._fingerprints) > 65536:
                self._fingerprints.clear()
            self._fingerprints[key] = fingerprint(key)
        return self._fingerprints[key]

    @property
    def timeouts(self) -> int:
        return self._judge.timeouts if self._judge is not None else 0

    def close(self) -> None:
        if self._judge is not None:
            self._judge.close()

    def key(self, answer: str) -> str:
        """Bucket key; ``""`` means no answer."""
        if self.mode == "exact":
            return answer if answer.strip() else ""
        return normalize(answer)

    def _keys_equivalent(self, key_a: str, raw_a: str, key_b: str, raw_b: str) -> bool | None:
        if key_a == key_b:
            return True
        if self.mode != "math_verify":
            return False
        if "%" not in raw_a and "%" not in raw_b:  # math-verify reads 50% as 0.5 AND as 50
            va, vb = numeric_value(key_a), numeric_value(key_b)
            if va is not None and vb is not None and abs(va - vb) >= NUMERIC_CLOSE:
                return False
            fa, fb = self._fingerprint(key_a), self._fingerprint(key_b)
            if clearly_different(fa, fb):
                return False
            if fa is not None and fb is not None:
                # Small bounded arithmetic: cannot hang sympy, so skip the per-answer probe.
                return self._judge.equivalent(raw_a, raw_b, probe=False)
        return self._judge.equivalent(raw_a, raw_b)

    def equivalent(self, a: str, b: str) -> bool:
        ka, kb = self.key(a), self.key(b)
        if not ka or not kb:
            return False
        return bool(self._keys_equivalent(ka, a.strip(), kb, b.strip()))

    def group(self, answers: Sequence[str]) -> Grouping:
        """Greedy equivalence classes over ``answers`` (see the module docstring)."""
        key_class: dict[str, int] = {}
        rep_keys: list[str] = []
        reps: list[str] = []
        poisoned: set[str] = set()
        ids: list[int] = []
        for answer in answers:
            k = self.key(answer)
            if not k:
                ids.append(-1)
                continue
            if k not in key_class:
                raw = answer.strip() if self.mode != "exact" else answer
                found = -1
                if self.mode == "math_verify" and k not in poisoned:
                    for c, (rk, rraw) in enumerate(zip(rep_keys, reps)):
                        if rk in poisoned:
                            continue
                        verdict = self._keys_equivalent(rk, rraw.strip(), k, raw)
                        if verdict is None:
                            poisoned.add(k)
                            break
                        if verdict:
                            found = c
                            break
                if found < 0:
                    found = len(reps)
                    rep_keys.append(k)
                    reps.append(answer)
                key_class[k] = found
            ids.append(key_class[k])
        return Grouping(ids, reps)
