"""Decide which answers are the same answer, and group them into classes for voting.

Three modes, chosen by name:

- ``exact``: string equality, as the official Co-Reward code (``"\\frac{1}{2}"``,
  ``"\\dfrac12"`` and ``"0.5"`` are three answers). Whitespace-only answers are empty.
- ``normalized``: equality of canonical keys (``normalize``): cheap and safe.
- ``math_verify``: canonical keys first, then math-verify between the first-seen surface
  forms of *distinct* keys only, in a killable child process (``SymbolicJudge``).
  Two keys that are both plain numbers are decided here without sympy (exact rationals
  differ unless within 1e-6, where math-verify's 6-digit float rounding may still equate
  them and so is asked); simple expressions, tuples, intervals and sets whose numeric
  fingerprints prove them different are different (``fingerprint.py``), and those whose
  exact expansions agree are equal (``exact.py``). Answers with a percent sign always go
  to math-verify, which reads ``50%`` both as 0.5 and as 50; a tower of exponents
  (``10^{10^{10^{10}}}``) never does: math-verify would only time out on it.

Grouping is greedy in first-appearance order: each new key joins the first existing
class whose representative it is equivalent to (representative as math-verify's gold),
else opens a class. That is the rule a naive all-pairs grader follows too, so both give
the same classes; ours only asks the engine about distinct keys and caches verdicts.
A comparison that times out counts as "not equivalent" and is reported in
``Grader.timeouts``; a key that timed out is not sent to the engine again in that call.
"""
from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

from nemo_coreward.answers.exact import canonical
from nemo_coreward.answers.fingerprint import Fingerprint, clearly_different, fingerprint
from nemo_coreward.answers.normalize import normalize, numeric_value
from nemo_coreward.answers.symbolic import SymbolicJudge

Mode = Literal["exact", "normalized", "math_verify"]
MODES: tuple[str, ...] = ("exact", "normalized", "math_verify")
NUMERIC_CLOSE = 1e-6
FORMS_CACHE = 65536
MAX_TOWER_SCAN = 4096  # longer answers are never parsed anyway
_TOWER = re.compile(r"\^\{[^{}]*\^\{[^{}]*\^")  # a^{b^{c^...}}: sympy builds huge integers in C


@dataclass(frozen=True)
class Forms:
    """What is known about one canonical key without the engine."""

    fingerprint: Fingerprint | None
    exact: Hashable | None
    tower: bool


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
        self._forms: dict[str, Forms] = {}

    def _forms_of(self, key: str) -> Forms:
        forms = self._forms.get(key)
        if forms is None:
            if len(self._forms) > FORMS_CACHE:
                self._forms.clear()
            tower = len(key) <= MAX_TOWER_SCAN and bool(_TOWER.search(key))
            forms = self._forms[key] = Forms(fingerprint(key), canonical(key), tower)
        return forms

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
        fa, fb = self._forms_of(key_a), self._forms_of(key_b)
        if fa.tower or fb.tower:
            return False
        if "%" not in raw_a and "%" not in raw_b:  # math-verify reads 50% as 0.5 AND as 50
            va, vb = numeric_value(key_a), numeric_value(key_b)
            if va is not None and vb is not None and abs(va - vb) >= NUMERIC_CLOSE:
                return False
            if clearly_different(fa.fingerprint, fb.fingerprint):
                return False
            if fa.exact is not None and fa.exact == fb.exact:
                return True
            if fa.fingerprint is not None and fb.fingerprint is not None:
                # Small bounded arithmetic: cannot hang sympy, so skip the per-answer probe.
                return self._judge.equivalent(raw_a, raw_b, probe=False)
        # Probe an answer without a fingerprint alone first: if it is broken, the answer
        # it meets is never parsed for it.
        for raw, forms in ((raw_b, fb), (raw_a, fa)):
            if forms.fingerprint is None and not self._judge.parsable(raw):
                return False
        return self._judge.equivalent(raw_a, raw_b)

    def equivalent(self, a: str, b: str) -> bool:
        ka, kb = self.key(a), self.key(b)
        if not ka or not kb:
            return False
        return bool(self._keys_equivalent(ka, a.strip(), kb, b.strip()))

    def prepare(self, pools: Sequence[Sequence[str]]) -> None:
        """Before grouping ``pools`` (one call per step): parse, in one exchange with
        math-verify's child, every answer that grouping would have to parse alone (no
        fingerprint, in a pool with another key), instead of one exchange per answer."""
        if self.mode != "math_verify":
            return
        raws = []
        for pool in pools:
            keyed = {self.key(a): a for a in reversed(pool)}  # first spelling of each key
            keyed.pop("", None)
            if len(keyed) < 2:
                continue
            for key, answer in keyed.items():
                forms = self._forms_of(key)
                if forms.fingerprint is None and not forms.tower:
                    raws.append(answer.strip())
        self._judge.probe_all(raws)

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
