"""Prompt text more than one part of the project sends to a model.

``PAPER_SYSTEM`` is the system turn of the Co-Reward and Co-rewarding papers' training
and evaluation prompts; the rephrasing pipeline's answer-consistency check solves both
phrasings with it, the evaluator's paper preset and the trainers prompt with it. Written
once here so a change to the protocol reaches all of them.
"""
from __future__ import annotations

PAPER_SYSTEM = "Let's think step by step and output the final answer within \\boxed{}."
