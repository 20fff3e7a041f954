"""The collapse alarm on constructed and recorded metric series."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from nemo_coreward.reward.alarm import (
    AlarmConfig,
    AlarmSection,
    AlarmWatch,
    collapse_alarm,
    series,
    smoothed,
)

# No smoothing, fire at once, the drop rule alone: hand-checkable.
RAW = AlarmConfig(window=1, patience=1, rules=("drop",))


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
    assert result.rule == "drop" and "COLLAPSE ALARM at step 3 (drop)" in result.summary()


def test_patience_needs_consecutive_steps():
    r = rows(majority_ratio=[0.4, 0.4, 0.6, 0.7], pseudo_label_accuracy=[0.5, 0.5, 0.3, 0.3])
    cfg = AlarmConfig(window=1, patience=2, rules=("drop",))
    assert collapse_alarm(r[:3], cfg).fired is False
    result = collapse_alarm(r, cfg)
    assert result.fired and result.step == 4
    # A recovery in between resets the count.
    r = rows(majority_ratio=[0.4, 0.6, 0.6, 0.7], pseudo_label_accuracy=[0.5, 0.3, 0.5, 0.3])
    assert collapse_alarm(r, cfg).fired is False


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
    assert result.checked == ("drop:heldout_accuracy", "drop:pseudo_label_accuracy",
                              "gap:heldout_accuracy", "gap:pseudo_label_accuracy")


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
    result = collapse_alarm(rows(majority_ratio=maj, pseudo_label_accuracy=acc),
                            AlarmConfig(rules=("drop",)))
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
    result = collapse_alarm(r, AlarmConfig(patience=1, rules=("drop",)))
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
    assert not result.fired and "no series with >= 2 points" in result.reason
    r = rows(majority_ratio=[0.1, 0.9], pseudo_label_accuracy=[None, 0.2])  # one point only
    assert not collapse_alarm(r, RAW).fired
    assert not collapse_alarm([], RAW).fired


def test_prefixes_agree_with_the_whole_run():
    # The trainer calls the alarm after every step on the rows so far: it must fire at the
    # same step as the whole-run check, and never earlier.
    maj = [0.3 + 0.6 * i / 29 for i in range(30)]
    acc = [0.5] * 10 + [0.5 - 0.03 * (i + 1) for i in range(20)]
    r = rows(majority_ratio=maj, pseudo_label_accuracy=acc,
             twin_agreement=[0.3] * 10 + [0.3 - 0.01 * i for i in range(20)])
    whole = collapse_alarm(r)
    assert whole.fired
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
                                    {"min_points": 1}, {"gap": 2.0}, {"split": -0.5},
                                    {"rules": ("drop", "slump")}, {"noise_z": -1.0}])
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
                      accuracy_keys=("heldout_accuracy",), rules=("drop",))
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
        watch = AlarmWatch(AlarmSection(window=1, patience=1, rules=("drop",), stop=stop), r[:1])
        fired = [watch.observe(row) for row in r[1:]]
        assert [f is not None for f in fired] == [False, True, False, False]
        assert fired[1].step == 3 and watch.result.fired
        assert watch.stop is stop
    quiet = AlarmWatch(AlarmSection(stop=True))
    assert quiet.observe() is None and quiet.stop is False  # no rows yet: no alarm


def test_gap_rule_fires_when_consensus_outgrows_flat_accuracy():
    # Window 1. Gap M - A: -0.1, 0.0, 0.3. At step 3 it is >= 0.15, 0.4 above its smallest
    # earlier value (step 1, >= 0.2), and M rose 0.4 since step 1 (>= 0.1). Accuracy never
    # fell, so the drop rule stays silent.
    r = rows(majority_ratio=[0.4, 0.5, 0.8], pseudo_label_accuracy=[0.5, 0.5, 0.5])
    result = collapse_alarm(r, AlarmConfig(window=1, patience=1))
    assert (result.fired, result.rule, result.step, result.peak_step) == (True, "gap", 3, 1)
    assert (result.accuracy_peak, result.accuracy_now) == (0.5, 0.5)
    assert (result.majority_at_peak, result.majority_now) == (0.4, 0.8)
    assert "self-agreement outgrew correctness" in result.summary()
    assert not collapse_alarm(r, AlarmConfig(window=1, patience=1, rules=("drop",))).fired
    # Just under each threshold: gap 0.14; widened 0.19; consensus risen only 0.09.
    for maj, acc in (([0.4, 0.5, 0.64], [0.5] * 3), ([0.4, 0.5, 0.74], [0.4, 0.5, 0.55]),
                     ([0.5, 0.5, 0.59], [0.6, 0.6, 0.39])):
        quiet = rows(majority_ratio=maj, pseudo_label_accuracy=acc)
        assert not collapse_alarm(quiet, AlarmConfig(window=1, patience=1,
                                                     rules=("gap",))).fired, (maj, acc)


def test_split_rule_needs_no_known_answer():
    # Window 1: M - T = 0.1, then 0.8 - 0.25 = 0.55 >= 0.5 at step 2. No accuracy series.
    r = rows(majority_ratio=[0.5, 0.8], twin_agreement=[0.4, 0.25])
    result = collapse_alarm(r, AlarmConfig(window=1, patience=1))
    assert (result.fired, result.rule, result.step) == (True, "split", 2)
    assert (result.accuracy_key, result.accuracy_now, result.majority_now) == (
        "twin_agreement", 0.25, 0.8)
    assert "consistent without agreeing with its twins" in result.summary()
    # Twins that agree as much as each phrasing agrees with itself: learning, no alarm.
    r = rows(majority_ratio=[0.5, 0.8, 0.9], twin_agreement=[0.4, 0.7, 0.8])
    assert not collapse_alarm(r, AlarmConfig(window=1, patience=1)).fired
    assert not collapse_alarm(rows(majority_ratio=[0.5, 0.8], twin_agreement=[0.4, 0.25]),
                              AlarmConfig(window=1, patience=1, rules=("drop", "gap"))).fired


# --- Recorded runs ----------------------------------------------------------------------
# `coreward train seed=1 reward.name=majority` on a 2-core machine: held-out greedy accuracy
# 56.2% -> 65.6%; pseudo-label accuracy by step as logged. Not logged per step, assumed:
# the majority ratio (= the reward of this reward) rising linearly from 0.38 at step 1 to
# 0.88 at step 15, then 0.78 at step 16 (the three recorded values); twin agreement on the
# training batch (8 pairs: multiples of 1/8) at 0.25, the base model's held-out twin
# agreement, for steps 1-8, then at the recorded final 0.125 for steps 9-16.
MAJORITY_SEED1 = {
    "pseudo_label_accuracy": [0.56, 0.44, 0.62, 0.50, 0.62, 0.69, 0.69, 0.75,
                              0.62, 0.44, 0.50, 0.88, 0.69, 0.56, 0.56, 0.50],
    "majority_ratio": [0.38 + (s - 1) * 0.5 / 14 for s in range(1, 16)] + [0.78],
    "twin_agreement": [0.25] * 8 + [0.125] * 8,
}
# The full label-free benchmark of docs/results.md (seed 0, 16 steps, 8 pairs x 2 sides),
# read off its committed curves (docs/results/label_free_full/*.png) to about +-0.02;
# pseudo-label accuracy is a multiple of 1/16 there, twin agreement of 1/8.
CO_REWARD_SEED0 = {
    "pseudo_label_accuracy": [.375, .375, .375, .5625, .625, .5625, .625, .625,
                              .625, .75, .625, .6875, .75, .75, .8125, .625],
    "majority_ratio": [.33, .36, .36, .50, .55, .59, .64, .61, .67, .81, .66, .56, .77, .77,
                       .77, .77],
    "twin_agreement": [.125, .25, .25, .25, .25, .25, .25, .375, .125, .5, .125, .25, .5, .5,
                       .625, .5],
}
MAJORITY_SEED0 = {
    "pseudo_label_accuracy": [.375, .25, .5, .4375, .5, .625, .5625, .5625,
                              .5625, .75, .5625, .5625, .6875, .6875, .625, .8125],
    "majority_ratio": [.33, .375, .42, .55, .49, .50, .58, .58, .65, .77, .66, .67, .70, .77,
                       .74, .84],
    "twin_agreement": [.125, .125, .375, .25, .375, .375, .375, .5, .125, .5, .125, .125, .5,
                       .5, .375, .625],
}
GROUND_TRUTH_SEED0 = {"pseudo_label_accuracy": [1.0] * 16,
                      "majority_ratio": [.33, .37, .33, .55, .63, .58, .64, .69, .65, .86,
                                         .69, .81, .86, .80, .91, .88]}
# `coreward train seed=1` (Co-Reward) on the same machine: 56.2% -> 85.9%, final pseudo-label
# accuracy 0.69 and twin agreement 0.38 as logged. Assumed: linear rises from the
# Co-Reward seed-0 run's first values (pseudo-label accuracy 0.375, majority ratio 0.33,
# twin agreement 0.125) to those finals, the majority ratio to 0.77 (seed 0's final).
CO_REWARD_SEED1 = {
    "pseudo_label_accuracy": [0.375 + (0.69 - 0.375) * i / 15 for i in range(16)],
    "majority_ratio": [0.33 + (0.77 - 0.33) * i / 15 for i in range(16)],
    "twin_agreement": [0.125 + (0.38 - 0.125) * i / 15 for i in range(16)],
}


def _recorded(columns, before=None, after=None):
    r = rows(**columns)
    if before is not None:  # held-out accuracy before (step 0) and after training
        r.insert(0, {"step": 0, "heldout_accuracy": before})
        r[-1]["heldout_accuracy"] = after
    return r


def test_the_recorded_majority_vote_collapse_fires():
    r = _recorded(MAJORITY_SEED1, before=0.562, after=0.656)
    # The accuracy-drop rule alone missed it: pseudo-label accuracy never fell 0.1 below
    # its 5-step peak while the consensus rose.
    assert not collapse_alarm(r, AlarmConfig(rules=("drop",))).fired
    # Label-free: 5-step means of M at step s are 0.38 + (s - 3) * 0.5 / 14. M - T at step
    # 11: 0.666 - 0.175 = 0.491; step 12: 0.701 - 0.150 = 0.551 >= 0.5; step 13: 0.737 -
    # 0.125 = 0.612. With patience 2 the split rule fires at step 13.
    split = collapse_alarm(r)
    assert (split.fired, split.rule, split.step) == (True, "split", 13)
    assert split.majority_now == pytest.approx(0.38 + 10 * 0.5 / 14)
    assert split.accuracy_now == pytest.approx(0.125)
    # With known answers: at step 15, M = 0.38 + 12 * 0.5 / 14 = 0.809 (steps 11-15) against
    # pseudo-label accuracy 0.638: a gap of 0.171, 0.351 wider than at step 1 (0.38 - 0.56).
    gap = collapse_alarm(r, AlarmConfig(rules=("gap",)))
    assert (gap.fired, gap.step, gap.peak_step, gap.accuracy_key) == (
        True, 15, 1, "pseudo_label_accuracy")
    assert gap.majority_now - gap.accuracy_now == pytest.approx(0.809 - 0.638, abs=1e-3)


@pytest.mark.parametrize("name, columns, heldout", [
    ("co_reward seed 1", CO_REWARD_SEED1, (0.562, 0.859)),
    ("co_reward seed 0", CO_REWARD_SEED0, (0.500, 0.906)),
    ("majority seed 0", MAJORITY_SEED0, (0.500, 0.844)),
    ("ground_truth seed 0", GROUND_TRUTH_SEED0, (0.500, 0.922)),
])
def test_recorded_runs_that_learn_raise_no_alarm(name, columns, heldout):
    r = _recorded(columns, *heldout)
    result = collapse_alarm(r)
    assert not result.fired, (name, result.summary())
    expected = {"drop:pseudo_label_accuracy", "gap:pseudo_label_accuracy",
                "drop:heldout_accuracy", "gap:heldout_accuracy"}
    if "twin_agreement" in columns:
        expected.add("split:twin_agreement")
    assert set(result.checked) == expected


def test_noisy_learning_with_twins_does_not_fire_with_defaults():
    # Consensus, accuracy and twin agreement rise together (twins 0.2 below consensus),
    # each with +-0.1 noise per step: honest learning, seen through small batches.
    rng = random.Random(1)
    base = [0.3 + 0.5 * i / 39 for i in range(40)]
    for _ in range(20):
        noisy = lambda shift: [b + shift + rng.uniform(-0.1, 0.1) for b in base]  # noqa: E731
        r = rows(majority_ratio=noisy(0), pseudo_label_accuracy=noisy(0),
                 twin_agreement=noisy(-0.2))
        assert not collapse_alarm(r).fired


def _reference_gap_step(other, maj, cfg, threshold, rise):
    """The gap and split rules written out literally (quadratic): the first firing step."""
    first = smoothed(maj, maj[0][0] + cfg.window - 1, cfg.window)

    def m(step):
        value = smoothed(maj, step, cfg.window)
        return first if value is None else value

    steps = [s for s, _ in other]
    gap = {s: m(s) - smoothed(other, s, cfg.window) for s in steps}
    held = 0
    for i in range(cfg.min_points - 1, len(steps)):
        now = steps[i]
        ok = gap[now] >= threshold - 1e-12
        if rise is not None:
            low = min(steps[:i], key=lambda s: (gap[s], s))  # the first smallest
            ok = (ok and gap[now] - gap[low] >= rise - 1e-12
                  and m(now) - m(low) >= cfg.majority_rise - 1e-12)
        held = held + 1 if ok else 0
        if held >= cfg.patience:
            return now
    return None


@pytest.mark.parametrize("seed", range(40))
def test_the_gap_and_split_checks_match_the_rules_written_out(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 40)
    cfg = AlarmConfig(window=rng.randint(1, 6), patience=rng.randint(1, 3),
                      min_points=rng.randint(2, 4), majority_rise=rng.choice([0.0, 0.1]),
                      gap=rng.choice([0.0, 0.1, 0.2]), gap_rise=rng.choice([0.0, 0.1, 0.3]),
                      split=rng.choice([0.1, 0.3, 0.5]), accuracy_keys=("heldout_accuracy",))
    r = rows(majority_ratio=[round(rng.random(), 1) for _ in range(n)],
             heldout_accuracy=[round(rng.random(), 1) if rng.random() < 0.4 else None
                               for _ in range(n)],
             twin_agreement=[round(rng.random(), 1) if rng.random() < 0.8 else None
                             for _ in range(n)])
    r.insert(0, {"step": 0, "heldout_accuracy": 0.5})  # before training, as the trainer adds
    maj = series(r, "majority_ratio")
    for rule, key, threshold, rise in (("gap", "heldout_accuracy", cfg.gap, cfg.gap_rise),
                                       ("split", "twin_agreement", cfg.split, None)):
        other = series(r, key)
        expected = (_reference_gap_step(other, maj, cfg, threshold, rise)
                    if len(other) >= cfg.min_points else None)
        assert collapse_alarm(r, replace(cfg, rules=(rule,))).step == expected, rule


# `benchmarks/label_free_cpu.py --seeds 0,1,2 --precision 32-true`, seed 2, co_reward
# (docs/results.md): 5 pairs x 2 sides, so 10 groups and 10 pseudo labels per step;
# held-out greedy accuracy 56.2% -> 76.6%. Copied from its metrics.jsonl.
CO_REWARD_FULL_SEED2 = {
    "pseudo_label_accuracy": [0.8, 0.6, 0.6, 0.7, 0.6, 0.5, 0.6, 0.7, 0.6, 0.7, 0.6, 0.8],
    "majority_ratio": [0.6, 0.425, 0.5, 0.6, 0.575, 0.575, 0.8, 0.725, 0.675, 0.725, 0.625,
                       0.7],
    "twin_agreement": [0.6, 0.4, 0.4, 0.6, 0.2, 0.4, 0.2, 0.4, 0.4, 0.4, 0.8, 0.8],
    "n_groups": [10.0] * 12,
}


def test_a_drop_within_the_noise_of_ten_labels_per_step_does_not_fire():
    r = rows(**CO_REWARD_FULL_SEED2)
    # Without the noise margin the drop rule fired on this learning run: pseudo-label
    # accuracy 0.80 at step 1 (one point) against 0.64 over steps 7-11, majority ratio
    # 0.600 -> 0.710.
    raw = collapse_alarm(r, AlarmConfig(noise_z=0))
    assert (raw.fired, raw.rule, raw.step, raw.peak_step) == (True, "drop", 11, 1)
    assert (raw.accuracy_peak, raw.accuracy_now) == pytest.approx((0.8, 0.64))
    # With it: 10 labels against 50, pooled p = (8 + 32) / 60, two standard errors
    # 2 * sqrt(p (1 - p) (1/10 + 1/50)) = 0.3266 > 0.16.
    p = 40 / 60
    assert 2 * (p * (1 - p) * (1 / 10 + 1 / 50)) ** 0.5 == pytest.approx(0.3266, abs=1e-4)
    result = collapse_alarm(r)
    assert not result.fired, result.summary()


def test_the_noise_margin_is_the_two_proportion_standard_error():
    # Unsmoothed, 20 labels per step: 0.9 then 0.6, a fall of 0.3 against a margin of
    # z * sqrt(0.75 * 0.25 * (1/20 + 1/20)) = z * 0.13693.
    acc, maj = [0.9, 0.6], [0.3, 0.6]
    r = rows(pseudo_label_accuracy=acc, majority_ratio=maj, n_groups=[20.0] * 2)
    cfg = AlarmConfig(window=1, patience=1, rules=("drop",), accuracy_drop=0.01)
    assert collapse_alarm(r, replace(cfg, noise_z=2.19)).step == 2  # 0.2999 needed
    assert not collapse_alarm(r, replace(cfg, noise_z=2.20)).fired  # 0.3012 needed
    # A series without counts, or a key not counted, keeps the fixed threshold alone.
    assert collapse_alarm(rows(pseudo_label_accuracy=acc, majority_ratio=maj),
                          replace(cfg, noise_z=2.20)).fired
    assert collapse_alarm(r, replace(cfg, noise_z=2.20, counted_keys=())).fired


def test_the_recorded_majority_collapse_still_fires_with_its_label_counts():
    # MAJORITY_SEED1 voted on 16 groups per step (8 pairs x 2 sides).
    r = _recorded({**MAJORITY_SEED1, "n_groups": [16.0] * 16}, before=0.562, after=0.656)
    assert (collapse_alarm(r).rule, collapse_alarm(r).step) == ("split", 13)
    gap = collapse_alarm(r, AlarmConfig(rules=("gap",)))
    # Widening 0.351 since step 1 (16 labels) against 80 labels at step 15: margin
    # 2 * sqrt(p (1 - p) (1/16 + 1/80)), p = (0.56 * 16 + 0.638 * 80) / 96.
    assert (gap.fired, gap.step, gap.peak_step) == (True, 15, 1)


# The stress budget's majority-vote run (docs/results.md), its first 12 steps replayed with
# the same seed and settings (`coreward train reward.name=majority seed=0` with the
# benchmark's stress overrides and train.steps=12: the same rewards and ratios step for
# step as the benchmark's run, which predates shared_answer_rate), copied from metrics.jsonl.
# The policy collapses onto the one-shot example's answer for every question.
MAJORITY_STRESS_SEED0 = {
    "majority_ratio": [0.25, 0.21875, 0.3125, 0.40625, 0.421875, 0.484375, 0.640625, 0.6875,
                       0.828125, 0.953125, 0.921875, 1.0],
    "twin_agreement": [0.0, 0.0, 0.0, 0.0, 0.375, 0.25, 0.375, 0.375, 0.625, 0.875, 0.875, 1.0],
    "shared_answer_rate": [1 / 6, 1 / 7, 1 / 7, 2 / 7, 5 / 7, 5 / 7, 5 / 7, 6 / 7, 1.0, 1.0, 1.0,
                           1.0],
    "pseudo_label_accuracy": [0.0] * 12,
    "n_groups": [16.0] * 12,
}


def test_the_shared_rule_sees_every_question_answered_alike_where_split_cannot():
    r = rows(**MAJORITY_STRESS_SEED0)
    # The twins agree on the one answer: M - T stays below 0.5, split is blind.
    assert not collapse_alarm(r, AlarmConfig(rules=("split",))).fired
    # 5-step means of S: step 7 = (1 + 2 + 5 + 5 + 5) / 35 = 0.514, step 8 = (2 + 5 + 5 + 5
    # + 6) / 35 = 0.657 >= 0.6, step 9 = (5 + 5 + 5 + 6 + 7) / 35 = 0.8: fires at 9.
    shared = collapse_alarm(r, AlarmConfig(rules=("shared",)))
    assert (shared.fired, shared.rule, shared.step) == (True, "shared", 9)
    assert shared.accuracy_now == pytest.approx(0.8)
    assert "collapsed onto one answer" in shared.summary()
    # With the known answers, gap fires a step earlier (as during the benchmark's run).
    assert (collapse_alarm(r).rule, collapse_alarm(r).step) == ("gap", 8)


def test_the_shared_rule_stays_silent_on_occasional_coincidences():
    # 8 questions a step sharing answers by chance as the final models of the full benchmark
    # did on held-out batches of 8 pairs (1/7 to 4/7, once 0.57).
    rng = random.Random(0)
    shared = [rng.choice([1 / 7, 2 / 7, 2 / 7, 3 / 7, 4 / 7]) for _ in range(40)]
    r = rows(majority_ratio=[0.5] * 40, shared_answer_rate=shared)
    assert not collapse_alarm(r).fired
    assert "shared:shared_answer_rate" in collapse_alarm(r).checked
