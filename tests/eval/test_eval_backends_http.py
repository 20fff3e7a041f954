"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import time

import pytest

from nemo_coreward.data.rephrase.backends import BackendError, RetryableError
from nemo_coreward.embedded.prompts import PAPER_SYSTEM, PromptConfig
from nemo_coreward.eval.backends import HTTPConfig, OpenAIBackend

FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05}


def echo(question: str, temperature: float, index: int) -> str:
    return f"{question} t={temperature} #{index}"


def test_n_responses_per_question_in_order(chat_server):
    server = chat_server(echo)
    backend = OpenAIBackend(server.base_url, "m", config=HTTPConfig(concurrency=3, **FAST))
    questions = [f"q{i}" for i in range(7)]
    out = backend.generate(questions, 3, 0.8, 32)
    assert out == [[f"q{i} t=0.8 #{j}" for j in range(3)] for i in range(7)]
    body = server.requests[0]
    assert body["model"] == "m" and body["max_tokens"] == 32 and body["n"] == 3
    assert body["messages"][0] == {"role": "system", "content": PAPER_SYSTEM}


def test_greedy_sends_temperature_zero_and_one_shot_prompt(chat_server):
    server = chat_server(echo)
    prompt = PromptConfig(system="S", example_question="EQ", example_answer="EA")
    backend = OpenAIBackend(server.base_url, "m", prompt=prompt, config=HTTPConfig(**FAST))
    assert backend.generate(["q"], 1, 0.0, 8) == [["q t=0.0 #0"]]
    roles = [(m["role"], m["content"]) for m in server.requests[0]["messages"]]
    assert roles == [("system", "S"), ("user", "EQ"), ("assistant", "EA"), ("user", "q")]
    assert server.requests[0]["temperature"] == 0.0
    with pytest.raises(ValueError, match="greedy"):
        backend.generate(["q"], 2, 0.0, 8)


def test_concurrency_is_bounded(chat_server):
    server = chat_server(echo, delay_s=0.15)
    backend = OpenAIBackend(server.base_url, "m", config=HTTPConfig(concurrency=2, **FAST))
    started = time.monotonic()
    backend.generate([f"q{i}" for i in range(6)], 1, 0.5, 8)
    elapsed = time.monotonic() - started
    assert server.max_inflight == 2
    assert elapsed >= 3 * 0.15  # 6 requests, 2 at a time


def test_retries_after_503_with_backoff(chat_server):
    server = chat_server(echo)
    backend = OpenAIBackend(server.base_url, "m", config=HTTPConfig(retries=2, **FAST))
    assert backend.generate(["FLAKY q"], 1, 0.5, 8) == [["FLAKY q t=0.5 #0"]]
    assert server.calls["FLAKY q"] == 2
    no_retry = OpenAIBackend(server.base_url, "m", config=HTTPConfig(retries=0, **FAST))
    with pytest.raises(RetryableError, match="503"):
        no_retry.generate(["FLAKY other"], 1, 0.5, 8)


def test_timeout_is_retried(chat_server):
    server = chat_server(echo, slow_s=1.0)
    cfg = HTTPConfig(retries=1, timeout_s=0.3, **FAST)
    backend = OpenAIBackend(server.base_url, "m", config=cfg)
    assert backend.generate(["SLOW q"], 1, 0.5, 8) == [["SLOW q t=0.5 #0"]]
    assert server.calls["SLOW q"] == 2
    cfg = HTTPConfig(retries=0, timeout_s=0.3, **FAST)
    with pytest.raises(RetryableError, match="timed out"):
        OpenAIBackend(server.base_url, "m", config=cfg).generate(["SLOW r"], 1, 0.5, 8)


def test_client_errors_are_not_retried(chat_server):
    server = chat_server(echo)
    backend = OpenAIBackend(server.base_url, "m", config=HTTPConfig(retries=3, **FAST))
    with pytest.raises(BackendError, match="400"):
        backend.generate(["BADREQ"], 1, 0.5, 8)
    assert server.calls["BADREQ"] == 1


def test_unreachable_server_fails_after_retries():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m", config=HTTPConfig(retries=1, **FAST))
    with pytest.raises(RetryableError, match="cannot reach"):
        backend.generate(["q"], 1, 0.5, 8)
