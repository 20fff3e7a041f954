"""Where rephrasings (and the consistency check's solutions) are generated.

Three backends with one method, ``generate(messages, sampling, n) -> list[str]``:

- ``OpenAIChatBackend``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (the
  project's one client, ``nemo_coreward.llm.client``). That is how ``trtllm-serve``, vLLM
  and NIM serve models, so one client covers a user's cluster.
- ``HFBackend``: a local Hugging Face causal LM through ``generate`` (CPU or one GPU).
- ``TRTLLMBackend``: TensorRT-LLM's Python ``LLM`` API, imported only when constructed,
  so nothing here needs ``tensorrt_llm`` unless that backend is chosen.

Errors are split by what the caller should do: ``RetryableError`` (connection failures,
timeouts, HTTP 429 and 5xx) is retried with backoff by the pipeline; ``BackendError``
(other HTTP errors, a malformed response) is not, since repeating it cannot help.
"""
from __future__ import annotations

import threading
from typing import Any

from nemo_coreward.llm.client import (
    Backend,
    BackendError,
    Messages,
    OpenAIChatBackend,
    RetryableError,
    SamplingConfig,
)

__all__ = ["Backend", "BackendError", "HFBackend", "OpenAIChatBackend", "RetryableError",
           "SamplingConfig", "TRTLLMBackend"]


def _chat_prompt(tokenizer: Any, messages: Messages) -> str:
    """The model's chat template when it has one, else the turns joined by blank lines."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


class HFBackend:
    """A local Hugging Face model. Calls are serialised with a lock: one model, one
    ``generate`` at a time, whatever the pipeline's concurrency."""

    def __init__(self, model: str | Any, *, tokenizer: Any = None, device: str = "cpu",
                 dtype: str | None = None, gguf_file: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(model, str):
            kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
            if dtype:
                kwargs["dtype"] = getattr(torch, dtype)
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(model, **(
                {"gguf_file": gguf_file} if gguf_file else {}))
            model = AutoModelForCausalLM.from_pretrained(model, **kwargs)
        else:
            if tokenizer is None:
                raise ValueError("HFBackend with a model object needs its tokenizer")
            self.tokenizer = tokenizer
        self.model = model.to(device).eval()
        self.device = device
        self._lock = threading.Lock()

    def generate(self, messages: Messages, sampling: SamplingConfig, n: int = 1) -> list[str]:
        import torch

        prompt = _chat_prompt(self.tokenizer, messages)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        greedy = sampling.temperature <= 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "num_return_sequences": n,
            "do_sample": not greedy,
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id,
        }
        if not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        with self._lock, torch.no_grad():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            out = self.model.generate(**inputs, **kwargs)
        start = inputs["input_ids"].shape[1]
        return [self.tokenizer.decode(seq[start:], skip_special_tokens=True) for seq in out]


class TRTLLMBackend:
    """TensorRT-LLM's ``LLM`` API (GPU machines). ``generate_async`` lets the pipeline's
    threads keep several requests in the engine's in-flight batch at once."""

    def __init__(self, model: str, *, tokenizer: str | None = None, **llm_kwargs: Any) -> None:
        try:
            import tensorrt_llm
        except ImportError as exc:
            raise BackendError(
                "backend 'trtllm' needs TensorRT-LLM (import tensorrt_llm failed: "
                f"{exc}); use --backend openai against trtllm-serve instead"
            ) from None
        from transformers import AutoTokenizer

        self._sampling_cls = tensorrt_llm.SamplingParams
        self.llm = tensorrt_llm.LLM(model=model, tokenizer=tokenizer, **llm_kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or model)

    def generate(self, messages: Messages, sampling: SamplingConfig, n: int = 1) -> list[str]:
        params = self._sampling_cls(
            n=n, max_tokens=sampling.max_tokens, temperature=sampling.temperature,
            top_p=sampling.top_p, **({"seed": sampling.seed} if sampling.seed is not None else {}),
        )
        result = self.llm.generate_async(_chat_prompt(self.tokenizer, messages), params).result()
        return [o.text for o in result.outputs]
