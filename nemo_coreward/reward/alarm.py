"""The collapse alarm: consensus that outgrows correctness.

Label-free rewards fail by collapse: the policy learns to agree with itself on a wrong
answer. Reward and majority ratio then keep rising while accuracy (held-out, or of the
pseudo labels against the known answers) falls or stays where it was. Neither signal alone
shows it: majority ratio also rises when a model genuinely learns, and accuracy is noisy.
Together they do. Four rules, each over smoothed series (``rules`` picks which run):

- ``drop``: accuracy falls from its peak while the majority ratio rises since that peak.
- ``gap``: the majority ratio exceeds accuracy by at least ``gap``, and that gap has widened
  by at least ``gap_rise`` since its smallest earlier value while the majority ratio rose by
  at least ``majority_rise``: self-agreement grew faster than correctness, with no fall
  needed (a plateau of coin-flip labels under rising consensus).
- ``split``: needs no known answer. The majority ratio within each phrasing exceeds the
  agreement across phrasings (``twin_agreement``: the share of pairs whose question and
  rephrasing have the same majority answer) by at least ``split``. A model that is right is
  right on both phrasings; one that is consistent on each phrasing but says different
  things on the two is consistent without being correct, which only twins can reveal.
- ``shared``: needs no known answer either. The share of the step's questions answered
  alike (``shared_answer_rate``: 0 when every question gets its own majority answer, 1
  when all get the same) reaches ``shared``. A policy that gives one answer to every
  question agrees with its twins on it, so ``split`` is blind to that collapse; different
  questions rarely share an answer.

Smoothing, for a series ``a`` given as metric rows (each with a ``step``): ``A(s)`` is the
mean of the ``a`` points with step in ``(s - window, s]`` (the latest point at or before ``s``
when none fall in the window, so a held-out accuracy evaluated every few steps is smoothed
no further); ``M(s)`` likewise for the majority ratio. A point before the first
majority-ratio point (held-out accuracy measured before training, at step 0) is compared
with ``M`` over the first ``window`` steps that have one: the run's starting consensus.

The ``drop`` rule in full, for one accuracy series: at each step ``s`` where ``a`` has a point
(after ``min_points`` of them), let ``p`` be the earlier such step with the highest ``A`` (the
first one on ties); the condition holds at ``s`` when ``A(p) - A(s) >= accuracy_drop`` and
``M(s) - M(p) >= majority_rise``. The ``gap`` rule checks ``G(s) = M(s) - A(s) >= gap``,
``G(s) - G(q) >= gap_rise`` and ``M(s) - M(q) >= majority_rise`` at the same steps, ``q`` the
earlier point with the smallest ``G`` (the first on ties); ``split`` checks
``M(s) - T(s) >= split`` at the steps with a twin-agreement point, ``shared`` checks
``S(s) >= shared`` at the steps with a shared-answer point. Every rule fires at the
first step where its condition has held at ``patience`` consecutive points of its series;
each series is checked on its own and the earliest firing wins.

Sampling noise. An accuracy over a few labels per step moves by chance: with 10 pseudo
labels per step and a true accuracy of 0.7 that does not change, the value at step 1 (one
point, 10 labels) exceeds a later 5-step mean (50 labels) by more than 0.1 about one time
in four. For a series whose rows say how many labels each point averages
(``counted_keys``, the count in ``count_key``: the number of groups voted on), the fall of
``drop`` and the widening of ``gap`` must also exceed ``noise_z`` standard errors of the
difference of the two accuracies compared, ``z * sqrt(p (1 - p) (1/N1 + 1/N2))`` with ``N``
the labels behind each smoothed value and ``p`` their pooled accuracy: the two-proportion
test. A series without counts (held-out
accuracy: one evaluation per point) keeps the fixed thresholds alone.

Differences in absolute units (accuracies and ratios are in [0, 1]). Missing series are
skipped: no majority ratio, or no series with enough points, means no alarm and a reason
saying why. Pure function over plain numbers: both trainers call it after each step on
their own metric rows (``AlarmWatch``) to stop early, and the report calls it on
``metrics.jsonl`` (read with ``nemo_coreward.io.read_jsonl``).
"""
from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

