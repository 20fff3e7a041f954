"""Each source on a few rows written in that source's real format (no hub access here)."""
from __future__ import annotations

import json
import random
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nemo_coreward.data import prepare_cli
from nemo_coreward.data.records import PairRecord, load_records, write_records
from nemo_coreward.data.sources import SOURCES, SourceError, load_source


@pytest.fixture
def cache(tmp_path):
    return str(tmp_path / "hf-cache")


def _parquet(path, columns: dict):
    pq.write_table(pa.table(columns), path)
    return str(path)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_math_lighteval_parquet(tmp_path, cache):
    files = _parquet(tmp_path / "train-00000.parquet", {
        "problem": ["Compute $\\frac{1}{2}+\\frac{1}{2}$.", "Find $x$ if $2x=3$.", "No box."],
        "level": ["Level 1", "Level 2", "Level 3"],
        "solution": ["We add: $\\boxed{1}$.",
                     "First $\\boxed{2}$ is wrong; $x=\\boxed{\\frac{3}{2}}$.", "No answer here."],
        "type": ["Algebra", "Prealgebra", "Geometry"],
    })
    recs = load_source("math", split="train", data_files=[files], cache_dir=cache)
    assert [r.answer for r in recs] == ["1", "\\frac{3}{2}", None]
    assert recs[1].meta == {"level": "Level 2", "type": "Prealgebra", "split": "train"}
    assert [r.id for r in recs] == ["math-train-00000", "math-train-00001", "math-train-00002"]
    assert all(r.source == "math" and r.rephrasings == () for r in recs)


def test_math_original_release_folder(tmp_path):
    for subject, n, answer in [("algebra", 10, "5"), ("algebra", 2, "-1"), ("geometry", 1, "\\pi")]:
        folder = tmp_path / "MATH" / "test" / subject
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n}.json").write_text(json.dumps({
            "problem": f"Problem {subject} {n}", "level": "Level 4", "type": subject.title(),
            "solution": f"So the answer is $\\boxed{{{answer}}}$."}))
    recs = load_source("math", split="test", data_files=[str(tmp_path / "MATH")])
    assert [r.id for r in recs] == ["math-test-algebra-2", "math-test-algebra-10",
                                    "math-test-geometry-1"]
    assert [r.answer for r in recs] == ["-1", "5", "\\pi"]
    broken = tmp_path / "MATH" / "test" / "geometry" / "2.json"
    broken.write_text('{"problem": "cut off')
    with pytest.raises(SourceError, match=rf"^{broken}: not a MATH problem file"):
        load_source("math", split="test", data_files=[str(tmp_path / "MATH")])


def test_math500_jsonl(tmp_path, cache):
    files = _jsonl(tmp_path / "test.jsonl", [
        {"problem": "Convert $(0,3)$ to polar.", "solution": "... $\\boxed{(3,\\frac{\\pi}{2})}$",
         "answer": "\\left( 3, \\frac{\\pi}{2} \\right)", "subject": "Precalculus", "level": 2,
         "unique_id": "test/precalculus/807.json"},
    ])
    [rec] = load_source("math500", data_files=files, cache_dir=cache)
    assert rec.id == "math500-test/precalculus/807.json"
    assert rec.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert rec.meta == {"level": 2, "subject": "Precalculus", "split": "test"}


def test_gsm8k_answer_after_hashes(tmp_path, cache):
    files = _parquet(tmp_path / "test-00000-of-00001.parquet", {
        "question": ["Janet sells 16 eggs at $2. How much?", "A farm has 1,200 cows..."],
        "answer": ["16 * 2 = <<16*2=32>>32\n#### 32", "1,200 + 34 = 1,234\n#### 1,234"],
    })
    recs = load_source("gsm8k", split="test", data_files=files, cache_dir=cache)
    assert [r.answer for r in recs] == ["32", "1234"]
    assert recs[0].id == "gsm8k-test-00000"
    bad = _parquet(tmp_path / "bad.parquet", {"question": ["q"], "answer": ["no final line"]})
    with pytest.raises(SourceError, match="gsm8k row 1: answer has no final '#### <number>'"):
        load_source("gsm8k", data_files=bad, cache_dir=cache)


