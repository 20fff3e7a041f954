"""NeMo-Aligner 0.7.0 glue: a GRPO trainer and actor that train with Co-Reward rewards.

Only ``trainer`` and ``actor`` import NeMo-Aligner (and so need the NGC NeMo container);
everything else here is plain Python or torch and is tested anywhere:

- ``config``: the ``coreward:`` config section, validated.
- ``plan``, ``model_features``, ``preflight``: ``coreward preflight``, the run plan of a
  config and the refusals of what would crash or silently spoil a GPU run (no NeMo import).
- ``layout``: the sequence-length multiple FP8 and sequence parallelism need.
- ``shards``: which rows of a step each DP rank trains, and the per-token loss weights.
- ``advantages``: per-(pair, side) GRPO advantages as NeMo-Aligner's REINFORCE terms.
- ``data``: the twin dataset and collate (all sides of a pair in one batch item).
- ``scoring``: in-process and remote scorers and their Megatron-parallel routing.
- ``loss``: the actor loss (PPO clip, KL term) on one micro-batch.
- ``teacher``: the Co-rewarding-II teacher (CPU state, averaging, engine refit order,
  checkpoint files).

Design and the user's path: docs/nemo-aligner.md.
"""
