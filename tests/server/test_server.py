"""The real PyTriton server on loopback: parity with in-process scoring, malformed
requests, health endpoints, a crash and restart under a running client, and SIGTERM."""
from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import pytest

from nemo_coreward.reward import RewardConfig, Rollout, score_rollouts
from nemo_coreward.server import RewardClient, RewardRequestError, RewardServerError
from nemo_coreward.server.protocol import MODEL_NAME, encode_request

from .conftest import assert_same, make_step
from .serverproc import ServerProcess, free_ports, http_status

pytestmark = pytest.mark.slow


def teacher_for(step: list[Rollout], seed: int) -> list[Rollout]:
    """Teacher rollouts on the same (pair, side) groups, with different answers."""
    return [Rollout(r.pair_id, r.side, r.response, r.ground_truth)
            for r in make_step(len({r.pair_id for r in step}), 4, seed, ground_truth=False)]


@pytest.fixture(scope="module")
def client(server):
    with RewardClient(server.http_url, retries=2, backoff_s=0.2) as c:
        yield c


@pytest.mark.parametrize("equivalence", ["exact", "normalized"])
@pytest.mark.parametrize("reward", ["co_reward", "majority", "ground_truth", "co_rewarding_ii"])
def test_server_equals_in_process(client, reward, equivalence):
    step = make_step(pairs=6, n=8, seed=11)
    teacher = teacher_for(step, seed=12) if reward == "co_rewarding_ii" else None
    config = RewardConfig(reward, equivalence)
    want = score_rollouts(step, config, teacher=teacher)
    got = client.score(step, config, teacher=teacher)
    assert_same(got, want)
    assert got.rewards != [0.0] * len(step) and got.rewards != [1.0] * len(step)


@pytest.mark.parametrize("reward", ["co_reward", "co_rewarding_ii"])
def test_full_text_requests_equal_in_process(server, reward):
    step = make_step(pairs=5, n=4, seed=13)
    teacher = teacher_for(step, seed=14) if reward == "co_rewarding_ii" else None
    config = RewardConfig(reward, "math_verify", ("answer_is",))
    with RewardClient(server.http_url, retries=1, send_answers=False) as c:
        assert_same(c.score(step, config, teacher=teacher),
                    score_rollouts(step, config, teacher=teacher))


@pytest.mark.parametrize("send_answers", [True, False])
def test_text_that_is_not_unicode_is_repaired_not_refused(server, send_answers):
    step = [Rollout(r.pair_id, r.side, r.response.replace("So", "So \udbf9"), r.ground_truth)
            for r in make_step(pairs=2, n=4, seed=15)]
    step[0] = Rollout("q0", 0, "so \\boxed{1\udbf9}", step[0].ground_truth)
    config = RewardConfig("co_reward", "normalized")
    want = score_rollouts(step, config)
    # 2 pairs x 2 sides x 4 = 16 responses; the seeded step makes one of them "I could not
    # finish." (no "So"), so 15 carry the lone surrogate (step[0]'s replacement among them).
    repaired = sum("\udbf9" in r.response for r in step)
    assert want.scores[0].answer == "1\ufffd" and want.metrics["text_repairs"] == repaired == 15
    with RewardClient(server.http_url, retries=1, send_answers=send_answers) as c:
        assert_same(c.score(step, config), want)


def test_grpc_and_float32_token_statistics(server):
    step = [Rollout(r.pair_id, r.side, r.response, r.ground_truth,
                    self_certainty=float(np.float32(0.1 * i)),
                    entropy=float(np.float32(2 - 0.05 * i)))
            for i, r in enumerate(make_step(pairs=3, n=4, seed=5))]
    with RewardClient(server.grpc_url, retries=1) as c:
        for name in ("self_certainty", "entropy", "co_reward"):
            config = RewardConfig(name, "normalized")
            assert_same(c.score(step, config), score_rollouts(step, config))


def test_async_requests_are_served_concurrently_and_correctly(client):
    steps = [make_step(pairs=8, n=8, seed=s, tag=f"s{s}-") for s in range(4)]
    futures = [client.score_async(s, RewardConfig("co_reward", "normalized")) for s in steps]
    for step, fut in zip(steps, futures):
        assert_same(fut.result(timeout=120),
                    score_rollouts(step, RewardConfig("co_reward", "normalized")))


def test_health_endpoints_and_unbatched_model(server):
    base = server.http_url
    assert http_status(f"{base}/v2/health/live") == 200
    assert http_status(f"{base}/v2/health/ready") == 200
    assert http_status(f"{base}/v2/models/{MODEL_NAME}/ready") == 200
    with urllib.request.urlopen(f"{base}/v2/models/{MODEL_NAME}/config", timeout=5) as r:
        config = json.load(r)
    assert config["max_batch_size"] == 0  # a request is never split or merged
    assert "dynamic_batching" not in config


GOOD = make_step(pairs=2, n=3, seed=3)
GOOD_INPUTS, GOOD_PARAMS = encode_request(GOOD, RewardConfig())


def _replace(**changes):
    inputs = dict(GOOD_INPUTS)
    for k, v in changes.items():
        if v is None:
            inputs.pop(k)
        else:
            inputs[k] = v
    return inputs


def _rows(values, dtype=object):
    arr = np.empty((len(values), 1), dtype=dtype)
    arr[:, 0] = values
    return arr