def test_amc_float_answers(tmp_path, cache):
    files = _parquet(tmp_path / "amc.parquet", {
        "id": pa.array([0, 1], pa.int64()),
        "problem": ["Find the sum ...", "What is the ratio ..."],
        "answer": pa.array([142.0, 2.5], pa.float64()),
        "url": ["https://example.org/amc/1", "https://example.org/amc/2"],
    })
    recs = load_source("amc", data_files=files, cache_dir=cache)
    assert [(r.id, r.answer) for r in recs] == [("amc-0", "142"), ("amc-1", "2.5")]
    assert recs[0].meta["url"] == "https://example.org/amc/1"


def test_aime_capitalised_columns_and_overrides(tmp_path, cache):
    files = _jsonl(tmp_path / "aime.jsonl", [
        {"ID": "2024-I-1", "Problem": "Every morning Aya walks 9 km ...", "Solution": "...",
         "Answer": 204},
    ])
    [rec] = load_source("aime", data_files=files, cache_dir=cache)
    assert (rec.id, rec.answer, rec.source) == ("aime-2024-I-1", "204", "aime")
    odd = _jsonl(tmp_path / "odd.jsonl", [{"statement": "S", "final": "3"}])
    [rec] = load_source("aime", data_files=odd, cache_dir=cache,
                        question_column="statement", answer_column="final")
    assert (rec.question, rec.answer) == ("S", "3")
    with pytest.raises(SourceError, match=r"none of the columns .*'problem'.* found; the rows "
                                          r"have \['final', 'statement'\]"):
        load_source("aime", data_files=odd, cache_dir=cache)


def _messages(question):
    system = "Let's think step by step and output the final answer within \\boxed{}."
    return [{"content": system, "role": "system"}, {"content": question, "role": "user"}]


def test_coreward_pairs_parquet(tmp_path, cache):
    originals = ["Let $f(x)=ax+3$ ... Find $a+b$.", "How many vertical asymptotes ...?"]
    rephrased = ["A delivery company charges $g(w)=aw+3$ ... Determine $a + b$.",
                 "A designer studies a curve ... how many vertical lines ...?"]
    files = _parquet(tmp_path / "train_pairs.parquet", {
        "idx": pa.array([0, 1], pa.int64()),
        "original_question": originals,
        "rephrased_question": rephrased,
        "solution": ["0", "2"],
        "level": ["Level 5", "Level 3"],
        "type": ["Algebra", "Algebra"],
        "original_message": [_messages(q) for q in originals],
        "rephrased_message": [_messages(q) for q in rephrased],
    })
    for name in ("coreward-math", "corewarding-math"):
        recs = load_source(name, data_files=files, cache_dir=cache)
        assert recs[0] == PairRecord(f"{name}-0", originals[0], (rephrased[0],), "0", name,
                                     {"level": "Level 5", "type": "Algebra", "split": "train"})
        assert recs[1].rephrasings == (rephrased[1],) and recs[1].answer == "2"


