"""One training step, read top to bottom, and the weights rollouts are sampled from.

draw pairs -> policy rollouts -> [teacher averaging -> teacher rollouts] -> rewards ->
advantages -> update; each phase timed into the step's metrics (``time/...``). Signals
that arrive while weights change are held until the step is complete (``SignalHold``),
so an interruption always leaves a state that can be checkpointed.

``Step`` takes the run's ``session.Session``; the helpers below it take only what they use.
"""
from __future__ import annotations

import copy
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from nemo_coreward.embedded import checkpoint, killpoint
from nemo_coreward.embedded.data import Prompt, prompts_for
from nemo_coreward.embedded.prompts import render
from nemo_coreward.embedded.rollout import DTYPES, Rollouts, encode_prompts, sample
from nemo_coreward.embedded.scoring import to_rollouts
from nemo_coreward.embedded.update import advantages_for, update_policy
from nemo_coreward.reward import ScoredBatch, reward_spec
from nemo_coreward.rl import ema_update_

if TYPE_CHECKING:
    from nemo_coreward.embedded.config import ScheduleConfig, TrainConfig
    from nemo_coreward.embedded.prompts import PromptConfig
    from nemo_coreward.embedded.rollout import SamplingConfig
    from nemo_coreward.embedded.session import Session


def generation_dtype(cfg: TrainConfig) -> torch.dtype:
    """``rollout.dtype``; auto follows the training compute dtype (bf16 for bf16-mixed)."""
    chosen = DTYPES[cfg.rollout.dtype]
    if chosen is None:
        bf16 = cfg.model.resolved_precision().startswith("bf16")
        chosen = torch.bfloat16 if bf16 else torch.float32
    return chosen


