"""The tensor contract without a server: encode -> decode round trips, and every
malformed request or reply is refused with a message naming the tensor and the row."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nemo_coreward.reward import RewardConfig, Rollout, score_rollouts
from nemo_coreward.server.protocol import (
    INPUTS,
    OUTPUTS,
    Limits,
    ProtocolError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

from .conftest import assert_same, make_step


def roundtrip(rollouts, config=RewardConfig(), teacher=None, limits=Limits(), send_answers=False):
    inputs, params = encode_request(rollouts, config, teacher, send_answers=send_answers)
    return inputs, decode_request(inputs, params, limits)


def test_every_field_survives_the_wire():
    rollouts = [
        Rollout(7, 0, "ünïcode \\boxed{½}", ground_truth="", self_certainty=0.5, entropy=None),
        Rollout(7, 1, "", ground_truth=None, self_certainty=None, entropy=1.25),
        Rollout("x y", 3, "no box\n\x00 nul", ground_truth="3"),
    ]
    teacher = [Rollout(7, 0, "\\boxed{1}"), Rollout("x y", 3, "\\boxed{3}")]
    config = RewardConfig("co_rewarding_ii", "normalized", ("answer_is", "last_number"), 0.25)
    inputs, req = roundtrip(rollouts, config, teacher)
    # pair ids travel as text; everything else comes back exactly
    assert req.rollouts == [Rollout("7", 0, rollouts[0].response, "", 0.5, None),
                            Rollout("7", 1, "", None, None, 1.25),
                            Rollout("x y", 3, rollouts[2].response, "3")]
    assert req.teacher == [Rollout("7", 0, "\\boxed{1}"), Rollout("x y", 3, "\\boxed{3}")]
    assert req.config == config
    assert req.pair_ids == [b"7", b"7", b"x y"] and req.sides == [0, 1, 3]
    assert set(inputs) == {s.name for s in INPUTS} - {"answer"}
    assert all(a.shape == (5, 1) for a in inputs.values())


@pytest.mark.parametrize("reward", ["co_reward", "majority", "ground_truth", "self_certainty"])
def test_answers_extracted_by_the_client_score_as_whole_responses(reward):
    """The client may send answers instead of responses: same scores, same metrics,
    a fraction of the bytes; fallbacks are applied by the client."""
    step = [Rollout(r.pair_id, r.side, r.response + " The answer is 7", r.ground_truth,
                    self_certainty=0.25 * i)
            for i, r in enumerate(make_step(3, 4, seed=6))]
    step.append(Rollout("q0", 0, "no box; answer is 3", step[0].ground_truth, self_certainty=0.5))
    config = RewardConfig(reward, "normalized", ("answer_is",))
    full, _ = encode_request(step, config)
    inputs, req = roundtrip(step, config, send_answers=True)
    assert "response" not in inputs and "response" in full
    assert [a.decode() for a in inputs["answer"][:, 0]][-1] == "3"
    # 25 rollouts: 23 boxed ones are a 56-character frame around their boxed form (112
    # characters of forms in all), one is "I could not finish. The answer is 7" (35, answer
    # "7" by the fallback), one "no box; answer is 3" (19): the answers are 112 + 2 bytes,
    # the responses 23 * 56 + 112 + 35 + 19 = 1454.
    assert sum(map(len, inputs["answer"][:, 0])) == 114
    assert sum(map(len, full["response"][:, 0])) == 1454
    reply = encode_response(req, score_rollouts(req.rollouts, req.config))
    assert_same(decode_response(reply, inputs), score_rollouts(step, config))


def test_a_reply_with_other_answers_than_sent_is_refused():
    inputs, req = roundtrip(make_step(2, 2, seed=4), send_answers=True)
    reply = encode_response(req, score_rollouts(req.rollouts, req.config))
    reply["answer"][0, 0] = b"not what was sent"
    with pytest.raises(ProtocolError, match="reply row 0 has answer b'not what was sent'"):
        decode_response(reply, inputs)


@pytest.mark.parametrize("send_answers", [False, True])
def test_text_that_is_not_unicode_is_repaired_and_counted(send_answers):
    """A lone surrogate (JSON "\\udbf9") in a response, an answer or a ground truth is
    replaced by U+FFFD on the way, as in process, and counted in text_repairs."""
    step = [Rollout("q", 0, "so \\boxed{1\udbf9}", ground_truth="1\udbf9"),
            Rollout("q", 0, "so \\boxed{2}", ground_truth="1\udbf9"),
            Rollout("q", 1, "\ud800 so \\boxed{1\udbf9}", ground_truth="1\udbf9"),
            Rollout("q", 1, "fine \\boxed{1\ufffd}", ground_truth="1\udbf9")]
    config = RewardConfig("co_reward", "normalized")
    want = score_rollouts(step, config)
    assert want.scores[0].answer == "1\ufffd" and want.rewards == [1.0, 0.0, 1.0, 1.0]
    assert want.metrics["text_repairs"] == 6  # 2 responses + 4 ground truths
    inputs, req = roundtrip(step, config, send_answers=send_answers)
    reply = encode_response(req, score_rollouts(req.rollouts, req.config))
    assert_same(decode_response(reply, inputs), want)


def test_invalid_utf8_on_the_wire_is_repaired_and_counted():
    inputs, params = encode_request(make_step(1, 2, seed=0), RewardConfig())
    inputs["response"][1, 0] = b"\xc3\x28 so \\boxed{\xff7}"
    req = decode_request(inputs, params)
    assert req.rollouts[1].response == "\ufffd( so \\boxed{\ufffd7}" and req.text_repairs == 1
    scored = score_rollouts(req.rollouts, req.config)
    reply = encode_response(req, scored)
    got = decode_response(reply, inputs)
    assert got.scores[1].answer == "\ufffd7"
    assert got.metrics["text_repairs"] == scored.metrics["text_repairs"] + 1 == 1


def test_optional_inputs_are_sent_only_when_used():
    inputs, req = roundtrip(make_step(2, 2, seed=0, ground_truth=False))
    assert set(inputs) == {"pair_id", "side", "response"}
    assert req.teacher == [] and all(r.ground_truth is None for r in req.rollouts)


@pytest.mark.parametrize("reward", ["co_reward", "majority", "ground_truth"])
def test_response_roundtrip_equals_in_process(reward):
    step = make_step(3, 4, seed=2)
    config = RewardConfig(reward, "normalized")
    inputs, req = roundtrip(step, config)
    reply = encode_response(req, score_rollouts(req.rollouts, req.config))
    assert set(reply) == {s.name for s in OUTPUTS}
    assert_same(decode_response(reply, inputs), score_rollouts(step, config))


def test_teacher_rows_get_no_output_rows():
    step = make_step(2, 2, seed=1)
    teacher = [Rollout(r.pair_id, r.side, r.response) for r in step]
    inputs, req = roundtrip(step, RewardConfig("co_rewarding_ii"), teacher)
    reply = encode_response(req, score_rollouts(req.rollouts, req.config, req.teacher))
    assert reply["reward"].shape == (len(step), 1) and inputs["pair_id"].shape == (2 * len(step), 1)
    assert_same(decode_response(reply, inputs),
                score_rollouts(step, RewardConfig("co_rewarding_ii"), teacher))


def test_a_reply_attached_to_the_wrong_rollouts_is_refused():
    step = make_step(2, 2, seed=4)
    inputs, req = roundtrip(step)
    reply = encode_response(req, score_rollouts(req.rollouts, req.config))
    swapped = {k: v.copy() for k, v in reply.items()}
    for name in ("reward", "answer", "echo_pair_id", "echo_side"):
        swapped[name][[0, -1]] = swapped[name][[-1, 0]]
    with pytest.raises(ProtocolError, match="reply row 0 is for pair b'q1' side 1"):
        decode_response(swapped, inputs)
    short = {k: (v[:-1] if k != "metrics" else v) for k, v in reply.items()}
    with pytest.raises(ProtocolError, match="one row per policy rollout"):
        decode_response(short, inputs)
    with pytest.raises(ProtocolError, match="lacks output 'metrics'"):
        decode_response({k: v for k, v in reply.items() if k != "metrics"}, inputs)


def test_metrics_keep_nan_and_exact_floats():
    step = make_step(1, 2, seed=0)
    inputs, req = roundtrip(step)
    scored = score_rollouts(req.rollouts, req.config)
    scored.metrics.update(odd=1 / 3, missing=math.nan)
    reply = encode_response(req, scored)
    got = decode_response(reply, inputs).metrics
    assert got["odd"] == 1 / 3 and math.isnan(got["missing"])
    assert json.loads(reply["metrics"][0])["n_rollouts"] == len(step)


GOOD = make_step(2, 2, seed=0)


def bad(**changes):
    inputs, params = encode_request(GOOD, RewardConfig())
    params = dict(params, **changes.pop("params", {}))
    for k, v in changes.items():
        if v is None:
            inputs.pop(k)
        else:
            inputs[k] = v
    return inputs, params


def column(values, dtype=object):
    arr = np.empty((len(values), 1), dtype=dtype)
    arr[:, 0] = values
    return arr


N = len(GOOD)
CASES = {
    "missing side": (bad(side=None), "missing required input 'side'"),
    "unknown input": (bad(extra=column([b"x"] * N)), "unknown input 'extra'"),
    "int64 side": (bad(side=np.zeros((N, 1), np.int64)),
                   "input 'side': dtype int64 but the contract says int32"),
    "str pair id": (bad(pair_id=np.array([["a"]] * N)),
                    "input 'pair_id': dtype <U1 but the contract says BYTES"),
    "flat shape": (bad(side=np.zeros(N, np.int32)),
                   r"input 'side': shape \(8,\); expected \[N, 1\]"),
    "short column": (bad(response=column([b"x"] * 3)), "'response' has 3 rows but 'pair_id' has 8"),
    "str in bytes": (bad(response=column(["text"] * N)),
                     "'response' row 0: expected bytes, got str"),
    "no texts": (bad(response=None), "exactly one of 'response'"),
    "both texts": (bad(answer=column([b"1"] * N)), "exactly one of 'response'"),
    "str answer": (bad(response=None, answer=column(["1"] * N)),
                   "'answer' row 0: expected bytes, got str"),
    "huge response": (bad(response=column([b"a"] * (N - 1) + [b"b" * 2049])),
                      "'response' row 7: 2049 bytes exceeds the limit of 2048 bytes"),
    "negative side": (bad(side=np.full((N, 1), -1, np.int32)), "'side' row 0: must be >= 0"),
    "role 5": (bad(role=np.full((N, 1), 5, np.int8)),
               "'role' row 0: must be 0 \\(policy\\) or 1 \\(teacher\\)"),
    "mask alone": (bad(ground_truth=None, has_ground_truth=np.ones((N, 1), bool)),
                   "'has_ground_truth' given without 'ground_truth'"),
    "no rows": (bad(**{k: np.empty((0, 1), v.dtype)
                       for k, v in encode_request(GOOD, RewardConfig())[0].items()}),
                "request has 0 rollouts; the server accepts 1..100"),
    "too many rows": (encode_request(make_step(7, 8, seed=0), RewardConfig()),
                      "request has 112 rollouts"),
    "unknown reward": (bad(params={"reward": "nope"}),
                       "request parameter 'reward': unknown reward 'nope'; valid: co_reward"),
    "unknown mode": (bad(params={"equivalence": "fuzzy"}),
                     "'equivalence': unknown mode 'fuzzy'; valid: exact"),
    "bad fallback": (bad(params={"fallbacks": "answer_is,guess"}), "unknown 'guess'"),
    "bad timeout": (bad(params={"timeout_s": "soon"}), "'timeout_s' must be a number, got 'soon'"),
    "zero timeout": (bad(params={"timeout_s": "0"}), "timeout_s must be > 0"),
    "typo parameter": (bad(params={"rewad": "majority"}), "unknown request parameter 'rewad'"),
    "int reward": (bad(params={"reward": 3}), "'reward' must be a string"),
    "bad repairs": (bad(params={"text_repairs": "-1"}), "'text_repairs' must be a count"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_requests_are_refused_with_a_clear_message(case):
    (inputs, params), message = CASES[case]
    with pytest.raises(ProtocolError, match=message):
        decode_request(inputs, params, Limits(max_rollouts=100, max_response_bytes=2048))


def test_teacher_rows_only_is_refused():
    inputs, params = encode_request(GOOD, RewardConfig())
    inputs["role"] = np.ones((N, 1), np.int8)
    with pytest.raises(ProtocolError, match="teacher rows only"):
        decode_request(inputs, params)


@pytest.mark.parametrize("rollouts, message", [
    ([Rollout(3, 0, "a"), Rollout("3", 1, "b")], "pair ids 3 and '3' have the same text form"),
    ([Rollout(1.5, 0, "a")], "pair_id must be a str or an int"),
    ([Rollout(True, 0, "a")], "pair_id must be a str or an int"),
    ([Rollout("p", -1, "a")], r"side must be an integer in \[0, 2\*\*31\)"),
    ([Rollout("p", 0, b"bytes")], "response must be a str"),
    ([Rollout("p", 0, "a", self_certainty=math.nan)], "self_certainty is NaN"),
    ([], "no policy rollouts"),
])
def test_client_side_encoding_refuses_what_cannot_travel(rollouts, message):
    with pytest.raises(ProtocolError, match=message):
        encode_request(rollouts, RewardConfig())


def test_numpy_integer_pair_ids_are_the_same_pair():
    inputs, _ = encode_request([Rollout(np.int64(4), 0, "a"), Rollout(4, 1, "b")], RewardConfig())
    assert list(inputs["pair_id"][:, 0]) == [b"4", b"4"]
