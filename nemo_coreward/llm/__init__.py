"""Talking to LLM servers: the OpenAI-compatible client and the prompts the rephrasing
pipeline and the evaluator share. Standard library only; neither ``data`` nor ``eval``
borrows this from the other."""
from nemo_coreward.llm.client import (
    Backend,
    BackendError,
    OpenAIChatBackend,
    RetryableError,
    SamplingConfig,
)

__all__ = ["Backend", "BackendError", "OpenAIChatBackend", "RetryableError", "SamplingConfig"]
