"""Sequence-length rules of the GPU kernels the actor trains with, as pure arithmetic.

Two upstream assertions end a run when the training sequence length does not divide:

- Transformer Engine FP8 GEMMs (``transformer_engine.pytorch.utils.assert_dim_for_fp8_exec``)
  need every GEMM dimension divisible by 16 (8 for the rows of a forward GEMM, 16 for the
  rest; the token dimension is the reduction dimension of the weight-gradient GEMM, so it
  must take the stricter 16). With ``micro_batch_size: 1`` the token dimension is the
  sequence length.
- Megatron-core's sequence parallelism splits activations along the sequence over the
  tensor-parallel ranks (``_split_along_first_dim`` asserts divisibility by TP), and with
  FP8 each rank's slice must itself satisfy the FP8 rule.

The trainer pads every rollout batch to ``round_up(longest, seq_len_multiple(...))`` and
``coreward preflight`` reports the same numbers, so both read these two functions.
"""
from __future__ import annotations

__all__ = ["FP8_DIM_MULTIPLE", "round_up", "seq_len_multiple"]

FP8_DIM_MULTIPLE = 16


def seq_len_multiple(*, fp8: bool, sequence_parallel: bool, tp: int) -> int:
    """The multiple every training sequence length must be padded to (1: no rule applies)."""
    if tp < 1:
        raise ValueError(f"tensor-parallel size must be >= 1, got {tp}")
    multiple = FP8_DIM_MULTIPLE if fp8 else 1
    if sequence_parallel and tp > 1:
        multiple *= tp
    return multiple


def round_up(length: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``length`` (``length`` >= 0)."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    return -(-length // multiple) * multiple