Series = list[tuple[int, float]]


RULES = ("drop", "gap", "split", "shared")


@dataclass(frozen=True)
class AlarmConfig:
    """Windows and thresholds of the collapse alarm (see the module docstring).

    Defaults are set for the CPU runs' noise: pseudo-label accuracy over 8-16 groups per
    step moves by ~0.1 from step to step, and twin agreement over 8 pairs by 0.125, so a
    5-step mean held for 2 points does not fire on noise around a flat line. ``gap`` 0.15 and
    ``gap_rise`` 0.20 stay above the honest runs of docs/results.md, whose consensus and
    label accuracy rose together (gap at most 0.08); ``split`` 0.5 stays above their largest
    within-phrasing versus across-phrasing difference (0.42). ``shared`` 0.6 stays above the
    final models of that benchmark on held-out batches of 8 pairs (0.14-0.57 per batch,
    means 0.2-0.43: single-digit sums share answers by chance); collapse onto one answer is
    1.0. Multiple-choice data shares answers by design: leave ``shared`` out of ``rules``.
    Scale ``window`` with the run's length.
    """

    majority_key: str = "majority_ratio"
    accuracy_keys: tuple[str, ...] = ("heldout_accuracy", "pseudo_label_accuracy")
    twin_key: str = "twin_agreement"
    shared_key: str = "shared_answer_rate"
    rules: tuple[str, ...] = RULES
    window: int = 5
    accuracy_drop: float = 0.10
    majority_rise: float = 0.10
    gap: float = 0.15
    gap_rise: float = 0.20
    split: float = 0.50
    shared: float = 0.60
    patience: int = 2
    min_points: int = 2
    noise_z: float = 2.0
    counted_keys: tuple[str, ...] = ("pseudo_label_accuracy",)
    count_key: str = "n_groups"

    def __post_init__(self) -> None:
        object.__setattr__(self, "accuracy_keys", tuple(self.accuracy_keys))
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "counted_keys", tuple(self.counted_keys))
        if not self.noise_z >= 0:
            raise ValueError(f"alarm.noise_z must be >= 0, got {self.noise_z}")
        if self.window < 1:
            raise ValueError(f"alarm.window must be >= 1, got {self.window}")
        if self.patience < 1:
            raise ValueError(f"alarm.patience must be >= 1, got {self.patience}")
        if self.min_points < 2:
            raise ValueError(f"alarm.min_points must be >= 2, got {self.min_points}")
        for name in ("accuracy_drop", "majority_rise", "gap", "gap_rise", "split", "shared"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"alarm.{name} must be in [0, 1], got {value}")
        if not self.accuracy_keys:
            raise ValueError("alarm.accuracy_keys must name at least one metric")
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise ValueError(f"alarm.rules: unknown rule {unknown[0]!r}; valid: {', '.join(RULES)}")


