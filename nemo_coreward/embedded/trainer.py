"""The embedded trainer: label-free GRPO (Co-Reward and friends) on one machine.

``session.setup(cfg)`` builds everything a run needs and returns it as one named record
(``Session``); ``train(cfg)`` reads top to bottom: evaluate before, then per step
(``step.Step``) draw pairs -> policy rollouts -> [teacher update -> teacher rollouts] ->
rewards -> advantages -> update, [held-out evaluation every ``eval.every`` steps], logging,
the collapse alarm (which may end the run, ``alarm.stop``) and checkpointing as configured,
then export and evaluate after. Each phase is timed into the step's metrics
(``time/...``).

What the paper's verl recipe does and this trainer simplifies: one process, a Hugging
Face model sampled by its own decode loop instead of vLLM, the whole batch in one
optimiser step (the recipe's mini-batch = batch). The loss aggregation is ``loss.agg``:
the CPU demo's token mean over both sides, or the official sum of a token mean per side
(``side-token-mean-sum``, the ``paper`` config).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_coreward.embedded import checkpoint, killpoint
from nemo_coreward.embedded.config import TrainConfig
from nemo_coreward.embedded.evaluate import evaluate
from nemo_coreward.embedded.rundir import read_metrics
from nemo_coreward.embedded.session import Session, save_checkpoint, setup
from nemo_coreward.embedded.step import SignalHold, Step, timed
from nemo_coreward.reward.alarm import AlarmResult, AlarmWatch


@dataclass(frozen=True)
class TrainResult:
    """``alarm``: the collapse alarm's verdict on the run (``stopped_early`` when
    ``alarm.stop`` ended the run at ``last_step``)."""

    run_dir: Path
    last_step: int
    metrics: dict
    eval_before: dict | None
    eval_after: dict | None
    alarm: AlarmResult | None = None
    stopped_early: bool = False


class Interrupted(KeyboardInterrupt):
    """Raised after an interrupted run has saved what it could; ``checkpoint`` may be None."""

    def __init__(self, checkpoint: Path | None) -> None:
        super().__init__(f"interrupted; resume from {checkpoint}" if checkpoint else "interrupted")
        self.checkpoint = checkpoint


def _evaluate(s: Session) -> dict[str, float]:
    cfg = s.cfg
    return evaluate(s.generator, s.tokenizer, s.eval_prompts, cfg.prompt, cfg.rollout,
                    cfg.reward.equivalence, cfg.reward.fallbacks, cfg.reward.timeout_s,
                    cfg.eval.max_new_tokens, s.fabric.device)


def _heldout_metrics(e: dict[str, float]) -> dict[str, float]:
    """A held-out evaluation as the step metrics the report and the alarm read."""
    return {"heldout_accuracy": e["accuracy"], "heldout_boxed_rate": e["boxed_rate"],
            "heldout_twin_agreement": e["twin_agreement"]}


def _logged_row(s: Session) -> dict[str, Any]:
    """The metrics of the row of the step the run resumes after (NaN where the row holds
    null), or {} for a fresh run. A run killed after its last row (exporting, evaluating)
    has no step left when rerun: its rerun still exports and evaluates, and reports this
    row, as the uninterrupted run reported the same step's metrics."""
    rows = read_metrics(s.run_dir) if s.start_step else []
    if not rows or rows[-1].get("step") != s.start_step:
        return {}
    return {k: float("nan") if v is None else v for k, v in rows[-1].items() if k != "step"}


def _postfix(m: dict[str, float]) -> dict[str, str]:
    return {"reward": f"{m.get('reward_mean', float('nan')):.2f}",
            "maj": f"{m.get('majority_ratio', float('nan')):.2f}",
            "twin": f"{m.get('twin_agreement', float('nan')):.2f}",
            "tok/s": f"{m.get('tokens_per_s', 0.0):.0f}"}


def _alarm_watch(s: Session) -> AlarmWatch:
    """The collapse alarm over the run's rows so far, the held-out accuracy before
    training as step 0 (a resumed run continues its history)."""
    rows = read_metrics(s.run_dir)
    before = s.evals.get("before")
    if before:
        rows.insert(0, {"step": 0, **_heldout_metrics(before)})
    return AlarmWatch(s.cfg.alarm, rows)


def _check_alarm(s: Session, watch: AlarmWatch, echo: Callable[[str], None],
                 row: dict | None = None) -> bool:
    """Re-check the alarm with ``row``; report a first firing (``alarm.json``); True when
    the run should stop."""
    fired = watch.observe(row)
    if fired is not None:
        stop = s.cfg.alarm.stop
        echo(fired.summary() + ("; stopping (alarm.stop=true)" if stop
                                else "; continuing (alarm.stop=false)"))
        s.log.write_json("alarm.json", {**vars(fired), "stopped": stop})
    return watch.stop


