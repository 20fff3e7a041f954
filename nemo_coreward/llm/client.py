"""The OpenAI-compatible chat client: how the project talks to ``trtllm-serve``, vLLM, NIM.

The rephrasing pipeline and the evaluator both call LLM servers through this one client:
``POST {base_url}/chat/completions``, standard library only (``urllib``), one request per
call, safe to call from threads. Errors are split by what the caller should do:
``RetryableError`` (connection failures, timeouts, HTTP 429 and 5xx) is worth retrying with
``nemo_coreward.retry.call_with_retries``; ``BackendError`` (other HTTP errors, a malformed
response) is not, since repeating it cannot help. Reply text that is not valid Unicode
(a lone surrogate escaped in the JSON) is repaired to U+FFFD, so no later write fails on it.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nemo_coreward.errors import UserError
from nemo_coreward.io.jsonl import repair_json

Messages = Sequence[dict[str, str]]


class BackendError(UserError, RuntimeError):
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
        except TimeoutError as exc:
            raise RetryableError(f"timed out after {self.timeout_s}s: {self.url} ({exc})") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            raise RetryableError(f"cannot reach {self.url}: {exc}") from None
        try:
            return repair_json(json.loads(payload))[0]
        except (json.JSONDecodeError, UnicodeDecodeError):
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
