"""Benchmark evaluation and run reports, graded with the project's own answer checker.

- ``metrics``: pass@k (unbiased), avg@k, maj@k, greedy pass@1, per-level breakdowns (pure).
- ``alarm``: the collapse alarm over metric rows (pure; trainers may stop early on it).
- ``benchmarks``, ``backends``, ``runner``, ``tables``, ``cli``: ``coreward eval``.
- ``report``, ``report_cli``: ``coreward report``.

Nothing is imported here, so ``import nemo_coreward.eval.alarm`` costs no torch,
transformers or matplotlib. See docs/evaluation.md.
"""