def make_generator(raw_policy: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """The trained module itself when it already has ``dtype``, else a frozen copy."""
    if next(raw_policy.parameters()).dtype == dtype:
        return raw_policy
    return copy.deepcopy(raw_policy).to(dtype).eval().requires_grad_(False)


def refresh_copy(copy: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy ``source``'s weights into its sampling copy (``make_generator``; nothing to do
    when that is ``source`` itself): after every update and teacher averaging, so every
    step samples on-policy, and after a checkpoint restored ``source``."""
    if copy is not source:
        with torch.no_grad():
            copy.load_state_dict(source.state_dict())


@contextmanager
def timed(times: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        times[f"time/{name}"] = times.get(f"time/{name}", 0.0) + time.perf_counter() - start


class SignalHold:
    """Hold SIGINT/SIGTERM from the first weight change of a step until the step is logged.

    An interruption before that rolls back to the step's start; one arriving while weights
    change (a partly applied update cannot be saved consistently) waits until the step is
    complete, so a checkpoint of that step can be written.
    """

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.caught = False

    def start(self) -> None:
        if self.previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._catch)

    def _catch(self, signum: int, frame: object) -> None:
        self.caught = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def release(self) -> None:
        """Restore the handlers; raise the held interruption, if any, now."""
        self.restore()
        if self.caught:
            self.caught = False
            raise KeyboardInterrupt


class Step:
    """One training step; ``mutated`` turns true once model or teacher weights change, after
    which an interruption cannot be rolled back to the step's start."""

    def __init__(self, s: Session, step: int, hold: SignalHold) -> None:
        self.s, self.step, self.mutated, self.hold = s, step, False, hold
        self.rng = checkpoint.rng_state()
        self.cursor = s.cursor.state_dict()

    def run(self) -> tuple[dict[str, float], list[dict]]:
        s, cfg, times = self.s, self.s.cfg, {}
        spec = reward_spec(cfg.reward.name)
        autocast = s.fabric.autocast
        with timed(times, "step"):
            batch = [s.pairs[i] for i in s.cursor.next(cfg.data.pairs_per_step)]
            drawn = prompts_for(batch, cfg.data)
            prompts = [p for p in drawn if spec.policy_rolls_out(p.side)]
            ids, mask = _encode(s.tokenizer, prompts, cfg.prompt, cfg.rollout, s.fabric.device)
            with timed(times, "generate"):
                rollouts = sample(s.generator, s.tokenizer, ids, mask, cfg.rollout,
                                  token_stats=spec.needs_token_stats)
                killpoint.maybe_die("generate", self.step)
            teacher, extra = None, {}
            if spec.needs_teacher:
                with timed(times, "teacher"):
                    teacher, extra = self._teacher(
                        [p for p in drawn if spec.teacher_rolls_out(p.side)])
            with timed(times, "reward"):
                scored = s.scorer.score(to_rollouts(prompts, rollouts), teacher)
            rewards = torch.tensor(scored.rewards, dtype=torch.float32)
            keys = [(p.pair_id, p.side) for p in prompts for _ in range(rollouts.n)]
            adv = advantages_for(rewards, keys, cfg.advantage)
            with timed(times, "update"):
                self.hold.start()
                self.mutated = True
                sides = torch.tensor([p.side for p in prompts for _ in range(rollouts.n)])
                losses = update_policy(s.fabric, s.policy, s.optimizer, rollouts, adv,
                                       cfg.loss_config(),
                                       cfg.update, cfg.optim.grad_clip, s.reference,
                                       autocast, sides=sides)
                killpoint.maybe_die("update", self.step)
                lr = s.optimizer.param_groups[0]["lr"]
                s.scheduler.step()
                refresh_copy(s.generator, s.raw_policy)
        lengths = rollouts.response_mask.sum(-1).float()
        metrics = {**scored.metrics, **losses, **extra, **times, "lr": lr,
                   "adv_abs_mean": float(adv.abs().mean()),
                   "response_length": float(lengths.mean()),
                   "tokens_per_s": rollouts.num_tokens / max(times["time/generate"], 1e-9)}
        return metrics, sample_rows(self.step, prompts, rollouts, scored, cfg.train)

    def _teacher(self, prompts: list[Prompt]) -> tuple[list, dict[str, float]]:
        """Move the teacher towards the policy on update steps, then roll it out with the
        same sampler on the sides the reward asks of it: the policy's own (Co-rewarding-II)
        or the rephrasings only (the combined reward, as the official rephrased-batch path
        does). The reward picks which of its groups label which policy group."""
        s, cfg = self.s, self.s.cfg
        extra: dict[str, float] = {}
        if s.teacher_moves and cfg.teacher.should_update(self.step):
            alpha = cfg.teacher.alpha_at(self.step, cfg.train.steps)
            self.hold.start()
            self.mutated = True
            ema_update_(s.reference, s.raw_policy, alpha)
            refresh_copy(s.teacher_sampler, s.reference)
            extra["teacher_alpha"] = alpha
        ids, mask = _encode(s.tokenizer, prompts, cfg.prompt, cfg.rollout, s.fabric.device)
        out = sample(s.teacher_sampler, s.tokenizer, ids, mask, cfg.rollout)
        return to_rollouts(prompts, out), extra


def _encode(tokenizer: Any, prompts: list[Prompt], prompt: PromptConfig,
            rollout: SamplingConfig, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``prompts`` with the chat template and tokenise them, left-padded."""
    return encode_prompts(tokenizer, render(tokenizer, [p.text for p in prompts], prompt),
                          rollout.max_prompt_tokens, device)


def sample_rows(step: int, prompts: list[Prompt], r: Rollouts, scored: ScoredBatch,
                cfg: ScheduleConfig) -> list[dict]:
    """The ``samples.jsonl`` rows of ``step``: every ``train.sample_every`` steps, the
    first ``train.sample_pairs`` pairs, each side with its responses and their scores."""
    if not cfg.sample_every or step % cfg.sample_every:
        return []
    rows: dict[str, dict] = {}
    for q, p in enumerate(prompts):
        if p.pair_id not in rows and len(rows) == cfg.sample_pairs:
            continue
        row = rows.setdefault(p.pair_id, {"step": step, "pair_id": p.pair_id,
                                          "answer": p.answer, "sides": []})
        scores = scored.scores[q * r.n:(q + 1) * r.n]
        row["sides"].append({
            "side": p.side, "question": p.text,
            "responses": [{"text": t, "answer": sc.answer, "label": sc.label,
                           "reward": sc.reward, "failure": sc.failure}
                          for t, sc in zip(r.texts[q * r.n:(q + 1) * r.n], scores)]})
    return list(rows.values())
