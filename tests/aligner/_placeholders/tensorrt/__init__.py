"""TEST-ONLY PLACEHOLDER for ``tensorrt``; it is NOT TensorRT.

NeMo's ``nemo.export.trt_llm`` imports ``tensorrt`` at module level on the way to the
NeMo-Aligner modules the tests exercise; TensorRT has no CPU build. Same machinery and
same rules as the ``tensorrt_llm`` placeholder beside it: anything actually used raises.
"""
from _trt_placeholder import install

__version__ = "0.0.0+test-placeholder"
install(__name__, globals())
