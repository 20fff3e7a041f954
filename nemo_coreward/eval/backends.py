"""Where evaluation responses come from: a local Hugging Face model or an HTTP endpoint.

Both backends have one method, ``generate(questions, n, temperature, max_new_tokens) ->
list[list[str]]``: ``n`` responses per question, in question order; ``temperature`` 0 means
greedy (then ``n`` must be 1). The prompt (system turn, optional one-shot exchange) is the
backend's ``PromptConfig``, the same record the embedded trainer prompts with, so a trained
model is evaluated exactly as it was trained.

- ``LocalHFBackend`` reuses the embedded trainer's loader (``embedded.model``: a HF
  directory, a GGUF file, or the bundled SmolLM2 through its cached converted copy) and its
  batched sampler (``embedded.rollout.sample``, shared prefill over the n samples).
- ``OpenAIBackend`` talks to any OpenAI-compatible ``/v1/chat/completions`` server
  (vLLM, ``trtllm-serve``, NIM) through the project's client (``nemo_coreward.llm``), adding
  bounded concurrency (a thread pool over questions), retries with exponential backoff on
  transient errors (connection failures, timeouts, HTTP 429/5xx) and a per-request timeout.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from nemo_coreward.embedded.prompts import PromptConfig, messages
from nemo_coreward.llm.client import OpenAIChatBackend, RetryableError
from nemo_coreward.llm.client import SamplingConfig as HTTPSampling
from nemo_coreward.retry import call_with_retries


class GenerationBackend(Protocol):
    def generate(self, questions: Sequence[str], n: int, temperature: float,
                 max_new_tokens: int) -> list[list[str]]:
        """``n`` responses per question (temperature 0: greedy, n = 1)."""


def _check_request(n: int, temperature: float, max_new_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0 and n != 1:
        raise ValueError(f"greedy decoding (temperature 0) gives one response, asked for {n}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


class LocalHFBackend:
    """A Hugging Face causal LM in this process, through the embedded trainer's code.

    ``batch_size`` bounds the sequences per ``generate`` call (questions x n); the sampler
    splits larger requests. ``top_p``/``top_k`` apply to sampled (temperature > 0) calls.
    """

    def __init__(self, model: Any, tokenizer: Any, *, prompt: PromptConfig = PromptConfig(),
                 top_p: float = 1.0, top_k: int = 0, batch_size: int = 64,
                 max_prompt_tokens: int = 2048) -> None:
        self.model, self.tokenizer, self.prompt = model, tokenizer, prompt
        self.top_p, self.top_k = top_p, top_k
        self.batch_size, self.max_prompt_tokens = batch_size, max_prompt_tokens
        if self.tokenizer.padding_side != "left":
            self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def from_path(cls, path: str | None, *, device: str = "auto", threads: int = 2,
                  cache_dir: str | None = None, **kwargs: Any) -> LocalHFBackend:
        """Load ``path`` (HF directory, ``.gguf`` file, or None for the bundled SmolLM2)
        with the trainer's loader; bfloat16 weights on CUDA, float32 on CPU, freed CPU
        memory kept for reuse as in training (``nemo_coreward.heap``)."""
        import torch

        from nemo_coreward.embedded.model import (
            ModelConfig,
            load_causal_lm,
            load_tokenizer,
            model_dir,
        )
        from nemo_coreward.heap import keep_freed_memory

        cfg = ModelConfig(path=path, device=device, threads=threads, cache_dir=cache_dir)
        if cfg.resolved_device() != "cpu":
            cfg = ModelConfig(path=path, device=device, threads=threads, cache_dir=cache_dir,
                              precision="bf16-true")
        keep_freed_memory()
        if threads:
            torch.set_num_threads(threads)
        directory = model_dir(cfg)
        model = load_causal_lm(directory, cfg).to(cfg.resolved_device()).eval()
        return cls(model, load_tokenizer(directory), **kwargs)

    def generate(self, questions: Sequence[str], n: int, temperature: float,
                 max_new_tokens: int) -> list[list[str]]:
        from nemo_coreward.embedded.prompts import render
        from nemo_coreward.embedded.rollout import SamplingConfig, encode_prompts, sample

        _check_request(n, temperature, max_new_tokens)
        if not questions:
            return []
        greedy = temperature == 0
        cfg = SamplingConfig(n=n, temperature=temperature if not greedy else 1.0,
                             top_p=self.top_p, top_k=self.top_k, max_new_tokens=max_new_tokens,
                             max_prompt_tokens=self.max_prompt_tokens,
                             batch_size=self.batch_size)
        device = next(self.model.parameters()).device
        texts = render(self.tokenizer, list(questions), self.prompt)
        ids, mask = encode_prompts(self.tokenizer, texts, self.max_prompt_tokens, device)
        out = sample(self.model, self.tokenizer, ids, mask, cfg, n=n, greedy=greedy)
        return [out.texts[i * n:(i + 1) * n] for i in range(len(questions))]


@dataclass(frozen=True)
class HTTPConfig:
    """Client settings: ``concurrency`` questions in flight at once; each request retried
    ``retries`` times after transient errors, waiting ``backoff_s`` then doubling (capped
    at ``backoff_max_s``); ``timeout_s`` bounds each socket operation of a request.
    ``max_n`` caps completions per request for servers without the ``n`` field."""

    concurrency: int = 8
    retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    timeout_s: float = 600.0
    top_p: float = 1.0
    max_n: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


class OpenAIBackend:
    """Chat completions at ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``) for ``model``."""

    def __init__(self, base_url: str, model: str, *, prompt: PromptConfig = PromptConfig(),
                 config: HTTPConfig = HTTPConfig(), api_key: str | None = None) -> None:
        self.client = OpenAIChatBackend(base_url, model, api_key=api_key,
                                        timeout_s=config.timeout_s, max_n=config.max_n)
        self.prompt, self.config = prompt, config

    def _one(self, question: str, sampling: HTTPSampling, n: int) -> list[str]:
        c = self.config
        return call_with_retries(
            lambda: self.client.generate(messages(question, self.prompt), sampling, n),
            retry_on=RetryableError, retries=c.retries, backoff_s=c.backoff_s,
            backoff_max_s=c.backoff_max_s,
        )

    def generate(self, questions: Sequence[str], n: int, temperature: float,
                 max_new_tokens: int) -> list[list[str]]:
        _check_request(n, temperature, max_new_tokens)
        sampling = HTTPSampling(temperature=temperature,
                                top_p=1.0 if temperature == 0 else self.config.top_p,
                                max_tokens=max_new_tokens, seed=self.config.seed)
        workers = min(self.config.concurrency, max(1, len(questions)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval-http") as pool:
            return list(pool.map(lambda q: self._one(q, sampling, n), questions))
