"""NeMo-Aligner 0.7.0 glue: a GRPO trainer and actor that train with Co-Reward rewards.

Only ``trainer`` and ``actor`` import NeMo-Aligner (and so need the NGC NeMo container);
everything else here is plain torch and is tested anywhere:

- ``config``: the ``coreward:`` config section, validated.
- ``advantages``: per-(pair, side) GRPO advantages as NeMo-Aligner's REINFORCE terms.
- ``data``: the twin dataset and collate (all sides of a pair in one batch item).
- ``rollouts``: rollout tensors -> ``Rollout`` records.
- ``scoring``: in-process and remote scorers and their Megatron-parallel routing.
- ``loss``: the actor loss (PPO clip, KL term) on one micro-batch.
- ``teacher``: the Co-rewarding-II teacher (CPU state, averaging, engine refit order,
  checkpoint files).

Design and the user's path: docs/nemo-aligner.md.
"""
