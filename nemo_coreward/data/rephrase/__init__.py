"""LLM rephrasing: prompt, backends, validation rules and the crash-safe pipeline.

``coreward rephrase`` (``nemo_coreward.data.rephrase_cli``) drives ``pipeline.run``.
"""
from nemo_coreward.data.rephrase.backends import (
    BackendError,
    HFBackend,
    OpenAIChatBackend,
    RetryableError,
    SamplingConfig,
    TRTLLMBackend,
)
from nemo_coreward.data.rephrase.pipeline import PipelineConfig, RephraseConfig, Summary, run
from nemo_coreward.data.rephrase.prompt import (
    DEFAULT_TEMPLATE,
    Template,
    load_template,
    parse_result,
)
from nemo_coreward.data.rephrase.validate import ValidationConfig

__all__ = [
    "BackendError", "DEFAULT_TEMPLATE", "HFBackend", "OpenAIChatBackend", "PipelineConfig",
    "RephraseConfig", "RetryableError", "SamplingConfig", "Summary", "TRTLLMBackend",
    "Template", "ValidationConfig", "load_template", "parse_result", "run",
]
