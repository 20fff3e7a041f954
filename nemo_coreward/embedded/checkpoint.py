"""Atomic, resumable checkpoints: everything a run needs to continue bit for bit.

A checkpoint holds the policy, the optimiser, the scheduler, the data cursor, the
teacher when it moves (Co-rewarding-II; a frozen reference is reloaded from the model
source instead of being stored), the step, and every random state the run draws from
(torch CPU and CUDA, Python, numpy). It is streamed with ``torch.save`` through
``nemo_coreward.io.atomic_file`` (a temporary file, fsynced, renamed into place, the folder
fsynced), so a crash mid-write never leaves a truncated checkpoint that a resume would
pick. Only the newest ``keep_last`` are kept. A hard kill mid-write (SIGKILL, the OOM killer)
leaves the temporary file behind, as large as the part written; the resume and every save
delete such leftovers (``remove_leftovers``), so repeated kills do not fill the disk.

Not Lightning Fabric's ``save``: it serialises the whole checkpoint into memory first and
then copies that buffer once more (``_atomic_save``), so a 1.6 GB checkpoint of the 135M
demo model (weights + AdamW) briefly cost 3.2 GB of extra RAM on the CPU box.

Loading uses ``weights_only=True`` (no pickled code): random states are therefore stored
as tensors and plain tuples, never as numpy objects.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nemo_coreward.embedded import killpoint
from nemo_coreward.io.atomic import atomic_file, leftover_temporaries

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


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a kill cut short; return them.
    A run is the only writer of its checkpoints, so no such file is still being written."""
    found = leftover_temporaries(checkpoint_dir(run_dir), "step_*.ckpt")
    for path in found:
        path.unlink(missing_ok=True)
    return found


def save(run_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Write ``state`` for ``step`` atomically, then prune to the newest ``keep_last``.

    Objects with a ``state_dict`` (modules, optimiser, scheduler, cursor) are stored as
    their state dicts; everything else as is. Leftovers of killed writes go first, so
    their space is free before the new file is written.
    """
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    remove_leftovers(run_dir)
    path = folder / f"step_{step:06d}.ckpt"
    payload = {k: v.state_dict() if hasattr(v, "state_dict") else v for k, v in state.items()}
    with atomic_file(path, "wb") as f:
        torch.save(payload, killpoint.torn(f, "checkpoint", step))
    for _, old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Restore ``state``'s objects in place (``load_state_dict``, strict); return the
    checkpoint's other entries. Tensors land on the CPU first; ``load_state_dict`` copies
    them to wherever each module's and optimiser's tensors live."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    missing = sorted(set(state) - set(payload))
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}; it was written by another "
                         "configuration (e.g. without a moving teacher)")
    for key, obj in state.items():
        obj.load_state_dict(payload.pop(key))
    return payload
