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
from typing import Any, Optional


def new_run_dir(output_root: str, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(output_root) / f"{name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(output_root) / f"{name}-{stamp}-{suffix}"
    return path


def latest_run_dir(output_root: str, name: str) -> Optional[Path]:
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
    """Append-only metrics and samples, plus TensorBoard scalars."""

    def __init__(self, path: Path, tensorboard: bool = True) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(path / "tb"))

    def metrics(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{k: _clean(v) for k, v in values.items()}}
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def samples(self, rows: list[dict[str, Any]]) -> None:
        with open(self.path / "samples.jsonl", "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run repeats those steps)."""
        for name in ("metrics.jsonl", "samples.jsonl"):
            file = self.path / name
            if not file.is_file():
                continue
            kept = [line for line in file.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= step]
            file.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write_json(self, name: str, value: Any) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path / name)

    def read_json(self, name: str) -> Any:
        file = self.path / name
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    file = Path(run_dir) / "metrics.jsonl"
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]
