"""Rephrase a record file at scale: k validated twins per question, crash-safe.

For each input record not already in the output: ask the backend for candidates (the
rewrite prompt, up to ``max_candidates`` in all), keep those that pass every rule in
``validate`` until ``k`` are accepted, and append the record with its new rephrasings to
the output. At most ``concurrency`` records are worked on at once, each with one request
in flight, so at most ``concurrency`` requests reach the server together.

Crash safety: the output is appended through ``nemo_coreward.io.jsonl`` and each finished
record is written as one line, flushed and fsynced (after its rejected candidates), so a
killed job loses only the records in flight. A rerun reads the ids already written (cutting
off a torn last line), skips them and carries on; records
that failed (too few valid candidates, or the server unreachable after all retries) are not
written and are tried again on the next run. Every rejected candidate goes to the side file
(``OUT.rejected.jsonl``) with its rule and reason; a summary goes to ``OUT.summary.json``.
Output order is completion order, not input order.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nemo_coreward.data.records import PairRecord
from nemo_coreward.data.rephrase import validate as V
from nemo_coreward.data.rephrase.backends import (
    Backend,
    BackendError,
    RetryableError,
    SamplingConfig,
)
from nemo_coreward.data.rephrase.prompt import Template, solve_messages
from nemo_coreward.errors import UserError
from nemo_coreward.io.atomic import atomic_write
from nemo_coreward.io.jsonl import JsonlAppender, JsonlRows
from nemo_coreward.retry import call_with_retries


@dataclass(frozen=True)
class PipelineConfig:
    k: int = 1
    concurrency: int = 8
    max_candidates: int | None = None  # per record; None -> 3 * k
    retries: int = 4  # extra tries of one request after a RetryableError
    backoff_s: float = 1.0  # first wait; doubles each retry
    backoff_max_s: float = 30.0
    max_consecutive_failures: int | None = None  # abort after this many; None -> 2 * concurrency
    progress: bool = True

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_candidates is not None and self.max_candidates < self.k:
            raise ValueError(f"max_candidates ({self.max_candidates}) must be >= k ({self.k})")


@dataclass(frozen=True)
class RephraseConfig:
    """Everything a run needs besides its backend and files."""

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    validation: V.ValidationConfig = field(default_factory=V.ValidationConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    template: Template = field(default_factory=Template)


class PipelineError(UserError, RuntimeError):
    """The run stopped: the backend refused a request, or kept failing."""


@dataclass
class Summary:
    input: int = 0
    already_done: int = 0
    written: int = 0
    failed: int = 0
    candidates: int = 0
    rejected: int = 0
    requests: int = 0
    rejected_by_rule: dict = field(default_factory=dict)
    repaired: int = 0  # lines whose text was not valid Unicode, replaced with U+FFFD
    elapsed_s: float = 0.0

    def format(self) -> str:
        rules = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected_by_rule.items())) or "none"
        return (
            f"{self.written} records written, {self.already_done} already done, "
            f"{self.failed} failed (of {self.input}); {self.candidates} candidates, "
            f"{self.rejected} rejected ({rules}); {self.requests} requests in "
            f"{self.elapsed_s:.1f}s"
            + (f"; {self.repaired} lines with invalid Unicode repaired" if self.repaired else "")
        )


@dataclass
class _Outcome:
    id: str
    record: PairRecord | None
    rejections: list[dict]
    candidates: int
    requests: int
    error: str | None = None


def _done_ids(found: JsonlRows) -> set[str]:
    """Ids already in the output (a torn last line was cut: that record is redone)."""
    for row, lineno in zip(found.rows, found.lines):
        if not isinstance(row.get("id"), str):
            raise PipelineError(f"{found.path}:{lineno}: not a record line (no 'id'); fix or "
                                "remove it, or write to another --out")
    return {row["id"] for row in found.rows}


class _Worker:
    """Works one record at a time; shared, stateless apart from config and backend."""

    def __init__(self, backend: Backend, config: RephraseConfig) -> None:
        self.backend, self.config = backend, config
        p = config.pipeline
        self.max_candidates = p.max_candidates or 3 * p.k

    def _call(self, messages, n: int) -> list[str]:
        p = self.config.pipeline
        return call_with_retries(
            lambda: self.backend.generate(messages, self.config.sampling, n),
            retry_on=RetryableError, retries=p.retries, backoff_s=p.backoff_s,
            backoff_max_s=p.backoff_max_s,
        )

    def __call__(self, rec: PairRecord) -> _Outcome:
        cfg, k = self.config, self.config.pipeline.k
        accepted: list[str] = []
        rejections: list[dict] = []
        out = _Outcome(rec.id, None, rejections, 0, 0)
        original_majority: str | None = None
        try:
            while len(accepted) < k and out.candidates < self.max_candidates:
                n = min(k - len(accepted), self.max_candidates - out.candidates)
                completions = self._call(cfg.template.messages(rec.question), n)
                out.requests += 1
                for completion in completions:
                    out.candidates += 1
                    rewrite, rejection = V.check_static(rec.question, completion, cfg.validation)
                    if rejection is None and rewrite in accepted + list(rec.rephrasings):
                        rejection = V.Rejection("duplicate", "same as another rephrasing")
                    if rejection is None and cfg.validation.answer_consistency:
                        if original_majority is None:
                            original_majority = V.majority_answer(
                                self._call(solve_messages(rec.question),
                                           cfg.validation.consistency_samples))
                            out.requests += 1
                        solutions = self._call(solve_messages(rewrite),
                                               cfg.validation.consistency_samples)
                        out.requests += 1
                        rejection = V.check_answer(original_majority, solutions)
                    if rejection is None and len(accepted) < k:
                        accepted.append(rewrite)
                    elif rejection is not None:
                        rejections.append({"id": rec.id, "rule": rejection.rule,
                                           "reason": rejection.reason, "candidate": completion})
        except RetryableError as exc:
            out.error = f"transport: {exc}"
            return out
        if len(accepted) < k:
            out.error = f"only {len(accepted)} of {k} candidates valid after {out.candidates}"
            return out
        out.record = replace(rec, rephrasings=tuple(rec.rephrasings) + tuple(accepted))
        return out


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", desc="rephrase", disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)


def run(records: Sequence[PairRecord], out_path: str | os.PathLike, backend: Backend,
        config: RephraseConfig = RephraseConfig(), *,
        rejected_path: str | os.PathLike | None = None, repaired: int = 0) -> Summary:
    """Rephrase ``records`` into ``out_path`` (appending, skipping ids already there).
    ``repaired``: input lines whose invalid Unicode the caller's reader replaced (reported
    in the summary together with those of the output read back)."""
    started = time.monotonic()
    out_path = Path(out_path)
    if out_path.suffix.lower() in (".parquet", ".pq"):
        raise PipelineError(f"{out_path}: the output is appended line by line, so it must be "
                            "JSONL; convert it afterwards with coreward prepare local")
    rejected_path = Path(rejected_path or f"{out_path}.rejected.jsonl")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i, c in Counter(ids).items() if c > 1)
        raise PipelineError(f"input has duplicate id {dup!r}")
    out_fh = JsonlAppender(out_path)
    done = _done_ids(out_fh.existing)
    todo = [r for r in records if r.id not in done]
    summary = Summary(input=len(records), already_done=len(records) - len(todo),
                      repaired=repaired + out_fh.existing.repaired)
    p = config.pipeline
    max_failures = p.max_consecutive_failures or 2 * p.concurrency
    worker, by_rule, consecutive = _Worker(backend, config), Counter(), 0
    bar = _progress(len(todo), p.progress)
    pool = ThreadPoolExecutor(max_workers=p.concurrency, thread_name_prefix="rephrase")
    pending: set[Future] = set()
    queue = iter(todo)
    try:
        with out_fh, JsonlAppender(rejected_path) as rej_fh:
            while True:
                # Submit lazily: only `concurrency` records are ever queued or running, so a
                # stop leaves nothing half-done beyond the records in flight.
                for rec in queue:
                    pending.add(pool.submit(worker, rec))
                    if len(pending) >= p.concurrency:
                        break
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        outcome = future.result()
                    except BackendError as exc:
                        raise PipelineError(f"backend refused a request: {exc}") from None
                    summary.candidates += outcome.candidates
                    summary.requests += outcome.requests
                    by_rule.update(row["rule"] for row in outcome.rejections)
                    if outcome.record is not None:
                        rej_fh.write(outcome.rejections)
                        out_fh.write([outcome.record.to_dict()])
                        summary.written += 1
                        consecutive = 0
                    else:
                        summary.failed += 1
                        rej_fh.write([*outcome.rejections,
                                      {"id": outcome.id, "rule": "record",
                                       "reason": outcome.error, "candidate": None}])
                        transport = outcome.error.startswith("transport")
                        consecutive = consecutive + 1 if transport else 0
                        if consecutive >= max_failures:
                            raise PipelineError(
                                f"{consecutive} records in a row failed to reach the backend; "
                                f"last error: {outcome.error}")
                    bar.update(1)
                    bar.set_postfix(done=summary.written, rejected=sum(by_rule.values()),
                                    failed=summary.failed, refresh=False)
    finally:
        out_fh.close()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        summary.rejected = sum(by_rule.values())
        summary.rejected_by_rule = dict(by_rule)
        summary.elapsed_s = time.monotonic() - started
        atomic_write(f"{out_path}.summary.json", json.dumps(asdict(summary), indent=2) + "\n")
    return summary
