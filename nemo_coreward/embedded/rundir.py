"""The run directory: everything a run made, in one place a user can open.

Layout::

    runs/<name>-<YYYYmmdd-HHMMSS>/
      config.yaml        the resolved configuration (resume recomposes from it)
      metrics.jsonl      one JSON object per step
      samples.jsonl      rollouts every ``train.sample_every`` steps
      eval.json          held-out greedy accuracy before and after training
      tb/                TensorBoard event files
      checkpoints/       step_000008.ckpt ... (newest ``train.keep_last``)
      final/             Hugging Face save_pretrained export of the trained policy
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from nemo_coreward.embedded import killpoint
from nemo_coreward.io.atomic import atomic_write
from nemo_coreward.io.jsonl import JsonlError, append_jsonl, cut_after, read_jsonl


def new_run_dir(output_root: str, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(output_root) / f"{name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(output_root) / f"{name}-{stamp}-{suffix}"
    return path


def latest_run_dir(output_root: str, name: str) -> Path | None:
    """The newest ``<output_root>/<name>-*`` that holds a config (for ``resume=true``)."""
    root = Path(output_root)
    if not root.is_dir():
        return None
    runs = [p for p in root.glob(f"{name}-*") if (p / "config.yaml").is_file()]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    return value


class RunLog:
    """Append-only metrics and samples, plus TensorBoard scalars.

    Rows go through ``nemo_coreward.io.jsonl``: each append is flushed and fsynced, a torn
    last line left by a hard kill is cut off before the next append, and whole-file JSON
    (``eval.json``, ``alarm.json``) is replaced atomically."""

    def __init__(self, path: Path, tensorboard: bool = True) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(path / "tb"))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: _clean(v) for k, v in values.items()}}
        killpoint.tear_row(self.path / "metrics.jsonl", row, "metrics", step)
        append_jsonl(self.path / "metrics.jsonl", [row])
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def samples(self, rows: list[dict[str, Any]]) -> None:
        append_jsonl(self.path / "samples.jsonl", rows)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run repeats those steps)."""
        for name in ("metrics.jsonl", "samples.jsonl"):
            cut_after(self.path / name, step)

    def write_json(self, name: str, value: Any) -> None:
        atomic_write(self.path / name, json.dumps(value, indent=2) + "\n")

    def read_json(self, name: str) -> Any:
        file = self.path / name
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise JsonlError(f"{file}: not valid JSON ({exc}); remove it to rerun what "
                             "wrote it") from None

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's metric rows (a torn last line skipped, as every JSONL reader does)."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl").rows
