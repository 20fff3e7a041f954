"""The Co-rewarding-II teacher inside a NeMo-Aligner actor: where it lives and in what order
it moves, generates and is saved.

Where: a CPU-resident state dict of this rank's model shard, exactly where NeMo-Aligner
keeps the initial policy for the KL term (``init_policy_state_dict``). The teacher IS the
reference model of Co-rewarding-II, so the actor's ``get_init_policy_logprobs`` computes
the KL to it unchanged. Floating entries are kept in float32: with the paper's alpha
(0.01 -> 1e-5) a bfloat16 teacher would round most updates away (see
``nemo_coreward.rl.ema_update_``); loading it into the bf16 model casts on copy.

Order within one step (official Co-rewarding-II: policy rollouts, then averaging, then
teacher rollouts, ``ray_trainer_coreward.py``):
  1. the policy generates (engine refit with policy weights by ``prepare_for_inference``);
  2. the policy shard is copied to CPU once; on update steps the teacher moves towards it;
  3. the teacher's weights are loaded into the model and the engine is refit with them;
  4. the teacher generates; 5. the policy weights (the CPU copy of step 2) are loaded back.
The engine now holds the teacher: ``EngineWeights`` records that, and the actor refits
with the policy before any later policy generation in the same inference phase; the next
step's ``prepare_for_inference`` refits anyway. So a step costs two refits (policy and
teacher) instead of one, and no second engine (a second TensorRT-LLM engine would hold a
second copy of the weights and of the KV cache on every GPU; see docs/nemo-aligner.md).

Everything here is plain torch behind small hooks, so the order is tested on CPU.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from nemo_coreward.io.atomic import atomic_file
from nemo_coreward.rl import TeacherConfig, ema_update_

__all__ = ["EngineWeights", "TeacherHooks", "TeacherRollouts", "TeacherStore", "averageable",
           "teacher_from_state"]


def averageable(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The entries that are averaged and checkpointed: floating-point tensors.

    Megatron state dicts also hold integer buffers and Transformer Engine ``_extra_state``
    entries (FP8 scaling metadata, sometimes BytesIO objects); those stay as they were
    when the teacher was made.
    """
    return {k: v for k, v in state.items()
            if isinstance(v, Tensor) and v.dtype.is_floating_point}


def teacher_from_state(state: Mapping[str, Any], dtype: torch.dtype = torch.float32
                       ) -> dict[str, Any]:
    """A CPU copy of a model shard's state dict, floating tensors in ``dtype``, never aliased."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, Tensor):
            target = dtype if value.dtype.is_floating_point else value.dtype
            out[key] = value.detach().to(device="cpu", dtype=target, copy=True)
        else:
            out[key] = copy.deepcopy(value)
    return out


class EngineWeights:
    """Which weights the generation engine was last refit with: "policy", "teacher" or None
    (never built, or a refit that did not finish)."""

    def __init__(self) -> None:
        self.holds: str | None = None

    def mark(self, which: str | None) -> None:
        if which not in ("policy", "teacher", None):
            raise ValueError(f"engine weights must be 'policy', 'teacher' or None, got {which!r}")
        self.holds = which

    @property
    def policy_refit_needed(self) -> bool:
        """Whether policy generation must refit first (the engine holds something else)."""
        return self.holds != "policy"


class TeacherHooks(Protocol):
    """What the teacher pass needs from an actor (``MegatronGPTCoRewardActorModel``)."""

    def policy_state_to_cpu(self) -> dict[str, Any]: ...
    def load_weights(self, state: Mapping[str, Any]) -> None: ...
    def refit_engine(self) -> None: ...
    def generate(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]: ...


class TeacherRollouts:
    """The teacher's state and its per-step pass (steps 2-5 of the module docstring)."""

    def __init__(self, state: dict[str, Any], config: TeacherConfig,
                 engine: EngineWeights | None = None) -> None:
        self.state = state
        self.config = config
        self.engine = engine or EngineWeights()
        self.last_alpha: float | None = None

    def update(self, policy_state: Mapping[str, Any], step: int, total_steps: int) -> float | None:
        """Move the teacher towards ``policy_state`` if ``step`` (1-based) is an update step;
        returns the alpha used, or None."""
        if not self.config.should_update(step):
            return None
        alpha = self.config.alpha_at(step, max(total_steps, 1))
        ema_update_(averageable(self.state), averageable(policy_state), alpha)
        return alpha

    def rollouts(self, hooks: TeacherHooks, batches: Sequence[Mapping[str, Tensor]],
                 num_rollouts: int, step: int, total_steps: int) -> list[dict[str, Tensor]]:
        """Update (maybe), then ``num_rollouts`` teacher generations per batch, in batch order.

        The policy weights are restored even when generation fails, so a crash in the
        teacher pass never leaves the policy training on teacher weights.
        """
        policy = hooks.policy_state_to_cpu()
        self.last_alpha = self.update(policy, step, total_steps)
        hooks.load_weights(self.state)
        try:
            self.engine.mark(None)
            hooks.refit_engine()
            self.engine.mark("teacher")
            return [hooks.generate(batch) for batch in batches for _ in range(num_rollouts)]
        finally:
            hooks.load_weights(policy)


class TeacherStore:
    """Teacher shards beside the model checkpoints: ``root/step_<step>/tp<t>_pp<p>.pt``.

    Only the averaged (floating) entries are written; the rest is rebuilt from the model
    on resume. One writer per model-parallel coordinate (DP rank 0): DP replicas hold the
    same teacher. The newest ``keep`` steps are kept.
    """

    def __init__(self, root: str | os.PathLike, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.root = Path(root)
        self.keep = keep

    def path(self, step: int, tp_rank: int, pp_rank: int) -> Path:
        return self.root / f"step_{step:08d}" / f"tp{tp_rank}_pp{pp_rank}.pt"

    def save(self, step: int, state: Mapping[str, Any], tp_rank: int, pp_rank: int) -> Path:
        target = self.path(step, tp_rank, pp_rank)
        with atomic_file(target, "wb") as fh:  # fsynced, renamed, folder fsynced
            torch.save(averageable(state), fh)
        self._prune(tp_rank, pp_rank)
        return target

    def load_into(self, state: dict[str, Any], step: int, tp_rank: int, pp_rank: int) -> None:
        """Overwrite ``state``'s floating entries with the snapshot of ``step``; the names
        must match exactly (a different model or parallel layout is an error)."""
        source = self.path(step, tp_rank, pp_rank)
        if not source.is_file():
            raise FileNotFoundError(
                f"no teacher snapshot for step {step} at {source}: resuming Co-rewarding-II "
                "needs the teacher saved with the checkpoint (same TP/PP layout)")
        saved = torch.load(source, map_location="cpu", weights_only=True)
        expected = set(averageable(state))
        if set(saved) != expected:
            diff = sorted(set(saved) ^ expected)
            raise ValueError(f"{source}: teacher entries do not match the model ({diff[:5]})")
        for key, value in saved.items():
            state[key] = value

    def steps(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name[5:]) for p in self.root.iterdir()
                      if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit())

    def _prune(self, tp_rank: int, pp_rank: int) -> None:
        for step in self.steps()[:-self.keep]:
            own = self.path(step, tp_rank, pp_rank)
            own.unlink(missing_ok=True)
            try:
                own.parent.rmdir()  # the last writer of that step removes the folder
            except OSError:
                pass

