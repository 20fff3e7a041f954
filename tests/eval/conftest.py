"""Fixtures of the eval suite: the suite's tiny Llama loaded once, a chat server, runs.

``tiny_model`` and ``tiny_tokenizer`` are the suite's one tiny model (``tiny_model_dir`` in
tests/conftest.py: a random two-layer Llama with SmolLM2's tokenizer and chat template),
loaded with the embedded trainer's loader as ``coreward eval`` loads a model, so the local
backend runs the real prompt rendering and sampling code without any download.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


class ScriptedChatServer:
    """A real OpenAI-compatible chat-completions server on 127.0.0.1 (a free port).

    ``answer(question, temperature, index)`` gives the content of completion ``index``;
    keywords in the question script failures: ``FLAKY`` answers HTTP 503 to the first
    request for that question, ``SLOW`` sleeps ``slow_s`` on the first request, ``BADREQ``
    answers HTTP 400, and every request waits ``delay_s`` (to observe concurrency). A request
    is in flight (``inflight``, ``max_inflight``) until its reply is ready.
    """

    def __init__(self, answer, delay_s: float = 0.0, slow_s: float = 1.0) -> None:
        import threading
        from collections import Counter
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answer, self.delay_s, self.slow_s = answer, delay_s, slow_s
        self.lock = threading.Lock()
        self.calls: Counter = Counter()
        self.requests: list[dict] = []
        self.inflight = self.max_inflight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                import json

                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                question = body["messages"][-1]["content"]
                with server.lock:
                    server.requests.append(body)
                    server.calls[question] += 1
                    first = server.calls[question] == 1
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    code, payload = self._reply(body, question, first)
                finally:  # before the reply goes out: the client may send its next at once
                    with server.lock:
                        server.inflight -= 1
                self._send(code, payload)

            def _reply(self, body, question, first):
                import time

                time.sleep(server.delay_s)
                if "BADREQ" in question:
                    return 400, {"error": "bad request"}
                if "FLAKY" in question and first:
                    return 503, {"error": "overloaded"}
                if "SLOW" in question and first:
                    time.sleep(server.slow_s)
                choices = [{"index": i, "message": {"role": "assistant", "content":
                            server.answer(question, body["temperature"], i)}}
                           for i in range(body.get("n", 1))]
                return 200, {"choices": choices}

            def _send(self, code, payload):
                import json

                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


STEPS = 30


def _make_run(root: Path, name: str, reward: str, collapse: bool, keys_missing=()) -> Path:
    """A run directory as the embedded trainer writes it, with constructed curves: a
    collapsing run (majority up, pseudo-label accuracy down) or a learning one."""
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(f"name: {name}\nreward:\n  name: {reward}\n")
    lines = []
    for step in range(1, STEPS + 1):
        t = step / STEPS
        row = {
            "step": step,
            "reward_mean": 0.2 + 0.7 * t,
            "majority_ratio": 0.3 + 0.6 * t,
            "twin_agreement": 0.2 + 0.5 * t,
            "shared_answer_rate": 0.1 + 0.2 * t,
            "pseudo_label_accuracy": (0.6 - 0.5 * t) if collapse else (0.3 + 0.5 * t),
            "reward_accuracy": 0.5 + 0.2 * np.sin(step),
            "answer_entropy": 1.5 - t,
            "empty_answer_rate": 0.8 * (1 - t),
            "response_length": 40 - 10 * t,
            "kl_loss": 0.001 * step,
            "lr": 1e-5,
        }
        for key in keys_missing:
            row.pop(key, None)
        lines.append(json.dumps(row))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    after = 0.1 if collapse else 0.7
    (run / "eval.json").write_text(json.dumps({"before": {"accuracy": 0.3, "boxed_rate": 0.2},
                                               "after": {"accuracy": after, "boxed_rate": 1.0}}))
    return run


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path):
    from nemo_coreward.embedded.model import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    """float32, eval mode; shared by the session, so tests only generate with it."""
    from nemo_coreward.embedded.model import ModelConfig, load_causal_lm

    return load_causal_lm(tiny_model_dir, ModelConfig()).eval()


@pytest.fixture
def make_run():
    """``make_run(root, name, reward, collapse, keys_missing=())``: a constructed run dir
    of ``STEPS`` steps (``STEPS`` is also an attribute of the returned function)."""
    _make_run.STEPS = STEPS
    return _make_run


@pytest.fixture
def chat_server():
    """Factory: ``chat_server(answer, delay_s=...)`` starts a server, closed after the test."""
    servers = []

    def start(answer, **kwargs):
        servers.append(ScriptedChatServer(answer, **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
