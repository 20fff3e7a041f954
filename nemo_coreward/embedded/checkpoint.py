"""Atomic, resumable checkpoints: everything a run needs to continue bit for bit.

A checkpoint holds the policy, the optimiser, the scheduler, the data cursor, the
teacher when it moves (Co-rewarding-II; a frozen reference is reloaded from the model
source instead of being stored), the step, and every random state the run draws from
(torch CPU and CUDA, Python, numpy). Lightning Fabric writes and reads it; writing goes to
a temporary file that is renamed into place, so a crash mid-write never leaves a
truncated checkpoint that a resume would pick. Only the newest ``keep_last`` are kept.

Loading uses ``weights_only=True`` (no pickled code): random states are therefore stored
as tensors and plain tuples, never as numpy objects.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^step_(\d{6,})\.ckpt$")


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of complete checkpoints, oldest first (temporary files ignored)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save(fabric: Any, run_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write ``state`` for ``step`` atomically, then prune to the newest ``keep_last``."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:06d}.ckpt"
    tmp = folder / f".step_{step:06d}.ckpt.tmp"
    fabric.save(tmp, state)
    os.replace(tmp, path)
    for _, old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load(fabric: Any, path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Restore ``state``'s stateful objects in place; return the remaining entries."""
    return fabric.load(path, state, weights_only=True)
