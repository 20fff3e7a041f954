"""Text that is not valid Unicode in record files: repaired (U+FFFD) and counted, never a
crash after the work is done, for ``coreward prepare`` and ``coreward rephrase``."""
from __future__ import annotations

import json

from nemo_coreward.cli import main
from nemo_coreward.data.records import load_records

# A lone surrogate escaped in JSON (Python decodes it, but cannot encode it as UTF-8), and
# a byte that is not UTF-8 at all.
BAD = (b'{"id": "q0", "question": "What is 3 + 4? \\udbf9", "answer": "7"}\n'
       b'{"id": "q1", "question": "What is 2 + 5? caf\xe9", "answer": "7"}\n'
       b'{"id": "q2", "question": "What is 1 + 6?", "answer": "7"}\n')


def test_prepare_local_repairs_and_writes_jsonl_and_parquet(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(BAD)
    for name in ("out.jsonl", "out.parquet"):
        out = tmp_path / name
        assert main(["prepare", "local", "--data-files", str(src), "--out", str(out)]) == 0
        questions = [r.question for r in load_records(out)]
        assert questions == ["What is 3 + 4? \ufffd", "What is 2 + 5? caf\ufffd",
                             "What is 1 + 6?"]
    err = capsys.readouterr().err
    assert f"{src}: 2 line(s) held text that is not valid Unicode" in err


def test_rephrase_repairs_counts_and_writes_every_record(tmp_path, llm_server, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(BAD)
    out = tmp_path / "out.jsonl"
    code = main(["rephrase", str(src), "--out", str(out), "--base-url", llm_server.url,
                 "--model", "scripted", "--no-progress", "--retries", "0"])
    assert code == 0, capsys.readouterr().err
    assert "3 records written" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in rows) == ["q0", "q1", "q2"]
    summary = json.loads((tmp_path / "out.jsonl.summary.json").read_text())
    assert summary["repaired"] == 2


def test_parquet_writer_repairs_text_a_hub_set_may_hold(tmp_path):
    from nemo_coreward.data.records import PairRecord, write_records

    out = write_records([PairRecord("a", "What is 3 + 4? \udbf9", answer="7")],
                        tmp_path / "o.parquet")
    assert load_records(out)[0].question == "What is 3 + 4? \ufffd"
