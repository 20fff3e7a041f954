"""tests/aligner: the NeMo-Aligner glue.

Pure modules (config, advantages, data, scoring, loss, teacher) are tested anywhere;
tests that need the real NeMo-Aligner or Megatron-core call ``pytest.importorskip`` and
skip in the main venv. The environment that has them: ``scripts/setup_aligner_env.sh``,
then ``.venv-aligner/bin/python -m pytest tests/aligner``.

TensorRT-LLM (and TensorRT) cannot be installed on CPU machines, yet NeMo-Aligner's trainer
and actor modules import them; when they are absent, the test-only placeholders in
``_placeholders/`` go on ``sys.path`` (see their docstrings) solely so those modules import.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

PLACEHOLDERS = Path(__file__).parent / "_placeholders"
if importlib.util.find_spec("nemo_aligner") is not None \
        and importlib.util.find_spec("tensorrt_llm") is None:
    sys.path.insert(0, str(PLACEHOLDERS))