@dataclass(frozen=True)
class AlarmResult:
    """Whether (and where) the alarm fired, with the numbers behind the verdict.

    ``rule`` says which rule fired; ``accuracy_key`` names the series compared with the
    majority ratio (an accuracy, or the twin agreement for ``split``); ``peak_step`` is its
    reference point (the accuracy peak for ``drop``, the smallest gap for ``gap``, none for
    ``split``), with both series' smoothed values there and now.
    """

    fired: bool
    step: int | None = None
    rule: str | None = None
    accuracy_key: str | None = None
    peak_step: int | None = None
    accuracy_peak: float | None = None
    accuracy_now: float | None = None
    majority_at_peak: float | None = None
    majority_now: float | None = None
    reason: str = ""
    checked: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        if not self.fired:
            return f"no collapse alarm ({self.reason})"
        head = f"COLLAPSE ALARM at step {self.step} ({self.rule}): "
        if self.rule == "split":
            return head + (
                f"majority_ratio {self.majority_now:.3f} within each phrasing but "
                f"{self.accuracy_key} {self.accuracy_now:.3f} across phrasings: consistent "
                "without agreeing with its twins")
        if self.rule == "shared":
            return head + (
                f"{self.accuracy_key} {self.accuracy_now:.3f}: the questions' majority answers "
                f"collapsed onto one answer (majority_ratio {self.majority_now:.3f})")
        if self.rule == "gap":
            return head + (
                f"majority_ratio {self.majority_at_peak:.3f} -> {self.majority_now:.3f} while "
                f"{self.accuracy_key} {self.accuracy_peak:.3f} -> {self.accuracy_now:.3f} since "
                f"step {self.peak_step}: self-agreement outgrew correctness")
        return head + (
            f"{self.accuracy_key} fell "
            f"{self.accuracy_peak:.3f} -> {self.accuracy_now:.3f} since step {self.peak_step} "
            f"while majority_ratio rose {self.majority_at_peak:.3f} -> {self.majority_now:.3f}"
        )


def series(rows: Sequence[Mapping[str, object]], key: str) -> Series:
    """``(step, value)`` of ``key`` over metric rows, sorted by step; rows without the key,
    or with a non-finite or non-numeric value, are skipped. A row without ``step`` takes
    its position as the step. A repeated step keeps the last row (a resumed run)."""
    points: dict[int, float] = {}
    for index, row in enumerate(rows):
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(float(value)):
            continue
        step = row.get("step", index)
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            raise ValueError(f"metric row {index}: 'step' must be a number, got {step!r}")
        points[int(step)] = float(value)
    return sorted(points.items())


def smoothed(points: Series, step: int, window: int) -> float | None:
    """Mean of the points with step in ``(step - window, step]``; the latest point at or
    before ``step`` when none fall inside; ``None`` when there is none at all."""
    return _smoothed([s for s, _ in points], points, step, window)


def _window(steps: list[int], step: int, window: int) -> slice:
    """Indices of the points a smoothed value at ``step`` averages: those with step in
    ``(step - window, step]``, else the latest one at or before ``step`` (empty if none)."""
    hi = bisect_right(steps, step)
    lo = bisect_right(steps, step - window, 0, hi)
    return slice(lo, hi) if lo < hi else slice(max(hi - 1, 0), hi)


def _smoothed(steps: list[int], points: Series, step: int, window: int) -> float | None:
    used = points[_window(steps, step, window)]
    return sum(v for _, v in used) / len(used) if used else None


class _Counts:
    """Labels behind each smoothed accuracy of one series (the same points ``_smoothed``
    averages), and the noise margin of a difference of two of them."""

    def __init__(self, steps: list[int], counts: dict[int, float], z: float) -> None:
        self.steps, self.z = steps, z
        self.counts = [counts.get(s) for s in steps]

    def labels(self, step: int, window: int) -> float | None:
        used = self.counts[_window(self.steps, step, window)]
        if not used or any(c is None or c <= 0 for c in used):
            return None
        return float(sum(used))  # type: ignore[arg-type]

    def margin(self, a1: float, s1: int, a2: float, s2: int, window: int) -> float:
        """``z`` standard errors of ``a1 - a2`` (0 when a count is unknown)."""
        n1, n2 = self.labels(s1, window), self.labels(s2, window)
        if n1 is None or n2 is None or self.z == 0:
            return 0.0
        p = (a1 * n1 + a2 * n2) / (n1 + n2)
        return self.z * math.sqrt(max(p * (1 - p), 0.0) * (1 / n1 + 1 / n2))


class _Majority:
    """The smoothed majority ratio at any step; before its first point, the mean over its
    first ``window`` steps (the run's starting consensus, for accuracy measured at step 0)."""

    def __init__(self, maj: Series, window: int) -> None:
        self.maj, self.steps, self.window = maj, [s for s, _ in maj], window
        self.first = _smoothed(self.steps, maj, self.steps[0] + window - 1, window)

    def at(self, step: int) -> float | None:
        value = _smoothed(self.steps, self.maj, step, self.window)
        return self.first if value is None else value