def test_corewarding_dapo_and_openrs_shapes(tmp_path, cache):
    messages_only = _parquet(tmp_path / "dapo.parquet", {
        "idx": pa.array([7], pa.int64()),
        "solution": ["34"],
        "original_message": [_messages("In triangle $ABC$ ...")],
        "rephrased_message": [_messages("In triangle $PQR$ ...")],
    })
    [rec] = load_source("corewarding-dapo", data_files=messages_only, cache_dir=cache)
    assert (rec.id, rec.question, rec.rephrasings, rec.answer) == (
        "corewarding-dapo-7", "In triangle $ABC$ ...", ("In triangle $PQR$ ...",), "34")
    log = _jsonl(tmp_path / "train_rewrite_Qwen3-32B.jsonl",
                 [{"original": "Define $m(n)$ ...", "rewritten": "Let $m(n)$ represent ..."}])
    [rec] = load_source("corewarding-openrs", data_files=log, cache_dir=cache)
    assert (rec.rephrasings, rec.answer) == (("Let $m(n)$ represent ...",), None)
    wrong = _jsonl(tmp_path / "w.jsonl", [{"prompt": "x"}])
    with pytest.raises(SourceError, match="not a rephrased-pair row"):
        load_source("corewarding-openrs", data_files=wrong, cache_dir=cache)


def test_champ_from_the_package():
    pytest.importorskip("champ_dataset")
    recs = load_source("champ")
    assert len(recs) == 270 and len({r.id for r in recs}) == 270
    first = next(r for r in recs if r.id == "champ-P_Combinatorics_1")
    assert first.answer == "239" and first.meta["category"] == "Combinatorics"
    assert sum(r.answer is not None for r in recs) == 270


def test_mathematics_dataset_generator_is_real_and_reproducible():
    pytest.importorskip("mathematics_dataset")
    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    recs = load_source("mathematics", n=25, modules=["arithmetic__mul"], seed=4)
    assert (random.random(), np.random.random()) == before  # global RNGs left as found
    assert recs == load_source("mathematics", n=25, modules=["arithmetic__mul"], seed=4)
    assert recs != load_source("mathematics", n=25, modules=["arithmetic__mul"], seed=5)
    for rec in recs:  # the generator's products are right: check them ourselves
        a, b = (Decimal(x) for x in __import__("re").findall(r"-?\d+(?:\.\d+)?", rec.question))
        assert Decimal(rec.answer) == a * b, rec.question
    with pytest.raises(SourceError, match="unknown mathematics_dataset module 'arithmetic__pow'"):
        load_source("mathematics", n=1, modules=["arithmetic__pow"])


def test_synthetic_and_local_through_the_registry(tmp_path):
    recs = load_source("synthetic", n=6, k=2, seed=1, families=["add"])
    assert len(recs) == 6 and all(len(r.rephrasings) == 2 for r in recs)
    path = write_records(recs, tmp_path / "syn.parquet")
    assert load_source("local", data_files=[str(path)], limit=4) == recs[:4]


def test_registry_errors_list_the_valid_choices():
    with pytest.raises(SourceError, match="unknown source 'mathh'; valid sources: math, math500"):
        load_source("mathh")
    with pytest.raises(SourceError, match="source 'gsm8k' does not take option 'families'"):
        load_source("gsm8k", families=["add"])
    with pytest.raises(SourceError, match="source 'local' needs data_files"):
        load_source("local")
    assert {"math", "math500", "gsm8k", "amc", "aime", "coreward-math", "corewarding-math",
            "corewarding-dapo", "corewarding-openrs", "champ", "mathematics", "synthetic",
            "local"} <= set(SOURCES)


def test_prepare_cli(tmp_path, capsys):
    files = _parquet(tmp_path / "g.parquet", {"question": ["q1", "q2", "q3"],
                                              "answer": ["#### 1", "#### 2", "#### 3"]})
    out = tmp_path / "out.jsonl"
    code = prepare_cli.main(["gsm8k", "--split", "test", "--data-files", files, "--limit", "2",
                             "--cache-dir", str(tmp_path / "c"), "--out", str(out)])
    assert code == 0
    assert [r.answer for r in load_records(out)] == ["1", "2"]
    assert "wrote 2 records from gsm8k" in capsys.readouterr().out
    assert prepare_cli.main(["gsmk8", "--out", str(out)]) == 2
    assert "valid sources:" in capsys.readouterr().err
    assert prepare_cli.main(["--list"]) == 0
    assert "coreward-math" in capsys.readouterr().out
