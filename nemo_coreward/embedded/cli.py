"""``coreward train``: compose a config, resolve resume, train, print what happened.

    coreward train                                   # conf/embedded/default.yaml (CPU demo)
    coreward train --config-name paper model.path=/ckpt/Qwen2.5-3B
    coreward train reward.name=majority train.steps=8 ++optim.lr=2e-5
    coreward train resume=true                       # newest runs/<name>-* of this config
    coreward train run_dir=runs/demo-20261124-101500 # continue that run (its config.yaml)

Resuming recomposes from the run's own ``config.yaml`` with any further overrides, so a
run continues with the settings it started with unless told otherwise.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path

from nemo_coreward.embedded.config import CONF_DIR, ConfigError, TrainConfig, compose, validate
from nemo_coreward.embedded.rundir import latest_run_dir

USAGE = __doc__.split("\n\n")[1]
HELP = "see coreward train --help"


def _parse(argv: list[str]) -> tuple[str, list[str]]:
    name, overrides, i = "default", [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config-name", "-cn"):
            if i + 1 >= len(argv):
                raise ConfigError(f"{arg} needs a value; {HELP}")
            name, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config-name="):
            name = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            raise ConfigError(f"unknown option {arg!r} (options: --config-name NAME); {HELP}")
        else:
            overrides.append(arg)
        i += 1
    return name, overrides


def _value(overrides: list[str], key: str) -> str | None:
    found = None
    for item in overrides:
        lhs, _, rhs = item.partition("=")
        if lhs.lstrip("+") == key:
            found = rhs
    return found


def resolve(config_name: str, overrides: list[str]) -> TrainConfig:
    """The run's config, from a shipped YAML or, when resuming, from the run's own."""
    run_dir = _value(overrides, "run_dir")
    resume = (_value(overrides, "resume") or "").lower() in ("true", "1", "yes")
    if run_dir in (None, "null") and resume:
        first = validate(compose(config_name, overrides))
        found = latest_run_dir(first.output_root, first.name)
        if found is None:
            raise ConfigError(f"resume=true: no run of {first.name!r} under {first.output_root}/")
        run_dir = str(found)
        overrides = [*overrides, f"run_dir={found}"]
    if run_dir not in (None, "null") and (Path(run_dir) / "config.yaml").is_file():
        extra = [o for o in overrides if o.partition("=")[0].lstrip("+") not in ("resume",)]
        return validate(compose("config", [*extra, "resume=true"], Path(run_dir)))
    return validate(compose(config_name, overrides, CONF_DIR))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        shipped = ", ".join(sorted(p.stem for p in CONF_DIR.glob("*.yaml")))
        print(f"\nshipped configs ({CONF_DIR}): {shipped}")
        return 0
    try:
        cfg = resolve(*_parse(argv))
    except ConfigError as err:
        print(f"coreward train: {err}", file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging

    from nemo_coreward.embedded.trainer import Interrupted, train

    hf_logging.disable_progress_bar()  # one progress bar: the trainer's
    # scancel and SLURM time limits send SIGTERM: save a checkpoint as for Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)

    try:
        result = train(cfg)
    except Interrupted as stop:
        where = f"; continue with: coreward train run_dir={stop.checkpoint.parent.parent}" \
            if stop.checkpoint else ""
        print(f"\ninterrupted{where}", file=sys.stderr)
        return 130
    m = result.metrics
    if result.stopped_early:
        print(f"stopped early by the collapse alarm (alarm.stop=true): {result.alarm.summary()}; "
              f"details in {result.run_dir / 'alarm.json'}")
    print(f"done after step {result.last_step}: reward {m.get('reward_mean', float('nan')):.2f}, "
          f"pseudo-label accuracy {m.get('pseudo_label_accuracy', float('nan')):.2f}, "
          f"majority ratio {m.get('majority_ratio', float('nan')):.2f}, "
          f"twin agreement {m.get('twin_agreement', float('nan')):.2f}")
    if result.eval_before and result.eval_after:
        print(f"held-out greedy accuracy: {result.eval_before['accuracy']:.1%} -> "
              f"{result.eval_after['accuracy']:.1%}")
    print(f"run directory: {result.run_dir}  (tensorboard --logdir {result.run_dir / 'tb'})")
    return 0
