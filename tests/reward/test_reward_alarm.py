"""The collapse alarm on constructed metric series."""
from __future__ import annotations

import random

import pytest

from nemo_coreward.reward.alarm import (AlarmConfig, AlarmSection, AlarmWatch, collapse_alarm,
                                      series, smoothed)

RAW = AlarmConfig(window=1, patience=1)  # no smoothing, fire at once: hand-checkable


def rows(**columns):
    """Metric rows from columns of equal length; None leaves the key out of that row."""
    length = len(next(iter(columns.values())))
    out = []
    for i in range(length):
        row = {"step": i + 1}
        row.update({k: v[i] for k, v in columns.items() if v[i] is not None})
        out.append(row)
    return out


def test_fires_when_majority_rises_and_pseudo_accuracy_falls():
    # Step 3: peak accuracy 0.5 (step 1, first on ties) -> 0.3, a drop of 0.2 >= 0.1;
    # majority 0.4 -> 0.6, a rise of 0.2 >= 0.1.
    r = rows(majority_ratio=[0.4, 0.4, 0.6], pseudo_label_accuracy=[0.5, 0.5, 0.3])
    result = collapse_alarm(r, RAW)
    assert result.fired
    assert (result.step, result.peak_step, result.accuracy_key) == (3, 1, "pseudo_label_accuracy")
    assert result.accuracy_peak == pytest.approx(0.5) and result.accuracy_now == pytest.approx(0.3)
    assert result.majority_at_peak == pytest.approx(0.4)
    assert result.majority_now == pytest.approx(0.6)
    assert "COLLAPSE ALARM at step 3" in result.summary()


def test_patience_needs_consecutive_steps():
    r = rows(majority_ratio=[0.4, 0.4, 0.6, 0.7], pseudo_label_accuracy=[0.5, 0.5, 0.3, 0.3])
    assert collapse_alarm(r[:3], AlarmConfig(window=1, patience=2)).fired is False
    result = collapse_alarm(r, AlarmConfig(window=1, patience=2))
    assert result.fired and result.step == 4
    # A recovery in between resets the count.
    r = rows(majority_ratio=[0.4, 0.6, 0.6, 0.7], pseudo_label_accuracy=[0.5, 0.3, 0.5, 0.3])
    assert collapse_alarm(r, AlarmConfig(window=1, patience=2)).fired is False


def test_thresholds_are_inclusive_and_both_needed():
    r = rows(majority_ratio=[0.4, 0.5], pseudo_label_accuracy=[0.5, 0.4])  # exactly 0.1 each
    assert collapse_alarm(r, RAW).fired
    r = rows(majority_ratio=[0.4, 0.49], pseudo_label_accuracy=[0.5, 0.3])  # rise too small
    assert not collapse_alarm(r, RAW).fired
    r = rows(majority_ratio=[0.4, 0.9], pseudo_label_accuracy=[0.5, 0.45])  # drop too small
    assert not collapse_alarm(r, RAW).fired


def test_does_not_fire_when_the_model_learns():
    # Majority ratio and accuracy rise together: genuine learning, not collapse.
    up = [0.2 + 0.02 * i for i in range(30)]
    r = rows(majority_ratio=up, pseudo_label_accuracy=up, heldout_accuracy=up)
    result = collapse_alarm(r)
    assert not result.fired
    assert result.checked == ("heldout_accuracy", "pseudo_label_accuracy")


def test_does_not_fire_when_accuracy_falls_without_consensus():
    down = [0.8 - 0.02 * i for i in range(30)]
    r = rows(majority_ratio=[0.5] * 30, pseudo_label_accuracy=down)
    assert not collapse_alarm(r).fired


def test_smoothed_collapse_with_default_config():
    # 30 steps: majority ratio climbs 0.3 -> 0.9; pseudo-label accuracy holds at 0.5 for 10
    # steps, then falls 0.03 per step (0.5 - 0.03 (s - 10) at step s > 10). 5-step means:
    # the peak 0.5 is first reached at step 1; the smoothed drop at step s is the mean of
    # 0.03 * max(0, t - 10) over t = s-4..s: 0.06 at 14, 0.09 at 15, 0.12 at 16, 0.15 at 17.
    # So the condition first holds at 16 and, with patience 2, the alarm fires at 17.
    maj = [0.3 + 0.6 * i / 29 for i in range(30)]
    acc = [0.5] * 10 + [0.5 - 0.03 * (i + 1) for i in range(20)]
    result = collapse_alarm(rows(majority_ratio=maj, pseudo_label_accuracy=acc))
    assert result.fired and result.step == 17 and result.peak_step == 1
    assert result.accuracy_peak == 0.5
    assert result.accuracy_now == pytest.approx(0.5 - 0.15, abs=1e-12)
    assert result.majority_at_peak == pytest.approx(0.3, abs=1e-12)


def test_flat_noise_does_not_fire_with_defaults():
    rng = random.Random(0)
    for _ in range(20):
        maj = [0.5 + rng.uniform(-0.1, 0.1) for _ in range(60)]
        acc = [0.5 + rng.uniform(-0.1, 0.1) for _ in range(60)]
        assert not collapse_alarm(rows(majority_ratio=maj, pseudo_label_accuracy=acc)).fired


