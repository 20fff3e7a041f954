"""A server answering with text that is not valid Unicode (a lone surrogate escaped in its
JSON) must not lose an evaluation at the write: the text is repaired to U+FFFD."""
from __future__ import annotations

import json

from nemo_coreward.eval.benchmarks import get_benchmark
from nemo_coreward.eval.cli import main as eval_main
from nemo_coreward.io import read_jsonl

GOLD = {r.question: r.answer for r in get_benchmark("synthetic").load(limit=3)}


def test_lone_surrogate_in_a_response_is_repaired_and_everything_written(tmp_path,
                                                                         chat_server):
    server = chat_server(lambda q, t, i: f"\\boxed{{{GOLD[q]}}} \udbf9")
    out = tmp_path / "out"
    code = eval_main(["m", "--base-url", server.base_url, "--benchmarks", "synthetic",
                      "--limit", "3", "--k", "2", "--out", str(out), "--no-progress",
                      "--equivalence", "exact"])
    assert code == 0
    items = read_jsonl(out / "items.jsonl").rows
    assert len(items) == 3
    assert all(s["response"].endswith(" \ufffd") for row in items for s in row["samples"])
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["synthetic"]["metrics"]["pass@1_greedy"] == 1.0
