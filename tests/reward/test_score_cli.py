"""``coreward score`` end to end through the real entry point."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_coreward.cli import main

EXAMPLE = Path(__file__).parents[2] / "examples" / "rollouts" / "example_rollouts.jsonl"


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_scores_in_input_order_with_metrics(tmp_path):
    out, metrics = tmp_path / "s.jsonl", tmp_path / "m.json"
    assert main(["score", str(EXAMPLE), "--equivalence", "normalized", "--out", str(out),
                 "--metrics", str(metrics)]) == 0
    src, got = _lines(EXAMPLE), _lines(out)
    assert [(r["pair_id"], r["side"]) for r in got] == [(r["pair_id"], r["side"]) for r in src]
    assert set(got[0]) >= {"pair_id", "side", "answer", "label", "reward"}
    m = json.loads(metrics.read_text())
    # normalized mode merges 7/7.0/"7 apples" and 1/2, \dfrac12, 0.5: 12 of 16 agree
    assert m["reward_mean"] == pytest.approx(12 / 16)
    assert m["pseudo_label_accuracy"] == 1.0 and m["skipped_lines"] == 0


def test_exact_mode_reproduces_string_voting(tmp_path):
    out = tmp_path / "s.jsonl"
    assert main(["score", str(EXAMPLE), "--out", str(out)]) == 0
    assert sum(r["reward"] for r in _lines(out)) == 6.0


@pytest.mark.parametrize("bad,msg", [
    ("{not json", "in.jsonl:2: not valid JSON"),
    ('{"pair_id": 1, "response": "x"}', "in.jsonl:2: missing key 'side'"),
    ('{"pair_id": 1, "side": "0", "response": "x"}', "in.jsonl:2: 'side' must be an integer"),
    ('{"pair_id": [1], "side": 0, "response": "x"}', "in.jsonl:2: 'pair_id' must be"),
    ('[1, 2]', "in.jsonl:2: expected a JSON object"),
])
def test_malformed_line_is_named_and_nothing_written(tmp_path, capsys, bad, msg):
    src = tmp_path / "in.jsonl"
    good = json.dumps({"pair_id": 1, "side": 0, "response": r"\boxed{1}"})
    src.write_text(good + "\n" + bad + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["score", str(src), "--reward", "majority", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1  # one line
    assert not out.exists()


def test_skip_bad_counts(tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [{"pair_id": 1, "side": s, "response": r"\boxed{1}"} for s in (0, 1)]
    src.write_text(json.dumps(rows[0]) + "\n{oops\n" + json.dumps(rows[1]) + "\n")
    out, metrics = tmp_path / "o.jsonl", tmp_path / "m.json"
    assert main(["score", str(src), "--out", str(out), "--metrics", str(metrics),
                 "--skip-bad"]) == 0
    assert [r["reward"] for r in _lines(out)] == [1.0, 1.0]
    assert json.loads(metrics.read_text())["skipped_lines"] == 1


def test_inconsistent_groups_are_an_error(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"pair_id": "a", "side": 0, "response": "x"}) + "\n")
    assert main(["score", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "pair 'a' has rollouts for side 0 only" in capsys.readouterr().err


def test_teacher_lines(tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [{"pair_id": 1, "side": 0, "response": r"\boxed{3}"},
            {"pair_id": 1, "side": 0, "response": r"\boxed{3}", "role": "teacher"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o.jsonl"
    assert main(["score", str(src), "--reward", "co_rewarding_ii", "--out", str(out)]) == 0
    got = _lines(out)
    assert got[0]["reward"] == 1.0 and got[1]["role"] == "teacher" and got[1]["reward"] is None


def test_text_that_is_not_valid_unicode_is_repaired_counted_and_scored(tmp_path, capsys):
    """A lone surrogate escaped in the JSON, and bytes that are not UTF-8: both become
    U+FFFD, the rollouts are scored and written, and the repair is counted."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"pair_id": 1, "side": 0, "response": "\\\\boxed{1\\udbf9}"}\n'
                    b'{"pair_id": 1, "side": 1, "response": "\\\\boxed{1\xff}"}\n'
                    b'{"pair_id": 1, "side": 1, "response": "\\\\boxed{2}"}\n')
    out, metrics = tmp_path / "o.jsonl", tmp_path / "m.json"
    assert main(["score", str(src), "--out", str(out), "--metrics", str(metrics)]) == 0
    got = _lines(out)
    assert [r["answer"] for r in got] == ["1\ufffd", "1\ufffd", "2"]
    assert [r["reward"] for r in got] == [1.0, 1.0, 0.0]
    assert json.loads(metrics.read_text())["repaired_lines"] == 2
    assert "2 with invalid Unicode repaired" in capsys.readouterr().err


def test_torn_last_line_is_skipped_and_the_rest_scored(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    rows = [{"pair_id": 1, "side": s, "response": r"\boxed{1}"} for s in (0, 1)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"pair_id": 1, "si')
    out = tmp_path / "o.jsonl"
    assert main(["score", str(src), "--out", str(out)]) == 0
    assert [r["reward"] for r in _lines(out)] == [1.0, 1.0]
    assert f"{src}:3: skipping a torn last line" in capsys.readouterr().err


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "nemo_coreward.cli", "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "score" in res.stdout
