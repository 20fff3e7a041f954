"""Report rendering: PNG files that exist and show something, the page, the alarm in it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nemo_coreward.eval.report import PANELS, load_run, mean_band, write_report
from nemo_coreward.eval.report_cli import main as report_main


def _check_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.is_file()
    assert path.stat().st_size > 10_000, f"{path} is suspiciously small"
    image = mpimg.imread(path)
    assert image.shape[:2] == (400, 1000)  # figsize (10, 4) at 100 dpi
    colours = np.unique(image.reshape(-1, image.shape[-1]), axis=0)
    assert len(colours) > 20, f"{path} is (nearly) one colour"


def test_report_renders_every_logged_panel(tmp_path, make_run):
    a = make_run(tmp_path, "coreward-1", "co_reward", collapse=False)
    b = make_run(tmp_path, "majority-1", "majority", collapse=True,
                 keys_missing=("twin_agreement", "kl_loss"))
    out = tmp_path / "report"
    page = write_report([a, b], out)
    missing = {"entropy", "teacher_label_accuracy", "teacher_majority_ratio",
               "teacher_policy_agreement"}  # no run logged these
    drawn = {p.name for p in PANELS} - missing
    for name in drawn:
        _check_png(out / f"{name}.png")
    assert not any((out / f"{name}.png").exists() for name in missing)
    text = page.read_text()
    for name in drawn:
        assert f"({name}.png)" in text
    assert ("Not logged by any run: teacher_label_accuracy, teacher_majority_ratio, "
            "teacher_policy_agreement, entropy.") in text
    assert "co_reward (coreward-1)" in text and "majority (majority-1)" in text
    # The collapsing run trips the alarm, the learning one does not.
    assert "majority (majority-1): COLLAPSE ALARM at step" in text
    assert "co_reward (coreward-1): no collapse alarm" in text


def test_overlaid_runs_differ_from_a_single_run(tmp_path, make_run):
    a = make_run(tmp_path, "a", "co_reward", collapse=False)
    b = make_run(tmp_path, "b", "majority", collapse=True)
    import matplotlib.image as mpimg

    write_report([a], tmp_path / "one")
    write_report([a, b], tmp_path / "two")
    one = mpimg.imread(tmp_path / "one" / "pseudo_label_accuracy.png")
    two = mpimg.imread(tmp_path / "two" / "pseudo_label_accuracy.png")
    assert np.abs(one - two).sum() > 100  # the second run's curves are drawn


def test_heldout_points_come_from_eval_json(tmp_path, make_run):
    run = load_run(make_run(tmp_path, "r", "ground_truth", collapse=False))
    assert run.points("heldout_accuracy") == [(0, 0.3), (make_run.STEPS, 0.7)]
    assert run.reward == "ground_truth" and run.last_step == make_run.STEPS


def test_run_without_config_and_torn_last_line(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text(
        '{"step": 1, "majority_ratio": 0.5}\n{"step": 2, "majority_ratio": 0.6}\n{"step": 3, "ma')
    loaded = load_run(run)
    assert loaded.reward == "unknown reward" and len(loaded.rows) == 2
    (run / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2"):
        load_run(run)


def test_empty_run_dir_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        load_run(tmp_path / "empty")
    assert report_main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2


def test_report_cli_and_fail_on_alarm(tmp_path, make_run, capsys):
    a = make_run(tmp_path, "a", "co_reward", collapse=False)
    b = make_run(tmp_path, "b", "majority", collapse=True)
    out = tmp_path / "out"
    assert report_main([str(a), str(b), "--out", str(out), "--smooth", "3"]) == 0
    assert (out / "report.md").is_file() and (out / "reward.png").is_file()
    assert "COLLAPSE ALARM" in capsys.readouterr().out
    assert report_main([str(a), str(b), "--out", str(out), "--fail-on-alarm"]) == 3
    assert report_main([str(a), "--out", str(out), "--fail-on-alarm"]) == 0


def test_mean_band_over_runs_with_different_steps():
    # Step 1: both runs (0.2, 0.4) -> mean 0.3, sd sqrt(0.02) ; step 2: one run -> sd 0.
    steps, means, sds = mean_band([[(1, 0.2), (2, 0.5)], [(1, 0.4)]])
    assert steps == [1, 2] and means == pytest.approx([0.3, 0.5])
    assert sds == pytest.approx([0.02 ** 0.5, 0.0])


def _legend_is_outside_the_axes(path: Path) -> bool:
    """The axes end at 66% of the width and the legend starts at 67%: a blank strip between
    them, and text (dark pixels) right of it."""
    import matplotlib.image as mpimg

    image = mpimg.imread(path)[:, :, :3]
    width = image.shape[1]
    strip = image[:, int(0.663 * width):int(0.669 * width)]
    right = image[:, int(0.675 * width):]
    return bool((strip > 0.95).all() and (right < 0.5).any())


def test_seeds_of_an_arm_are_one_mean_line_with_a_band(tmp_path, make_run):
    import matplotlib.image as mpimg

    seeds = []
    for seed in range(3):  # three seeds of one arm: same directory name, other parents
        (tmp_path / f"seed{seed}").mkdir()
        seeds.append(make_run(tmp_path / f"seed{seed}", "majority", "majority",
                              collapse=seed == 2))
    single = make_run(tmp_path, "cr", "co_reward", collapse=False)
    page = write_report([*seeds, single], tmp_path / "grouped").read_text()
    # Runs are told apart by their paths; the arm table pools the seeds.
    assert "majority (seed0/majority)" in page and "majority (seed2/majority)" in page
    assert "## Arms (mean ± sd over runs)" in page
    assert "| majority | 3 | 0.500 ± 0.346 |" in page  # after: 0.7, 0.7, 0.1
    assert "| 1/3 |" in page and "| co_reward | 1 | 0.700 ± 0.000 |" in page
    png = tmp_path / "grouped" / "pseudo_label_accuracy.png"
    _check_png(png)
    assert _legend_is_outside_the_axes(png)
    # A band: the grouped figure differs from one drawn with the collapsing seed alone.
    write_report([seeds[0], seeds[1], single], tmp_path / "two_seeds")
    a = mpimg.imread(png)
    b = mpimg.imread(tmp_path / "two_seeds" / "pseudo_label_accuracy.png")
    assert np.abs(a - b).sum() > 100
    with pytest.raises(ValueError, match="given twice"):
        write_report([seeds[0], seeds[0]], tmp_path / "twice")


def test_report_cli_alarm_rules(tmp_path, make_run, capsys):
    # The constructed collapse: pseudo-label accuracy 0.6 -> 0.1 while the majority ratio
    # rises 0.3 -> 0.9; twin agreement rises with it (0.2 -> 0.7), so the label-free split
    # rule alone (0.9 - 0.7 = 0.2 < 0.5) does not see it, and drop does.
    b = make_run(tmp_path, "b", "majority", collapse=True)
    out = str(tmp_path / "out")
    assert report_main([str(b), "--out", out, "--fail-on-alarm", "--alarm-rules", "split"]) == 0
    assert report_main([str(b), "--out", out, "--fail-on-alarm", "--alarm-rules", "drop"]) == 3
    assert "(drop)" in capsys.readouterr().out
    assert report_main([str(b), "--out", out, "--fail-on-alarm", "--alarm-rules", "split",
                        "--alarm-split", "0.1"]) == 3
    assert report_main([str(b), "--out", out, "--alarm-rules", "slump"]) == 2
    assert "unknown rule 'slump'" in capsys.readouterr().err