def test_sparse_heldout_series_is_used_as_is():
    # Held-out accuracy only at steps 0 and 20 (before/after); majority every step.
    r = [{"step": 0, "heldout_accuracy": 0.4}]
    r += [{"step": s, "majority_ratio": 0.3 + 0.02 * s} for s in range(1, 21)]
    r[-1]["heldout_accuracy"] = 0.2
    result = collapse_alarm(r, AlarmConfig(patience=1))
    assert result.fired and result.accuracy_key == "heldout_accuracy"
    assert (result.peak_step, result.step) == (0, 20)
    # No majority ratio at step 0: the peak is compared with the mean of steps 1-5,
    # 0.3 + 0.02 * 3 = 0.36; now (steps 16-20) it is 0.3 + 0.02 * 18 = 0.66.
    assert result.majority_at_peak == pytest.approx(0.36)
    assert result.majority_now == pytest.approx(0.66)


def test_missing_keys():
    r = rows(pseudo_label_accuracy=[0.5, 0.1])
    result = collapse_alarm(r, RAW)
    assert not result.fired and "no majority_ratio series" in result.reason
    r = rows(majority_ratio=[0.1, 0.9])
    result = collapse_alarm(r, RAW)
    assert not result.fired and "no accuracy series" in result.reason
    r = rows(majority_ratio=[0.1, 0.9], pseudo_label_accuracy=[None, 0.2])  # one point only
    assert not collapse_alarm(r, RAW).fired
    assert not collapse_alarm([], RAW).fired


def test_prefixes_agree_with_the_whole_run():
    # The trainer calls the alarm after every step on the rows so far: it must fire at the
    # same step as the whole-run check, and never earlier.
    maj = [0.3 + 0.6 * i / 29 for i in range(30)]
    acc = [0.5] * 10 + [0.5 - 0.03 * (i + 1) for i in range(20)]
    r = rows(majority_ratio=maj, pseudo_label_accuracy=acc)
    whole = collapse_alarm(r)
    for n in range(1, len(r) + 1):
        part = collapse_alarm(r[:n])
        assert part.fired == (n >= whole.step)
        if part.fired:
            assert part.step == whole.step


def test_series_and_smoothed():
    r = [{"step": 2, "a": 1.0}, {"step": 1, "a": 0.5}, {"step": 3, "a": None},
         {"step": 4, "a": float("nan")}, {"step": 5, "a": True}, {"step": 6, "a": 0.25},
         {"step": 2, "a": 0.75}]  # step 2 logged again (a resumed run): the last row wins
    assert series(r, "a") == [(1, 0.5), (2, 0.75), (6, 0.25)]
    pts = series(r, "a")
    assert smoothed(pts, 2, 2) == pytest.approx((0.5 + 0.75) / 2)
    assert smoothed(pts, 5, 2) == 0.75  # nothing in (3, 5]: the latest point before
    assert smoothed(pts, 0, 2) is None
    with pytest.raises(ValueError, match="row 0"):
        series([{"step": "x", "a": 1.0}], "a")


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"patience": 0}, {"accuracy_drop": 1.5},
                                    {"majority_rise": -0.1}, {"accuracy_keys": ()},
                                    {"min_points": 1}])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        AlarmConfig(**kwargs)


def _reference_alarm_step(acc, maj, cfg):
    """The rule written out literally (quadratic): the first firing step, or None."""
    steps = [s for s, _ in acc]
    smooth = {s: smoothed(acc, s, cfg.window) for s in steps}
    held = 0
    for i in range(cfg.min_points - 1, len(steps)):
        now = steps[i]
        peak = max(steps[:i], key=lambda s: (smooth[s], -s))
        m_now, m_peak = smoothed(maj, now, cfg.window), smoothed(maj, peak, cfg.window)
        if m_peak is None:
            m_peak = smoothed(maj, maj[0][0] + cfg.window - 1, cfg.window)
        if m_now is None or m_peak is None:
            held = 0
            continue
        ok = (smooth[peak] - smooth[now] >= cfg.accuracy_drop - 1e-12
              and m_now - m_peak >= cfg.majority_rise - 1e-12)
        held = held + 1 if ok else 0
        if held >= cfg.patience:
            return now
    return None


@pytest.mark.parametrize("seed", range(40))
def test_the_one_pass_check_matches_the_rule_written_out(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 40)
    cfg = AlarmConfig(window=rng.randint(1, 6), patience=rng.randint(1, 3),
                      min_points=rng.randint(2, 4), accuracy_drop=rng.choice([0.0, 0.1, 0.2]),
                      majority_rise=rng.choice([0.0, 0.1, 0.2]),
                      accuracy_keys=("heldout_accuracy",))
    r = rows(majority_ratio=[round(rng.random(), 1) for _ in range(n)],
             heldout_accuracy=[round(rng.random(), 1) if rng.random() < 0.4 else None
                               for _ in range(n)])
    r.insert(0, {"step": 0, "heldout_accuracy": 0.5})  # before training, as the trainer adds
    acc, maj = series(r, "heldout_accuracy"), series(r, "majority_ratio")
    expected = _reference_alarm_step(acc, maj, cfg) if len(acc) >= cfg.min_points else None
    assert collapse_alarm(r, cfg).step == expected


def test_watch_reports_a_firing_once_and_stops_only_when_asked():
    r = rows(majority_ratio=[0.4, 0.4, 0.6, 0.7, 0.8],
             pseudo_label_accuracy=[0.5, 0.5, 0.3, 0.3, 0.2])
    for stop in (False, True):
        watch = AlarmWatch(AlarmSection(window=1, patience=1, stop=stop), r[:1])
        fired = [watch.observe(row) for row in r[1:]]
        assert [f is not None for f in fired] == [False, True, False, False]
        assert fired[1].step == 3 and watch.result.fired
        assert watch.stop is stop
    quiet = AlarmWatch(AlarmSection(stop=True))
    assert quiet.observe() is None and quiet.stop is False  # no rows yet: no alarm
