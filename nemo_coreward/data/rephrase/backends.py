"""Where rephrasings (and the consistency check's solutions) are generated.

Three backends with one method, ``generate(messages, sampling, n) -> list[str]``:

- ``OpenAIChatBackend``: any OpenAI-compatible ``/v1/chat/completions`` endpoint. That is
  how ``trtllm-serve``, vLLM and NIM serve models, so one client covers a user's cluster.
  Standard library only (``urllib``), one request per call, safe to call from threads.
- ``HFBackend``: a local Hugging Face causal LM through ``generate`` (CPU or one GPU).
- ``TRTLLMBackend``: TensorRT-LLM's Python ``LLM`` API, imported only when constructed,
  so nothing here needs ``tensorrt_llm`` unless that backend is chosen.

Errors are split by what the caller should do: ``RetryableError`` (connection failures,
timeouts, HTTP 429 and 5xx) is retried with backoff by the pipeline; ``BackendError``
(other HTTP errors, a malformed response) is not, since repeating it cannot help.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

Messages = Sequence[dict[str, str]]


class BackendError(RuntimeError):
    """A failure that retrying will not fix (bad request, unknown model, bad response)."""


class RetryableError(BackendError):
    """A transient failure: connection refused or reset, timeout, HTTP 429 or 5xx."""


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling for rephrasing; defaults are the paper's (Qwen3-32B, temperature 0.7,
    top_p 0.8). ``temperature`` 0 means greedy. ``extra_body`` is merged into HTTP requests
    (e.g. ``{"chat_template_kwargs": {"enable_thinking": false}}`` for Qwen3 on vLLM)."""

    temperature: float = 0.7
    top_p: float = 0.8
    max_tokens: int = 2048
    seed: int | None = None
    extra_body: dict = field(default_factory=dict)


class Backend(Protocol):
    def generate(self, messages: Messages, sampling: SamplingConfig, n: int = 1) -> list[str]:
        """``n`` completions of one chat."""


def _chat_url(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base URL must look like http://host:port/v1, got {base_url!r}")
    path = parts.path.rstrip("/")
    if path == "":
        path = "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + "/chat/completions", "", ""))


class OpenAIChatBackend:
    """Chat completions over HTTP. ``timeout_s`` bounds each blocking socket operation of a
    request (connect, and each read while waiting for the reply). Several completions are
    asked for with the ``n`` field; ``max_n=1`` sends one request per completion instead,
    for servers that do not support ``n``."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 120.0, max_n: int | None = None) -> None:
        self.url = _chat_url(base_url)
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout_s = timeout_s
        if max_n is not None and max_n < 1:
            raise ValueError(f"max_n must be >= 1, got {max_n}")
        self.max_n = max_n

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            if exc.code == 429 or exc.code >= 500:
                raise RetryableError(f"HTTP {exc.code} from {self.url}: {detail}") from None
            raise BackendError(f"HTTP {exc.code} from {self.url}: {detail}") from None
        except (socket.timeout, TimeoutError) as exc:
            raise RetryableError(f"timed out after {self.timeout_s}s: {self.url} ({exc})") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            raise RetryableError(f"cannot reach {self.url}: {exc}") from None
        try:
            return json.loads(payload)
        except json.JSONDecodeError:
            raise BackendError(f"{self.url} answered with non-JSON: {payload[:200]!r}") from None

    def generate(self, messages: Messages, sampling: SamplingConfig, n: int = 1) -> list[str]:
        texts: list[str] = []
        while len(texts) < n:  # some servers return fewer choices than asked for
            body = {
                "model": self.model,
                "messages": list(messages),
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "max_tokens": sampling.max_tokens,
                "n": min(n - len(texts), self.max_n or n),
                **({"seed": sampling.seed} if sampling.seed is not None else {}),
                **sampling.extra_body,
            }
            reply = self._post(body)
            choices = reply.get("choices")
            if not isinstance(choices, list) or not choices:
                raise BackendError(f"{self.url}: response has no choices: {str(reply)[:200]}")
            for choice in choices:
                content = (choice.get("message") or {}).get("content")
                texts.append(content if isinstance(content, str) else "")
        return texts[:n]


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
