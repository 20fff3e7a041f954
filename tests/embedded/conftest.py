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



@pytest.fixture()
def sharp(tiny):
    """``tiny`` with sharp attention. A random model attends almost uniformly, blind to
    positions and padding; sharp attention makes a wrong position or mask change its
    outputs, so a test comparing two paths can see such a mistake."""
    model, tok = tiny
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(12.0)
            layer.self_attn.k_proj.weight.mul_(12.0)
    return model, tok
