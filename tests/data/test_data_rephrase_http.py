"""The rephrase pipeline against a real HTTP server on loopback (see conftest.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nemo_coreward.data import rephrase_cli
from nemo_coreward.data.records import PairRecord, load_records, write_records
from nemo_coreward.data.rephrase import backends, pipeline
from nemo_coreward.data.rephrase.validate import ValidationConfig

REPO = Path(__file__).resolve().parents[2]


def _config(k=1, concurrency=2, **validation):
    return pipeline.RephraseConfig(
        pipeline=pipeline.PipelineConfig(k=k, concurrency=concurrency, retries=2,
                                         backoff_s=0.01, progress=False),
        validation=ValidationConfig(**validation),
    )


def _backend(server, timeout_s=5.0):
    return backends.OpenAIChatBackend(server.url, "scripted", timeout_s=timeout_s)


def _records(*questions):
    return [PairRecord(f"q{i}", q, answer="7") for i, q in enumerate(questions)]


def _rejections(out):
    return [json.loads(line) for line in Path(f"{out}.rejected.jsonl").read_text().splitlines()]


def test_good_malformed_copy_and_missing_numbers(llm_server, tmp_path):
    records = _records("What is 3 + 4? GOOD", "What is 3 + 4? MALFORMED",
                       "What is 3 + 4? COPY", "What is 3 + 4? NONUM")
    out = tmp_path / "out.jsonl"
    summary = pipeline.run(records, out, _backend(llm_server), _config(k=2))
    [written] = load_records(out)
    assert written.id == "q0" and len(written.rephrasings) == 2
    assert all("3 and 4" in r for r in written.rephrasings)
    assert written.answer == "7" and written.question == records[0].question
    assert (summary.written, summary.failed) == (1, 3)
    # 3 candidates each (max_candidates = 3k = 6, requested 2 at a time)
    assert summary.rejected_by_rule == {"markers": 6, "copy": 6, "numbers": 6}
    rows = _rejections(out)
    by_id = {(r["id"], r["rule"]) for r in rows}
    assert {("q1", "markers"), ("q2", "copy"), ("q3", "numbers"), ("q1", "record")} <= by_id
    assert all(r["reason"] for r in rows)
    assert json.loads(Path(f"{out}.summary.json").read_text())["written"] == 1
    body = llm_server.requests[0]["body"]
    assert (body["model"], body["temperature"], body["top_p"]) == ("scripted", 0.7, 0.8)
    assert "different real-world scenario" in body["messages"][0]["content"]


def test_5xx_is_retried(llm_server, tmp_path):
    out = tmp_path / "out.jsonl"
    summary = pipeline.run(_records("What is 5 + 2? FLAKY"), out, _backend(llm_server), _config())
    assert summary.written == 1 and summary.requests == 1
    assert llm_server.calls["What is 5 + 2? FLAKY"] == 2  # 503, then the retry


def test_slow_response_times_out_then_retries(llm_server, tmp_path):
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    summary = pipeline.run(_records("What is 6 + 1? SLOW"), out,
                           _backend(llm_server, timeout_s=0.4), _config())
    assert summary.written == 1
    assert llm_server.calls["What is 6 + 1? SLOW"] == 2
    assert 0.4 <= time.monotonic() - started < 1.5  # gave up on the 1.5 s reply


def test_one_completion_per_request_and_api_key(llm_server, tmp_path):
    backend = backends.OpenAIChatBackend(llm_server.url, "scripted", api_key="sekrit", max_n=1)
    summary = pipeline.run(_records("What is 2 + 2? GOOD"), tmp_path / "o.jsonl", backend,
                           _config(k=2))
    assert (summary.written, summary.requests) == (1, 1)
    assert [r["body"]["n"] for r in llm_server.requests] == [1, 1]
    assert {r["auth"] for r in llm_server.requests} == {"Bearer sekrit"}
    [rec] = load_records(tmp_path / "o.jsonl")
    assert len(set(rec.rephrasings)) == 2


def test_output_must_be_jsonl(llm_server, tmp_path):
    with pytest.raises(pipeline.PipelineError, match="must be JSONL"):
        pipeline.run(_records("What is 1 + 1? GOOD"), tmp_path / "o.parquet",
                     _backend(llm_server), _config())


def test_refused_request_stops_the_run(llm_server, tmp_path):
    with pytest.raises(pipeline.PipelineError, match="HTTP 400"):
        pipeline.run(_records("What is 1 + 1? BADREQ"), tmp_path / "o.jsonl",
                     _backend(llm_server), _config())


def test_unreachable_server_fails_records_then_stops(tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    backend = backends.OpenAIChatBackend(f"http://127.0.0.1:{port}/v1", "m", timeout_s=1)
    with pytest.raises(pipeline.PipelineError, match="4 records in a row failed to reach"):
        pipeline.run(_records(*[f"What is {i} + 1?" for i in range(6)]), tmp_path / "o.jsonl",
                     backend, _config(concurrency=2))
    rows = _rejections(tmp_path / "o.jsonl")
    assert rows and all(r["rule"] == "record" and "cannot reach" in r["reason"] for r in rows)


def test_concurrency_is_bounded_and_used(llm_server, tmp_path):
    records = _records(*[f"What is {i} + 2? DELAY" for i in range(12)])
    summary = pipeline.run(records, tmp_path / "o.jsonl", _backend(llm_server),
                           _config(concurrency=3))
    assert summary.written == 12
    assert 2 <= llm_server.max_inflight <= 3


def test_answer_consistency_rejects_a_twin_with_another_answer(llm_server, tmp_path):
    records = _records("What is 3 + 4? GOOD", "What is 3 + 4? WRONG")
    summary = pipeline.run(records, tmp_path / "o.jsonl", _backend(llm_server),
                           _config(answer_consistency=True, consistency_samples=3))
    assert [r.id for r in load_records(tmp_path / "o.jsonl")] == ["q0"]
    assert summary.rejected_by_rule == {"answer": 3}
    reasons = {r["reason"] for r in _rejections(tmp_path / "o.jsonl") if r["rule"] == "answer"}
    assert reasons == {"majority answer '7' differs from the original's '8'"}
    solves = [r for r in llm_server.requests if r["body"]["messages"][0]["role"] == "system"]
    assert all(r["body"]["n"] == 3 for r in solves)


def test_rerun_skips_done_ids_and_repairs_a_torn_line(llm_server, tmp_path):
    records = _records(*[f"What is {i} + 3? GOOD" for i in range(4)])
    out = tmp_path / "o.jsonl"
    pipeline.run(records[:2], out, _backend(llm_server), _config())
    with out.open("a") as fh:
        fh.write('{"id": "q2", "question": "What is 2 +')  # a write cut by a kill
    before = len(llm_server.requests)
    summary = pipeline.run(records, out, _backend(llm_server), _config())
    assert (summary.already_done, summary.written) == (2, 2)
    assert len(llm_server.requests) - before == 2
    assert sorted(r.id for r in load_records(out)) == ["q0", "q1", "q2", "q3"]


def test_cli_kill_and_resume(llm_server, tmp_path):
    records = _records(*[f"What is {i} + 5? DELAY" for i in range(30)])
    src = write_records(records, tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "nemo_coreward.cli", "rephrase", str(src), "--out", str(out),
           "--backend", "openai", "--base-url", llm_server.url, "--model", "scripted",
           "--concurrency", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 6:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    partial = out.read_text().count("\n")
    assert 6 <= partial < 30
    written = {r.id for r in load_records(out)}  # a torn last line is not a record
    asked = dict(llm_server.calls)

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{30 - partial} records written, {partial} already done" in done.stdout
    ids = [r.id for r in load_records(out)]  # load_records also refuses duplicate ids
    assert sorted(ids) == sorted(r.id for r in records)
    # Records written before the kill are never asked for again; the rest are, once more.
    for rec in records:
        again = llm_server.calls[rec.question] - asked.get(rec.question, 0)
        assert again == (0 if rec.id in written else 1), rec.id


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"id": "a", "question": "q"}\n{"id": "a", "question": "r"}\n')
    code = rephrase_cli.main([str(bad), "--out", str(tmp_path / "o.jsonl"), "--model", "m",
                              "--base-url", "http://127.0.0.1:9/v1"])
    assert code == 2
    assert f"{bad}:2: duplicate id 'a'" in capsys.readouterr().err