def train(cfg: TrainConfig, on_step_end: Callable[[int, dict], None] | None = None,
          echo: Callable[[str], None] = print) -> TrainResult:
    """Run (or resume) a training run end to end; see the module docstring."""
    from tqdm.auto import tqdm

    s = setup(cfg)
    echo(f"run directory: {s.run_dir}" + (f" (resumed after step {s.start_step})"
                                           if s.start_step else ""))
    if cfg.eval.enabled and "before" not in s.evals:
        echo(f"evaluating the untrained policy on {len(s.eval_prompts)} held-out prompts (greedy)")
        s.evals["before"] = _evaluate(s)
        s.log.write_json("eval.json", s.evals)
    if "before" in s.evals:
        echo(f"held-out before: {_describe(s.evals['before'])}")
    metrics = _logged_row(s)  # the result if no step is left (a late kill, a stopped run)
    step = saved_at = s.start_step
    current: Step | None = None
    hold = SignalHold()
    watch = _alarm_watch(s)
    stopped = _check_alarm(s, watch, echo)  # a rerun of a run the alarm stopped stays stopped
    bar = tqdm(total=cfg.train.steps, initial=s.start_step, desc="train", unit="step",
               disable=not cfg.train.progress or stopped, dynamic_ncols=True)
    last_eval: dict | None = None
    times: list[dict] = []
    try:
        for step in range(s.start_step + 1, 0 if stopped else cfg.train.steps + 1):
            current = Step(s, step, hold)
            metrics, samples = current.run()
            if cfg.eval.enabled and cfg.eval.every and step % cfg.eval.every == 0:
                with timed(metrics, "heldout"):
                    last_eval = {"step": step, **_evaluate(s)}
                metrics.update(_heldout_metrics(last_eval))
            s.log.metrics(step, metrics)
            times.append({k: v for k, v in metrics.items() if k.startswith("time/")})
            if samples:
                s.log.samples(samples)
            bar.set_postfix(_postfix(metrics), refresh=False)
            bar.update(1)
            stopped = _check_alarm(s, watch, echo, {"step": step, **metrics})
            every = cfg.train.checkpoint_every
            if (every and step % every == 0) or stopped:
                save_checkpoint(s, step, checkpoint.rng_state(), s.cursor.state_dict())
                saved_at = step
            current = None
            hold.release()
            if on_step_end is not None:
                on_step_end(step, metrics)
            if stopped:
                break
    except KeyboardInterrupt:
        hold.restore()
        bar.close()
        path = None
        if current is None and step > saved_at:  # between steps: the state is step's
            path = save_checkpoint(s, step, checkpoint.rng_state(), s.cursor.state_dict())
        elif current is not None and not current.mutated and step - 1 > saved_at:
            path = save_checkpoint(s, step - 1, current.rng, current.cursor)  # the step's start
        path = path or checkpoint.latest_checkpoint(s.run_dir)
        s.log.close()
        raise Interrupted(path) from None
    bar.close()
    if times:
        echo(timing_summary(times))
    if cfg.train.export:
        final = s.run_dir / "final"
        s.raw_policy.save_pretrained(str(final))
        s.tokenizer.save_pretrained(str(final))
    if cfg.eval.enabled:
        if last_eval is not None and last_eval["step"] == step:  # just evaluated: reuse it
            s.evals["after"] = {k: v for k, v in last_eval.items() if k != "step"}
        else:
            echo(f"evaluating the trained policy on {len(s.eval_prompts)} held-out prompts "
                 "(greedy)")
            killpoint.maybe_die("final_eval", step)
            s.evals["after"] = _evaluate(s)
        s.log.write_json("eval.json", s.evals)
        echo(f"held-out after:  {_describe(s.evals['after'])}")
    s.log.close()
    return TrainResult(s.run_dir, step, metrics, s.evals.get("before"), s.evals.get("after"),
                       watch.result, stopped)


def timing_summary(rows: list[dict[str, float]]) -> str:
    """Mean seconds per step of each timed phase (``time/...``) over the steps of this run,
    generation and update named first: where a step's time goes."""
    keys = sorted({k for r in rows for k in r},
                  key=lambda k: (k not in ("time/generate", "time/update"), k))
    parts = [f"{k[5:]} {sum(r.get(k, 0.0) for r in rows) / len(rows):.1f} s" for k in keys]
    return f"time per step (mean of {len(rows)}): " + ", ".join(parts)


def _describe(e: dict[str, float]) -> str:
    return (f"accuracy {e['accuracy']:.1%}, boxed {e['boxed_rate']:.1%}, "
            f"twin agreement {e['twin_agreement']:.1%} ({int(e['num_prompts'])} prompts)")