def _check_drop(acc: Series, maj: _Majority, key: str, cfg: AlarmConfig, counts: _Counts
                ) -> AlarmResult | None:
    """One pass over the accuracy points, the running peak kept as it goes, so the trainer
    can afford to re-check the whole run after every step."""
    steps = [s for s, _ in acc]
    smooth_acc = [_smoothed(steps, acc, s, cfg.window) for s in steps]
    held, best = 0, 0  # best: index of the highest smoothed accuracy so far (first on ties)
    for i in range(1, len(steps)):
        if i >= cfg.min_points - 1:
            now, peak = steps[i], steps[best]
            m_now, m_peak = maj.at(now), maj.at(peak)
            if m_now is None or m_peak is None:
                held = 0
            else:
                need = max(cfg.accuracy_drop, counts.margin(
                    smooth_acc[best], peak, smooth_acc[i], now, cfg.window))
                dropped = smooth_acc[best] - smooth_acc[i] >= need - 1e-12
                rose = m_now - m_peak >= cfg.majority_rise - 1e-12
                held = held + 1 if (dropped and rose) else 0
                if held >= cfg.patience:
                    return AlarmResult(
                        fired=True, step=now, rule="drop", accuracy_key=key, peak_step=peak,
                        accuracy_peak=smooth_acc[best], accuracy_now=smooth_acc[i],
                        majority_at_peak=m_peak, majority_now=m_now,
                        reason=f"{key} dropped while {cfg.majority_key} rose",
                    )
        if smooth_acc[i] > smooth_acc[best]:
            best = i
    return None


def _check_gap(other: Series, maj: _Majority, key: str, cfg: AlarmConfig, rule: str,
               threshold: float, rise: float | None, counts: _Counts) -> AlarmResult | None:
    """``M(s) - X(s) >= threshold`` (and, with ``rise``, at least ``rise`` and the noise
    margin of ``X`` above the smallest earlier difference) at ``patience`` consecutive
    points of ``X``; one pass."""
    steps = [s for s, _ in other]
    smooth = [_smoothed(steps, other, s, cfg.window) for s in steps]
    gaps: list[float | None] = []
    held, low = 0, None  # low: index of the smallest difference so far
    for i, now in enumerate(steps):
        x_now, m_now = smooth[i], maj.at(now)
        gap = None if m_now is None or x_now is None else m_now - x_now
        gaps.append(gap)
        ok = gap is not None and i >= cfg.min_points - 1 and gap >= threshold - 1e-12
        if ok and rise is not None:  # widened, and by consensus rising, not accuracy falling
            ok = low is not None and m_now - maj.at(steps[low]) >= cfg.majority_rise - 1e-12  # type: ignore
            if ok:
                need = max(rise, counts.margin(smooth[low], steps[low], x_now, now,  # type: ignore
                                               cfg.window))
                ok = gap - gaps[low] >= need - 1e-12  # type: ignore[operator]
        held = held + 1 if ok else 0
        if held >= cfg.patience:
            base = steps[low] if rise is not None and low is not None else None
            return AlarmResult(
                fired=True, step=now, rule=rule, accuracy_key=key, peak_step=base,
                accuracy_peak=None if base is None else smooth[low],  # type: ignore[index]
                accuracy_now=x_now, majority_at_peak=None if base is None else maj.at(base),
                majority_now=m_now, reason=f"{cfg.majority_key} outgrew {key}",
            )
        if gap is not None and (low is None or gap < gaps[low]):  # type: ignore[operator]
            low = i
    return None


