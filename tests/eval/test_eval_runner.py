"""``coreward eval`` end to end: a tiny local model, scripted HTTP answers, resume."""
from __future__ import annotations

import json

import pytest

from nemo_coreward.eval.backends import LocalHFBackend
from nemo_coreward.eval.benchmarks import get_benchmark
from nemo_coreward.eval.cli import _config, _parser
from nemo_coreward.eval.cli import main as eval_main
from nemo_coreward.eval.runner import EvalConfig, EvalError, evaluate, read_items

RECORDS = get_benchmark("synthetic").load(limit=4)
GOLD = {r.question: r.answer for r in RECORDS}
INDEX = {r.question: i for i, r in enumerate(RECORDS)}


class Counting:
    """Wraps a backend and records every question it is asked (and can fail on cue)."""

    def __init__(self, inner, fail_after_calls: int | None = None) -> None:
        self.inner, self.fail_after_calls = inner, fail_after_calls
        self.asked: list[str] = []
        self.calls = 0

    def generate(self, questions, n, temperature, max_new_tokens):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt  # what a user's Ctrl-C looks like mid-run
        self.calls += 1
        self.asked += list(questions)
        return self.inner.generate(questions, n, temperature, max_new_tokens)


class Scripted:
    """Item i (in benchmark order): greedy right for i < 2; of 4 samples the first i are
    right and the rest share one wrong answer."""

    def generate(self, questions, n, temperature, max_new_tokens):
        out = []
        for q in questions:
            i, gold = INDEX[q], GOLD[q]
            if temperature == 0:
                out.append([f"so \\boxed{{{gold if i < 2 else 'x'}}}"])
            else:
                out.append([f"\\boxed{{{gold}}}" if j < i else "\\boxed{-1}" for j in range(n)])
        return out


def test_metrics_of_scripted_answers(tmp_path):
    cfg = EvalConfig(benchmarks=("synthetic",), k=4, equivalence="normalized")
    summary = evaluate(Scripted(), cfg, tmp_path, model="scripted", limit=4, progress=False)
    m = summary["benchmarks"]["synthetic"]["metrics"]
    assert m["n"] == 4
    assert m["pass@1_greedy"] == 0.5
    assert m["avg@4"] == pytest.approx((0 + 1 + 2 + 3) / 16)
    # maj@4: 0 right -> wrong; 1 vs 3 -> wrong; 2 vs 2 tie, the right one came first ->
    # right; 3 vs 1 -> right.
    assert m["maj@4"] == 0.5
    # pass@2 per item: 0, 1 - C(3,2)/C(4,2) = 1/2, 1 - C(2,2)/C(4,2) = 5/6, 1.
    assert m["pass@2"] == pytest.approx((0 + 0.5 + 5 / 6 + 1) / 4)
    assert m["pass@4"] == 0.75
    assert summary["benchmarks"]["synthetic"]["headline"] == {"metric": "pass@1_greedy",
                                                               "value": 0.5}
    md = (tmp_path / "results.md").read_text()
    assert "| synthetic | 4 | pass@1_greedy | 50.0 |" in md
    assert "## synthetic by level" in md
    rows = read_items(tmp_path / "items.jsonl")
    assert len(rows) == 4
    first = rows[("synthetic", RECORDS[0].id)]
    assert first["gold"] == RECORDS[0].answer and first["greedy"]["correct"] is True
    assert [s["answer"] for s in first["samples"]] == ["-1"] * 4


def test_tiny_model_end_to_end_and_rerun_skips_done(tmp_path, tiny_model, tiny_tokenizer):
    backend = Counting(LocalHFBackend(tiny_model, tiny_tokenizer))
    cfg = EvalConfig(benchmarks=("synthetic",), k=2, max_new_tokens=8, batch_size=2,
                     equivalence="exact")
    summary = evaluate(backend, cfg, tmp_path / "a", model="tiny", limit=4, progress=False)
    m = summary["benchmarks"]["synthetic"]["metrics"]
    # The random model answers nothing: greedy decoding repeats one token (a newline) and
    # the samples are random words of its 49,152-token vocabulary, none a \boxed{} answer.
    assert m == {"n": 4, "pass@1_greedy": 0.0, "avg@2": 0.0, "maj@2": 0.0, "pass@1": 0.0,
                 "pass@2": 0.0}
    assert backend.calls == 4  # 2 chunks x (greedy + samples)
    rows = read_items(tmp_path / "a" / "items.jsonl")
    assert len(rows) == 4
    for row in rows.values():
        assert isinstance(row["greedy"]["response"], str) and len(row["samples"]) == 2
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["benchmarks"]["synthetic"]["metrics"] == m
    # A rerun finds every item done: no generation at all, same results.
    again = Counting(LocalHFBackend(tiny_model, tiny_tokenizer))
    summary2 = evaluate(again, cfg, tmp_path / "a", model="tiny", limit=4, progress=False)
    assert again.calls == 0
    assert summary2["benchmarks"]["synthetic"]["metrics"] == m
    # Greedy decoding is deterministic: a fresh directory gets the same greedy responses.
    evaluate(LocalHFBackend(tiny_model, tiny_tokenizer), cfg, tmp_path / "b", model="tiny",
             limit=4, progress=False)
    rows_b = read_items(tmp_path / "b" / "items.jsonl")
    assert {k: r["greedy"]["response"] for k, r in rows.items()} == \
        {k: r["greedy"]["response"] for k, r in rows_b.items()}


