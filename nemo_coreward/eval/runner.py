"""Run a model over benchmarks, grade every response, and summarise: ``coreward eval``.

Output directory layout:

- ``settings.json``: what was evaluated and how (model, sampling, prompt, grader). A rerun
  into the same directory must use the same settings (``limit`` and the benchmark list may
  change), otherwise the mixed results would mean nothing; it is refused naming the key.
- ``items.jsonl``: one line per graded problem (responses, extracted answers, grades),
  appended, flushed and fsynced after every chunk of ``batch_size`` problems
  (``nemo_coreward.io.jsonl``). A rerun skips the problems already there (a torn last line
  from a killed run is cut off first), so an interrupted evaluation continues where it
  stopped.
- ``results.json`` and ``results.md``: the metrics per benchmark and per level, rebuilt
  from ``items.jsonl`` at the end of every run.

Sampled responses depend on the random state, which is seeded once per run: a resumed
evaluation draws different (equally distributed) samples for the remaining problems than
an uninterrupted one would.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nemo_coreward.answers import FALLBACKS, MODES, Grader, extract_answer
from nemo_coreward.data import PairRecord
from nemo_coreward.embedded.prompts import PromptConfig
from nemo_coreward.errors import UserError
from nemo_coreward.eval.backends import GenerationBackend
from nemo_coreward.eval.benchmarks import BENCHMARKS, get_benchmark, level_of
from nemo_coreward.eval.metrics import ItemScores, aggregate, breakdown, is_correct, maj_at_k
from nemo_coreward.io.atomic import atomic_write
from nemo_coreward.io.jsonl import JsonlAppender, JsonlRows, read_jsonl
from nemo_coreward.llm.prompts import PAPER_SYSTEM

ITEMS = "items.jsonl"
SETTINGS = "settings.json"
DEFAULT_HEADLINE = ("pass@1_greedy", "avg@{k}", "pass@1")


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate. ``k`` samples per problem at ``temperature`` (0 = no sampling) and,
    with ``greedy``, one greedy response; ``k_per_benchmark`` and ``headline`` override
    per benchmark (``headline``: the metric a summary table shows first)."""

    benchmarks: tuple[str, ...] = ("synthetic",)
    k: int = 8
    temperature: float = 0.8
    greedy: bool = True
    max_new_tokens: int = 1024
    prompt: PromptConfig = field(default_factory=PromptConfig)
    equivalence: str = "math_verify"
    fallbacks: tuple[str, ...] = ()
    timeout_s: float = 2.0
    batch_size: int = 8
    k_per_benchmark: Mapping[str, int] = field(default_factory=dict)
    headline: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "benchmarks", tuple(self.benchmarks))
        object.__setattr__(self, "fallbacks", tuple(self.fallbacks))
        object.__setattr__(self, "k_per_benchmark", dict(self.k_per_benchmark))
        object.__setattr__(self, "headline", dict(self.headline))
        if not self.benchmarks:
            raise ValueError("benchmarks: name at least one benchmark")
        for name in (*self.benchmarks, *self.k_per_benchmark, *self.headline):
            get_benchmark(name)
        for name, k in {"k": self.k, **self.k_per_benchmark}.items():
            if not isinstance(k, int) or k < 0:
                raise ValueError(f"k for {name!r} must be an integer >= 0, got {k!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if any(self.k_for(b) > 0 for b in self.benchmarks) and self.temperature == 0:
            raise ValueError("sampling k > 0 responses needs temperature > 0 (use --k 0 and "
                             "--greedy for greedy decoding only)")
        if not self.greedy and not any(self.k_for(b) for b in self.benchmarks):
            raise ValueError("nothing to do: greedy is off and k is 0")
        if self.equivalence not in MODES:
            raise ValueError(f"equivalence: {self.equivalence!r} is not one of {MODES}")
        bad = [f for f in self.fallbacks if f not in FALLBACKS]
        if bad:
            raise ValueError(f"fallbacks: unknown {bad[0]!r}; valid: {', '.join(FALLBACKS)}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")

    def k_for(self, benchmark: str) -> int:
        return self.k_per_benchmark.get(benchmark, self.k)

    def headline_for(self, benchmark: str) -> tuple[str, ...]:
        if benchmark in self.headline:
            return (self.headline[benchmark],)
        return tuple(h.format(k=self.k_for(benchmark)) for h in DEFAULT_HEADLINE)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that must match for results to be resumed into one directory."""
        return {
            "k": {b: self.k_for(b) for b in BENCHMARKS},
            "temperature": self.temperature,
            "greedy": self.greedy,
            "max_new_tokens": self.max_new_tokens,
            "prompt": asdict(self.prompt),
            "equivalence": self.equivalence,
            "fallbacks": list(self.fallbacks),
        }


# The paper's protocol (Co-Reward, Table 1): MATH500 and GSM8K pass@1, AMC avg@8, all at
# temperature 0.8, with the training system prompt. Its evaluation code was never released;
# we read pass@1 as one sample at temperature 0.8 per problem (see docs/evaluation.md).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "benchmarks": ("math500", "gsm8k", "amc23"),
        "temperature": 0.8,
        "greedy": False,
        "k": 1,
        "k_per_benchmark": {"math500": 1, "gsm8k": 1, "amc23": 8},
        "headline": {"math500": "pass@1", "gsm8k": "pass@1", "amc23": "avg@8"},
        "max_new_tokens": 3072,
        "prompt": PromptConfig(system=PAPER_SYSTEM),
    },
}


class EvalError(UserError, RuntimeError):
    """A problem with the output directory or the evaluation's inputs."""


def _grade(text: str, gold: str | None, cfg: EvalConfig, grader: Grader) -> dict[str, Any]:
    answer = extract_answer(text, cfg.fallbacks)
    return {"response": text, "answer": answer, "correct": is_correct(answer, gold, grader)}


def grade_item(rec: PairRecord, benchmark: str, greedy: str | None, samples: Sequence[str],
               cfg: EvalConfig, grader: Grader) -> dict[str, Any]:
    """One ``items.jsonl`` row: graded greedy response and samples, and maj@k."""
    graded = [_grade(t, rec.answer, cfg, grader) for t in samples]
    majority = (maj_at_k([g["answer"] for g in graded], [g["correct"] for g in graded], grader)
                if graded else None)
    return {
        "benchmark": benchmark,
        "id": rec.id,
        "gold": rec.answer,
        "level": level_of(rec),
        "greedy": None if greedy is None else _grade(greedy, rec.answer, cfg, grader),
        "samples": graded,
        "majority": majority,
    }


def item_scores(row: Mapping[str, Any]) -> ItemScores:
    greedy = row.get("greedy")
    return ItemScores(
        greedy=None if greedy is None else bool(greedy["correct"]),
        samples=tuple(bool(s["correct"]) for s in row.get("samples") or ()),
        majority=row.get("majority"),
        level=row.get("level"),
    )


def read_items(source: str | os.PathLike | JsonlRows) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows of ``items.jsonl`` (a path, or the rows its appender read) by (benchmark, id);
    a torn last line is skipped."""
    found = source if isinstance(source, JsonlRows) else read_jsonl(source)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for row, lineno in zip(found.rows, found.lines):
        if "benchmark" not in row or "id" not in row:
            raise EvalError(f"{found.path}:{lineno}: no 'benchmark' or 'id' key; not an eval "
                            "file (use another --out)")
        rows[(row["benchmark"], row["id"])] = row
    return rows


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Write ``settings.json``, or refuse when the directory holds a different evaluation."""
    path = out / SETTINGS
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EvalError(f"{path}: not valid JSON ({exc}); remove it or use another "
                            "--out") from None
        for key in sorted(set(old) | set(settings)):
            if old.get(key) != settings.get(key):
                raise EvalError(
                    f"{out} holds results of a different evaluation: {key!r} was "
                    f"{old.get(key)!r}, now {settings.get(key)!r}; use another --out"
                )
        return
    atomic_write(path, json.dumps(settings, indent=2) + "\n")


def _chunks(items: Sequence[PairRecord], size: int) -> Iterator[Sequence[PairRecord]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def summarise(rows: Sequence[Mapping[str, Any]], benchmark: str, cfg: EvalConfig) -> dict:
    scores = [item_scores(r) for r in rows]
    metrics = aggregate(scores)
    head = next(((k, metrics[k]) for k in cfg.headline_for(benchmark) if k in metrics), None)
    return {"metrics": metrics, "levels": breakdown(scores),
            "headline": None if head is None else {"metric": head[0], "value": head[1]}}


def load_benchmarks(cfg: EvalConfig, data_files: Mapping[str, Any] | None = None,
                    limit: int | None = None) -> dict[str, list[PairRecord]]:
    """The problems of every benchmark of ``cfg``, read before any model is loaded so that
    missing data (no hub access, a wrong path) is reported at once."""
    data_files = dict(data_files or {})
    unknown = sorted(set(data_files) - set(cfg.benchmarks))
    if unknown:
        raise EvalError(f"data files given for {unknown[0]!r}, which is not being evaluated")
    return {name: get_benchmark(name).load(data_files.get(name), limit)
            for name in cfg.benchmarks}


def evaluate(
    backend: GenerationBackend,
    cfg: EvalConfig,
    out_dir: str | os.PathLike,
    *,
    model: str,
    data_files: Mapping[str, Any] | None = None,
    limit: int | None = None,
    progress: bool = True,
    benchmarks: Mapping[str, list[PairRecord]] | None = None,
) -> dict[str, Any]:
    """Evaluate ``backend`` on ``cfg.benchmarks``; returns (and writes) the results.
    ``benchmarks``: the problems already read by ``load_benchmarks`` (otherwise read here
    from ``data_files`` and ``limit``)."""
    from tqdm import tqdm

    from nemo_coreward.eval.tables import results_markdown

    started = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if benchmarks is None:
        benchmarks = load_benchmarks(cfg, data_files, limit)
    check_settings(out, {"model": model, **cfg.fingerprint()})
    items = JsonlAppender(out / ITEMS)  # cuts a torn last line off first
    done = read_items(items.existing)
    grader = Grader(cfg.equivalence, cfg.timeout_s)
    results: dict[str, Any] = {}
    try:
        with items:
            for name in cfg.benchmarks:
                records = benchmarks[name]
                todo = [r for r in records if (name, r.id) not in done]
                k = cfg.k_for(name)
                bar = tqdm(total=len(records), initial=len(records) - len(todo), desc=name,
                           unit="problem", disable=not progress, dynamic_ncols=True)
                for chunk in _chunks(todo, cfg.batch_size):
                    questions = [r.question for r in chunk]
                    greedy = ([g[0] for g in backend.generate(questions, 1, 0.0,
                                                              cfg.max_new_tokens)]
                              if cfg.greedy else [None] * len(chunk))
                    samples = (backend.generate(questions, k, cfg.temperature, cfg.max_new_tokens)
                               if k else [[] for _ in chunk])
                    rows = [grade_item(rec, name, g, s, cfg, grader)
                            for rec, g, s in zip(chunk, greedy, samples)]
                    items.write(rows)
                    done.update(((name, row["id"]), row) for row in rows)
                    bar.update(len(chunk))
                bar.close()
                results[name] = summarise([done[(name, r.id)] for r in records], name, cfg)
    finally:
        items.close()
        grader.close()
    summary = {"model": model, "settings": {"model": model, **cfg.fingerprint()},
               "benchmarks": results, "elapsed_s": time.monotonic() - started}
    atomic_write(out / "results.json", json.dumps(summary, indent=2) + "\n")
    atomic_write(out / "results.md", results_markdown(summary))
    return summary
