"""TEST-ONLY PLACEHOLDER for ``tensorrt_llm``; it is NOT TensorRT-LLM and generates nothing.

TensorRT-LLM has no CPU build and cannot be installed on the machines the tests run on,
yet NeMo-Aligner 0.7.0 imports it unconditionally (``nemo_aligner/utils/trt_llm.py``,
and through ``nemo.export``) from the modules that hold ``ReinforceTrainer`` and
``MegatronGPTReinforceActorModel``. tests/aligner/conftest.py puts this folder on
``sys.path`` only when the real package is absent, solely so those modules import.

Every ``tensorrt_llm.<anything>`` submodule resolves to a placeholder module, and every
attribute to a placeholder class that raises ``RuntimeError`` when instantiated or called,
so any code path that would really use TensorRT-LLM fails loudly instead of pretending.
"""
from _trt_placeholder import install

__version__ = "0.0.0+test-placeholder"
install(__name__, globals())