def test_interrupted_run_resumes_where_it_stopped(tmp_path):
    cfg = EvalConfig(benchmarks=("synthetic",), k=4, batch_size=1, equivalence="exact")
    # Each item takes 2 calls (greedy, samples): stop during the third item.
    crashing = Counting(Scripted(), fail_after_calls=5)
    with pytest.raises(KeyboardInterrupt):
        evaluate(crashing, cfg, tmp_path, model="scripted", limit=4, progress=False)
    assert len(read_items(tmp_path / "items.jsonl")) == 2
    assert not (tmp_path / "results.json").exists()
    # A kill in the middle of a write leaves a torn line: it is dropped, that item redone.
    with (tmp_path / "items.jsonl").open("a") as fh:
        fh.write('{"benchmark": "synthetic", "id": "' + RECORDS[2].id + '", "gre')
    resumed = Counting(Scripted())
    summary = evaluate(resumed, cfg, tmp_path, model="scripted", limit=4, progress=False)
    assert resumed.asked == [RECORDS[2].question] * 2 + [RECORDS[3].question] * 2
    assert summary["benchmarks"]["synthetic"]["metrics"]["n"] == 4
    assert summary["benchmarks"]["synthetic"]["metrics"]["maj@4"] == 0.5


def test_different_settings_are_refused(tmp_path):
    evaluate(Scripted(), EvalConfig(k=4), tmp_path, model="scripted", limit=2, progress=False)
    with pytest.raises(EvalError, match="'temperature' was 0.8, now 0.6"):
        evaluate(Scripted(), EvalConfig(k=4, temperature=0.6), tmp_path, model="scripted",
                 limit=2, progress=False)
    with pytest.raises(EvalError, match="'model'"):
        evaluate(Scripted(), EvalConfig(k=4), tmp_path, model="other", limit=2, progress=False)
    # A larger limit is allowed: it only adds items.
    out = evaluate(Scripted(), EvalConfig(k=4), tmp_path, model="scripted", limit=4,
                   progress=False)
    assert out["benchmarks"]["synthetic"]["metrics"]["n"] == 4


@pytest.mark.parametrize("kwargs,match", [
    ({"benchmarks": ("nope",)}, "unknown benchmark"),
    ({"k": 4, "temperature": 0.0}, "temperature > 0"),
    ({"k": 0, "greedy": False}, "nothing to do"),
    ({"equivalence": "fuzzy"}, "equivalence"),
    ({"fallbacks": ("guess",)}, "fallbacks"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EvalConfig(**kwargs)


def test_cli_against_http_server(tmp_path, chat_server, capsys):
    server = chat_server(lambda q, t, i: f"\\boxed{{{GOLD[q] if i % 2 == 0 else 'x'}}}")
    out = tmp_path / "out"
    code = eval_main(["served-model", "--base-url", server.base_url, "--benchmarks",
                      "synthetic", "--limit", "4", "--k", "4", "--out", str(out),
                      "--no-progress", "--equivalence", "exact"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    m = results["benchmarks"]["synthetic"]["metrics"]
    # Greedy is completion 0 (right); samples alternate right/wrong: avg 1/2, maj (tie,
    # right first) 1, pass@2 = 1 - C(2,2)/C(4,2) = 5/6.
    assert (m["pass@1_greedy"], m["avg@4"], m["maj@4"]) == (1.0, 0.5, 1.0)
    assert m["pass@2"] == pytest.approx(5 / 6)
    assert "| synthetic | 4 | pass@1_greedy | 100.0 |" in capsys.readouterr().out
    assert eval_main(["m", "--benchmarks", "nope", "--out", str(tmp_path / "x")]) == 2


def test_paper_preset():
    cfg = _config(_parser().parse_args(["m", "--preset", "paper"]))
    assert cfg.benchmarks == ("math500", "gsm8k", "amc23")
    assert cfg.temperature == 0.8 and cfg.greedy is False and cfg.max_new_tokens == 3072
    assert [cfg.k_for(b) for b in cfg.benchmarks] == [1, 1, 8]
    assert [cfg.headline_for(b) for b in cfg.benchmarks] == [("pass@1",), ("pass@1",),
                                                             ("avg@8",)]
    assert cfg.prompt.system.startswith("Let's think step by step")
    # Explicit flags override the preset; --k applies to every benchmark.
    cfg = _config(_parser().parse_args(["m", "--preset", "paper", "--k", "4",
                                        "--temperature", "0.6", "--benchmarks", "gsm8k"]))
    assert cfg.benchmarks == ("gsm8k",) and cfg.k_for("amc23") == 4 and cfg.temperature == 0.6