def _check_level(other: Series, maj: _Majority, key: str, cfg: AlarmConfig
                 ) -> AlarmResult | None:
    """``X(s) >= shared`` at ``patience`` consecutive points of ``X``; one pass."""
    steps = [s for s, _ in other]
    held = 0
    for i, now in enumerate(steps):
        x_now = _smoothed(steps, other, now, cfg.window)
        ok = x_now is not None and i >= cfg.min_points - 1 and x_now >= cfg.shared - 1e-12
        held = held + 1 if ok else 0
        if held >= cfg.patience:
            return AlarmResult(fired=True, step=now, rule="shared", accuracy_key=key,
                               accuracy_now=x_now, majority_now=maj.at(now),
                               reason=f"{key} reached {cfg.shared}")
    return None


def collapse_alarm(
    rows: Sequence[Mapping[str, object]], config: AlarmConfig = AlarmConfig()
) -> AlarmResult:
    """Check metric rows (``metrics.jsonl`` objects, each with ``step``) for collapse."""
    points = series(rows, config.majority_key)
    if not points:
        return AlarmResult(fired=False, reason=f"no {config.majority_key} series")
    maj = _Majority(points, config.window)
    checks = []  # (rule, key): every rule over every series it reads
    checks += [(rule, key) for rule in ("drop", "gap") if rule in config.rules
               for key in config.accuracy_keys]
    if "split" in config.rules:
        checks.append(("split", config.twin_key))
    if "shared" in config.rules:
        checks.append(("shared", config.shared_key))
    checked, fired = [], []
    for rule, key in checks:
        other = series(rows, key)
        if len(other) < config.min_points:
            continue
        checked.append(f"{rule}:{key}")
        counted = dict(series(rows, config.count_key)) if key in config.counted_keys else {}
        counts = _Counts([s for s, _ in other], counted, config.noise_z)
        if rule == "drop":
            result = _check_drop(other, maj, key, config, counts)
        elif rule == "gap":
            result = _check_gap(other, maj, key, config, rule, config.gap, config.gap_rise,
                                counts)
        elif rule == "split":
            result = _check_gap(other, maj, key, config, rule, config.split, None, counts)
        else:
            result = _check_level(other, maj, key, config)
        if result is not None:
            fired.append(result)
    if fired:
        first = min(fired, key=lambda r: r.step)
        return replace(first, checked=tuple(checked))
    if not checked:
        return AlarmResult(
            fired=False,
            reason=f"no series with >= {config.min_points} points "
            f"(looked for {', '.join(dict.fromkeys(k for _, k in checks))})",
        )
    return AlarmResult(fired=False, reason=f"checked {', '.join(checked)}", checked=tuple(checked))


@dataclass(frozen=True)
class AlarmSection(AlarmConfig):
    """``AlarmConfig`` as a trainer's ``alarm`` section; ``stop`` ends the run when the
    alarm fires (false: the trainer only warns)."""

    stop: bool = False


class AlarmWatch:
    """The alarm over a run's rows as they arrive, for a trainer's step loop.

    Re-checking every row each step is what makes the verdict the same as the report's
    (which sees the whole run); ``collapse_alarm`` is linear in the rows, so it stays cheap.
    """

    def __init__(self, config: AlarmSection, rows: Sequence[Mapping[str, object]] = ()) -> None:
        self.config = config
        self.rows = [dict(r) for r in rows]
        self.result: AlarmResult | None = None
        self._reported = False

    def observe(self, row: Mapping[str, object] | None = None) -> AlarmResult | None:
        """Add ``row`` (if any) and re-check; the result the first time the alarm fires,
        else None (so a trainer reports a firing once)."""
        if row is not None:
            self.rows.append(dict(row))
        self.result = collapse_alarm(self.rows, self.config)
        if self.result.fired and not self._reported:
            self._reported = True
            return self.result
        return None

    def truncate_after(self, step: int) -> None:
        """Forget rows after ``step`` (a resumed run redoes those steps)."""
        self.rows = [r for r in self.rows if int(r["step"]) <= step]  # type: ignore[call-overload]

    @property
    def stop(self) -> bool:
        """Whether the run should end now (fired, and ``stop`` is set)."""
        return bool(self.config.stop and self.result is not None and self.result.fired)
