"""Benchmark loading: offline sets, hub sets from local files in their hub format."""
from __future__ import annotations

import json

import pytest

from nemo_coreward.data.sources import SourceError
from nemo_coreward.data.synthetic import generate
from nemo_coreward.eval.benchmarks import BENCHMARKS, get_benchmark, level_of, pair_of
from nemo_coreward.eval.runner import EvalConfig, evaluate


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_offline_benchmarks_load_without_files():
    synthetic = get_benchmark("synthetic").load(limit=8)
    assert len(synthetic) == 8 and all(r.meta["split"] == "heldout" for r in synthetic)
    assert level_of(synthetic[0]) == "1"
    # Every side of a held-out pair is an item: question, then its twin, same answer.
    pairs = generate(4, split="heldout", seed=0)
    assert [r.id for r in synthetic] == [f"{p.id}/s{s}" for p in pairs for s in (0, 1)]
    assert [r.question for r in synthetic[:2]] == [pairs[0].question, pairs[0].rephrasings[0]]
    assert synthetic[1].answer == pairs[0].answer and synthetic[1].meta["side"] == 1
    assert {pair_of(r.id) for r in synthetic} == {p.id for p in pairs}
    assert pair_of("gsm8k-test-00001") == "gsm8k-test-00001"
    champ = get_benchmark("champ").load()
    assert len(champ) == 270 and all(r.answer for r in champ)
    with pytest.raises(SourceError, match="offline"):
        get_benchmark("champ").load(data_files="x.jsonl")


def test_math500_from_local_file_with_levels(tmp_path):
    rows = [{"problem": f"What is {i}+{i}?", "solution": "...", "answer": str(2 * i),
             "subject": "Algebra", "level": 1 + i % 2, "unique_id": f"test/algebra/{i}.json"}
            for i in range(4)]
    records = get_benchmark("math500").load(write_jsonl(tmp_path / "m.jsonl", rows))
    assert [r.answer for r in records] == ["0", "2", "4", "6"]
    assert [level_of(r) for r in records] == ["1", "2", "1", "2"]


class Doubler:
    """Answers "What is i+i?" correctly only for even i."""

    def generate(self, questions, n, temperature, max_new_tokens):
        out = []
        for q in questions:
            i = int(q.split()[2].split("+")[0])
            out.append([f"\\boxed{{{2 * i if i % 2 == 0 else -1}}}"] * n)
        return out


def test_per_level_breakdown_in_results(tmp_path):
    rows = [{"problem": f"What is {i}+{i}?", "answer": str(2 * i), "level": f"Level {1 + i // 2}",
             "unique_id": f"u{i}"} for i in range(4)]
    files = {"math500": write_jsonl(tmp_path / "m.jsonl", rows)}
    cfg = EvalConfig(benchmarks=("math500",), k=2, equivalence="exact")
    out = evaluate(Doubler(), cfg, tmp_path / "out", model="d", data_files=files,
                   progress=False)
    levels = out["benchmarks"]["math500"]["levels"]
    # Level 1 holds i = 0, 1 (one right); level 2 holds i = 2, 3 (one right).
    assert list(levels) == ["1", "2"]
    assert levels["1"]["pass@1_greedy"] == 0.5 and levels["2"]["avg@2"] == 0.5
    assert "## math500 by level" in (tmp_path / "out" / "results.md").read_text()


def test_gsm8k_answers_after_hashes(tmp_path):
    rows = [{"question": "Q1", "answer": "work\n#### 1,234"},
            {"question": "Q2", "answer": "#### 7"}]
    records = get_benchmark("gsm8k").load(write_jsonl(tmp_path / "g.jsonl", rows))
    assert [r.answer for r in records] == ["1234", "7"]


def test_aime24_keeps_2024_rows_only(tmp_path):
    rows = [
        {"id": 1, "problem": "P1", "answer": "1", "url": "https://x/2023_AIME_I_Problems/1"},
        {"id": 2, "problem": "P2", "answer": "2", "url": "https://x/2024_AIME_I_Problems/2"},
        {"id": 3, "problem": "P3", "answer": "3", "year": 2024},
    ]
    records = get_benchmark("aime24").load(write_jsonl(tmp_path / "a.jsonl", rows))
    assert [r.question for r in records] == ["P2", "P3"]
    plain = [{"problem": "P", "answer": "5"}]  # no year or url: the file is taken whole
    assert len(get_benchmark("aime24").load(write_jsonl(tmp_path / "b.jsonl", plain))) == 1


def test_amc23_limit_and_unknown_name(tmp_path):
    rows = [{"problem": f"P{i}", "answer": str(i)} for i in range(5)]
    assert len(get_benchmark("amc23").load(write_jsonl(tmp_path / "c.jsonl", rows), limit=3)) == 3
    with pytest.raises(ValueError, match="valid: " + ", ".join(BENCHMARKS)):
        get_benchmark("math")