N = len(GOOD)
MALFORMED = {
    "missing input": (_replace(side=None), GOOD_PARAMS, "missing required input 'side'"),
    "wrong dtype": (_replace(side=GOOD_INPUTS["side"].astype(np.int64)), GOOD_PARAMS, "INT32"),
    "float pair ids": (_replace(pair_id=np.zeros((N, 1), np.float32)), GOOD_PARAMS, "BYTES"),
    "mismatched lengths": (_replace(response=GOOD_INPUTS["response"][:3]), GOOD_PARAMS,
                           "'response' has 3 rows but 'pair_id' has 12"),
    "10 MB response": (_replace(response=_rows([b"x" * 10_000_000] + [b"y"] * (N - 1))),
                       GOOD_PARAMS, "'response' row 0: 10000000 bytes exceeds the limit"),
    "response and answer": (_replace(answer=_rows([b"1"] * N)), GOOD_PARAMS, "exactly one of"),
    "one side missing": (encode_request([r for r in GOOD if r.side == 0 or r.pair_id != "q1"],
                                        RewardConfig(name="majority"))[0],
                         GOOD_PARAMS, "pair 'q1' has rollouts for side 0 only"),
    "bad role": (_replace(role=np.full((N, 1), 2, np.int8)), GOOD_PARAMS, "'role' row 0"),
    "unknown reward": (GOOD_INPUTS, {**GOOD_PARAMS, "reward": "nope"}, "unknown reward 'nope'"),
    "unknown parameter": (GOOD_INPUTS, {**GOOD_PARAMS, "rewrd": "x"}, "unknown request parameter"),
    "teacher rows only": (_replace(role=np.ones((N, 1), np.int8)), GOOD_PARAMS,
                          "teacher rows only"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_an_error_and_the_server_keeps_serving(server, client, case):
    from pytriton.client import ModelClient
    from pytriton.client.exceptions import PyTritonClientInferenceServerError

    inputs, params, message = MALFORMED[case]
    with ModelClient(server.http_url, MODEL_NAME, inference_timeout_s=60) as raw, \
            pytest.raises(PyTritonClientInferenceServerError, match=message.replace("(", r"\(")):
        raw.infer_sample(parameters=params, **inputs)
    assert_same(client.score(GOOD, RewardConfig()), score_rollouts(GOOD, RewardConfig()))


def test_invalid_utf8_is_repaired_and_counted(server):
    from pytriton.client import ModelClient

    inputs = _replace(response=_rows([b"\\boxed{1}"] * 5 + [b"\xff\xfe \\boxed{\xff1}"]
                                     + [b"ok"] * (N - 6)))
    with ModelClient(server.http_url, MODEL_NAME, inference_timeout_s=60) as raw:
        out = raw.infer_sample(parameters=GOOD_PARAMS, **inputs)
    assert out["answer"][5, 0] == "\ufffd1".encode()
    assert json.loads(out["metrics"][0])["text_repairs"] == 1


def test_client_raises_refusals_without_retrying(client):
    before = client.failed_attempts
    with pytest.raises(RewardRequestError, match="pair 'q0' has rollouts for side 0 only"):
        client.score([r for r in GOOD if r.side == 0], RewardConfig("co_reward"))
    assert client.failed_attempts == before


def test_crash_and_restart_under_a_running_client_then_sigterm(tmp_path):
    """Kill -9 the server (all its processes) while a client loops; restart it on the
    same ports. Every
    request must come back complete and attached to the right rollouts. Then SIGTERM
    must stop the restarted server cleanly within a few seconds."""
    srv = ServerProcess(tuple(free_ports(3)), tmp_path / "serve.log")
    srv.start()
    steps = [make_step(pairs=4, n=4, seed=100 + i, tag=f"r{i}-") for i in range(14)]
    config = RewardConfig("co_reward", "normalized")
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def loop():
        with RewardClient(srv.http_url, retries=30, backoff_s=0.2, max_backoff_s=1.0,
                          connect_timeout_s=5, timeout_s=60) as c:
            try:
                for i, step in enumerate(steps):  # back to back: the crash hits mid-request
                    results[i] = c.score(step, config)  # or while connecting
            except BaseException as e:  # surfaced by the assertion below
                errors.append(e)

    thread = threading.Thread(target=loop)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while len(results) < 3 and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        assert len(results) >= 3, (errors, srv.tail())
        srv.crash()
        crashed_at = len(results)
        assert srv.session_processes() == []
        srv.start()
        thread.join(timeout=180)
        assert not thread.is_alive()
        assert not errors, errors
        assert crashed_at < len(steps), "the crash happened after the client had finished"
        # (failed_attempts may be 0: a request sent during the restart waits for the model
        # to be ready instead of failing; either way nothing may be lost or misplaced.)
        for i, step in enumerate(steps):
            assert_same(results[i], score_rollouts(step, config))

        code, seconds = srv.terminate()
        assert code == 0, srv.tail()
        assert seconds < 15, f"SIGTERM took {seconds:.1f} s"
        assert srv.wait_session_gone(30) == []
        assert http_status(f"{srv.http_url}/v2/health/live") is None
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill_group()


def test_later_requests_skip_the_readiness_round_trips(server):
    """After one answered request the model's configuration is reused, so a request is
    one round trip; a failed attempt forgets it, so the next one waits for the model."""
    with RewardClient(server.http_url, retries=0) as c:
        assert c._model_config is None
        c.score(GOOD, RewardConfig())
        assert c._model_config is not None
        assert_same(c.score(GOOD, RewardConfig()), score_rollouts(GOOD, RewardConfig()))
        known = c._model_config
    with RewardClient(f"http://127.0.0.1:{free_ports(1)[0]}", retries=0, connect_timeout_s=1) as c:
        c._model_config = known  # as if this server had answered before and then gone
        with pytest.raises(RewardServerError):
            c.score(GOOD, RewardConfig())
        assert c._model_config is None
