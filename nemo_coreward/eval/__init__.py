"""Benchmark evaluation and run reports, graded with the project's own answer checker.

- ``metrics``: pass@k (unbiased), avg@k, maj@k, greedy pass@1, per-level breakdowns (pure).
- ``benchmarks``, ``backends``, ``runner``, ``tables``, ``cli``: ``coreward eval``.
- ``report``, ``report_cli``: ``coreward report``.

Nothing is imported here, so ``import nemo_coreward.eval.metrics`` costs no torch,
transformers or matplotlib. The collapse alarm the report runs is
``nemo_coreward.reward.alarm``. See docs/evaluation.md.
"""
