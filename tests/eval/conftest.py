"""Fixtures of the eval suite: a tiny Llama, a byte-level tokenizer, a chat server, runs.

The tokenizer is built from the ``tokenizers`` library in memory (byte-level BPE with no
merges: one token per byte, so any text round-trips), with a minimal chat template, so
the local backend runs the real prompt rendering and sampling code without any download.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for special in ("<pad>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"):
        vocab[special] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>",
                                  additional_special_tokens=["<|system|>", "<|user|>",
                                                             "<|assistant|>"])
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def make_tiny_model(tiny_tokenizer, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=tiny_tokenizer.pad_token_id,
                         eos_token_id=tiny_tokenizer.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(config).eval()


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
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return make_tiny_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model, tiny_tokenizer, tmp_path_factory):
    """The tiny model and tokenizer saved as a Hugging Face directory."""
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_model.save_pretrained(str(path))
    tiny_tokenizer.save_pretrained(str(path))
    return path


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
