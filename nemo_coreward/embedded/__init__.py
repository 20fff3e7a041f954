"""The embedded single-machine trainer (CPU or one GPU) on Hugging Face models.

``coreward train`` -> ``cli.main`` -> ``config.load`` -> ``trainer.train`` (``session.setup``,
then a ``step.Step`` per step); see docs/embedded.md.

OpenMP threads sleep instead of spinning when they wait (``OMP_WAIT_POLICY=PASSIVE``,
unless the environment says otherwise). It only takes effect when this package is
imported before torch, as ``coreward train`` does. Spinning buys little on an idle
machine but is ruinous on a busy one: measured on 2 cores shared with one other
2-thread torch process, sampling with 2 spinning threads took 95 s where passive
threads took 7.5 s (and 1 thread 5.8 s).
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
