"""The shared JSONL module and atomic writes: one policy for torn lines and bad Unicode."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nemo_coreward.io import (
    JsonlAppender,
    JsonlError,
    atomic_file,
    atomic_write,
    cut_after,
    dumps_line,
    read_jsonl,
    write_jsonl,
)


def test_torn_last_line_is_skipped_with_a_warning_naming_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "reward": 0.')
    warnings: list[str] = []
    found = read_jsonl(path, warn=warnings.append)
    assert found.rows == [{"step": 1}, {"step": 2}]
    assert found.torn_line == 3
    assert warnings == [f"{path}:3: skipping a torn last line (24 bytes; a write was cut off)"]


def test_unterminated_last_line_that_parses_is_a_row(tmp_path):
    path = tmp_path / "hand.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')
    assert read_jsonl(path).rows == [{"a": 1}, {"a": 2}]


def test_bad_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "re\n{"step": 3}\n')
    with pytest.raises(JsonlError, match=rf"^{path}:2: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"step": 1}\n[1, 2]\n')
    with pytest.raises(JsonlError, match=rf"^{path}:2: expected a JSON object, got list"):
        read_jsonl(path)


def test_a_terminated_bad_last_line_is_an_error_not_a_torn_write(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(JsonlError, match=":2: "):
        read_jsonl(path)


def test_lone_surrogate_escape_is_repaired_and_counted(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"response": "\\\\boxed{1\\udbf9}"}\n{"response": "ok \\ud83d\\ude00"}\n')
    found = read_jsonl(path, warn=None)
    assert found.rows[0]["response"] == "\\boxed{1\ufffd}"
    assert found.rows[1]["response"] == "ok \U0001F600"  # a valid pair is kept
    assert found.repaired == 1
    for row in found.rows:  # every row can be written again as UTF-8
        dumps_line(row).encode("utf-8")


def test_invalid_utf8_bytes_are_repaired_and_counted(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"q": "caf\xe9"}\n{"q": "fine"}\n')
    found = read_jsonl(path, warn=None)
    assert found.rows == [{"q": "caf\ufffd"}, {"q": "fine"}]
    assert found.repaired == 1


def test_dumps_line_never_fails_on_a_lone_surrogate():
    line = dumps_line({"x": "a\udbf9b"})
    assert json.loads(line) == {"x": "a\ufffdb"}
    line.encode("utf-8")


def test_appender_cuts_a_torn_tail_before_appending(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "quest')
    with JsonlAppender(path, warn=None) as out:
        assert [r["id"] for r in out.existing] == ["a"]
        out.write([{"id": "b"}, {"id": "c"}])
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'


def test_append_mends_only_the_tail_even_past_one_read_chunk(tmp_path):
    path = tmp_path / "samples.jsonl"
    rows = [{"step": i, "text": "x" * 100} for i in range(1000)]
    torn = '{"step": 1000, "text": "' + "y" * 70_000  # longer than the 64 KiB tail read
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + torn)
    warnings: list[str] = []
    with JsonlAppender(path, read=False, warn=warnings.append) as out:
        out.write([{"step": 1000}])
    assert warnings == [f"{path}:1001: cutting off a torn last line (70024 bytes; a write "
                        "was cut off)"]
    assert read_jsonl(path).rows == [*rows, {"step": 1000}]


def test_appender_terminates_a_good_unterminated_last_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a"}')
    with JsonlAppender(path, warn=None) as out:
        out.write([{"id": "b"}])
    assert [r["id"] for r in read_jsonl(path).rows] == ["a", "b"]


def test_cut_after_keeps_steps_up_to_the_checkpoint_and_drops_a_torn_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "x"')
    assert cut_after(path, 2) == 1
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "results.json"
    atomic_write(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left


def test_atomic_write_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(tmp_path / "x.json", b"{}")
    assert len(synced) == 2
    assert synced[0].startswith(str(tmp_path / ".x.json."))  # the data, before the rename
    assert synced[1] == str(tmp_path)  # the folder, after it


def test_write_jsonl_round_trips(tmp_path):
    rows = [{"id": "q1", "question": "1 + 1 = ?", "meta": {"é": [1, None]}}]
    assert read_jsonl(write_jsonl(tmp_path / "r.jsonl", rows)).rows == rows


_WRITER = """
import sys
from nemo_coreward.io import JsonlAppender
with JsonlAppender(sys.argv[1]) as out:
    for step in range(1, 10**9):
        out.write([{"step": step, "pad": "x" * 5000}])
"""


@pytest.mark.slow
def test_sigkill_mid_append_never_breaks_a_reader_or_the_next_append(tmp_path):
    """A writer appending big rows as fast as it can is SIGKILLed; whatever it left, the
    reader returns whole rows with consecutive steps and an appender goes on after them."""
    path = tmp_path / "metrics.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < 200_000):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    rows = read_jsonl(path, warn=None).rows
    assert len(rows) >= 20
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    with JsonlAppender(path, warn=None) as out:
        out.write([{"step": len(rows) + 1}])
    again = read_jsonl(path, warn=None)
    assert again.torn_line is None
    assert [r["step"] for r in again.rows] == list(range(1, len(rows) + 2))


def test_repair_text_replaces_lone_surrogates_and_joins_pairs():
    from nemo_coreward.io import decode_utf8, repair_text

    assert repair_text("x = 1\udbf9") == ("x = 1\ufffd", True)
    assert repair_text("ok \ud83d\ude00")[0] == "ok \U0001F600"  # a pair split in a str
    assert repair_text("plain \u00e9") == ("plain \u00e9", False)
    assert decode_utf8(b"caf\xe9") == ("caf\ufffd", True)
