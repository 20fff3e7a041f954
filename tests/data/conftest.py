"""A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted completions.

The script is chosen by a keyword in the question, so one server serves every case:

GOOD      a valid result block; the rewrite keeps the question's numbers, new wording
DELAY     GOOD after 0.1 s (concurrency and kill-and-resume tests)
MALFORMED prose without the result markers
COPY      the original question back as the rewrite
NONUM     a rewrite that drops the question's numbers
FLAKY     HTTP 503 on the first request for that question, then GOOD
SLOW      the first request sleeps past the client's timeout, then GOOD
BADREQ    HTTP 400 (a request the server refuses)

Solve requests (system turn = the \\boxed{} instruction) answer \\boxed{7}, or \\boxed{8}
when the text contains "WRONG".
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nemo_coreward.data.rephrase.prompt import SOLVE_SYSTEM


class ScriptedLLM:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter = Counter()
        self.requests: list[dict] = []
        self.inflight = 0
        self.max_inflight = 0

    def completion(self, question: str, count: int) -> str:
        numbers = re.findall(r"\d+", question)
        if "MALFORMED" in question:
            return "Sure! Here is a new version of the problem, told differently."
        if "COPY" in question:
            rewrite = question
        elif "NONUM" in question:
            rewrite = "Somebody counts some things and then a few more; how many are there?"
        else:
            rewrite = (f"In a village market, a trader tallies {' and '.join(numbers)} crates "
                       f"from two carts (variant {count}). What total does the trader get?")
        return f"### RESULT_START\nORIGINAL:\n{question}\nREWRITE:\n{rewrite}\n### RESULT_END"

    def handle(self, body: dict) -> tuple[int, dict | str, float]:
        messages = body["messages"]
        text = messages[-1]["content"]
        n = int(body.get("n", 1))
        if messages[0]["role"] == "system" and messages[0]["content"] == SOLVE_SYSTEM:
            answer = "8" if "WRONG" in text else "7"
            contents = [f"Working it out, the result is \\boxed{{{answer}}}."] * n
            return 200, _chat(contents), 0.0
        question = text.rsplit("\n\n", 1)[-1]
        with self.lock:
            self.calls[question] += 1
            count = self.calls[question]
        if "BADREQ" in question:
            return 400, "unknown model", 0.0
        if "FLAKY" in question and count == 1:
            return 503, "overloaded", 0.0
        delay = 0.1 if "DELAY" in question else 0.0
        if "SLOW" in question and count == 1:
            delay = 1.5
        contents = [self.completion(question, count * 10 + i) for i in range(n)]
        return 200, _chat(contents), delay


def _chat(contents: list[str]) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
            for i, c in enumerate(contents)
        ],
    }


def _handler(script: ScriptedLLM):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            with script.lock:
                script.inflight += 1
                script.max_inflight = max(script.max_inflight, script.inflight)
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with script.lock:
                    script.requests.append({"path": self.path, "body": body,
                                            "auth": self.headers.get("Authorization")})
                if self.path != "/v1/chat/completions":
                    status, payload, delay = 404, "no such route", 0.0
                else:
                    status, payload, delay = script.handle(body)
                time.sleep(delay)
            finally:  # before the reply goes out: the client may send its next at once
                with script.lock:
                    script.inflight -= 1
            data = (json.dumps(payload) if isinstance(payload, dict) else payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

    return Handler


@pytest.fixture
def llm_server():
    script = ScriptedLLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
