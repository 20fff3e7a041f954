"""Trainer fixtures on top of the suite's tiny Llama (``tiny_model_dir`` in tests/conftest.py).

Tests keep torch to one thread: other work shares the machine.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture()
def tiny(tiny_model_dir: Path):
    """(model, tokenizer) fresh per test, float32, eval mode."""
    from nemo_coreward.embedded.model import ModelConfig, load_causal_lm, load_tokenizer

    return load_causal_lm(tiny_model_dir, ModelConfig()).eval(), load_tokenizer(tiny_model_dir)
