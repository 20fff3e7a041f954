"""Checkpoint files on disk: what a write cut short by a hard kill leaves is deleted by the
next save and by the resume, so repeated kills do not fill the disk."""
from __future__ import annotations

from pathlib import Path

import torch

from nemo_coreward.embedded import checkpoint
from nemo_coreward.embedded.config import load
from nemo_coreward.embedded.session import setup
from nemo_coreward.embedded.trainer import train
from nemo_coreward.io.atomic import atomic_file, leftover_temporaries


def _leave_a_killed_write(run_dir: Path, step: int) -> Path:
    """The temporary file ``atomic_file`` leaves when its process dies mid-write."""
    folder = checkpoint.checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / f".step_{step:06d}.ckpt.k3j_x9q.tmp"
    stale.write_bytes(b"PK\x03\x04" + bytes(4096))
    return stale


def test_the_leftover_pattern_is_the_name_atomic_file_gives_its_temporary(tmp_path):
    target = checkpoint.checkpoint_dir(tmp_path) / "step_000001.ckpt"
    with atomic_file(target, "wb") as fh:
        fh.write(b"partial")
        # a kill here would leave exactly this file
        (tmp,) = leftover_temporaries(target.parent, "step_*.ckpt")
        assert tmp.name.startswith(".step_000001.ckpt.") and tmp.name.endswith(".tmp")
    assert leftover_temporaries(target.parent, "step_*.ckpt") == []
    assert target.read_bytes() == b"partial"


def test_save_deletes_leftovers_of_killed_checkpoint_writes_and_nothing_else(tmp_path):
    stale = _leave_a_killed_write(tmp_path, 2)
    folder = stale.parent
    other = folder / ".notes.txt.abc123.tmp"  # not a checkpoint's: not ours to delete
    other.write_text("x")
    done = checkpoint.save(tmp_path, 1, {"step": 1, "w": torch.ones(2)}, keep_last=2)
    path = checkpoint.save(tmp_path, 3, {"step": 3, "w": torch.zeros(2)}, keep_last=2)
    assert sorted(p.name for p in folder.iterdir()) == [other.name, done.name, path.name]
    assert checkpoint.load(path, {})["step"] == 3


def test_the_resume_deletes_leftovers_before_the_run_goes_on(tiny_model_dir, tmp_path):
    """Even a rerun that saves nothing more (its last step was checkpointed) cleans up."""
    cfg = load("tiny", [f"model.path={tiny_model_dir}", f"output_root={tmp_path}",
                        "train.steps=1", "eval.enabled=false"])
    run = train(cfg, echo=lambda _: None).run_dir
    stale = _leave_a_killed_write(run, 2)
    s = setup(load("tiny", [f"model.path={tiny_model_dir}", f"run_dir={run}",
                            "resume=true", "train.steps=1",
                            "eval.enabled=false"]))
    s.log.close()
    assert not stale.exists()
    assert [step for step, _ in checkpoint.list_checkpoints(run)] == [1]
