"""The ``co_reward`` tensor contract, in one place for the server, the client and the docs.

A request carries whole groups: every rollout of every side of every pair in the step
(and, for Co-rewarding-II, the teacher's rollouts), because a Co-Reward label is voted in
*another* group. The model therefore runs with Triton batching OFF (``max_batch_size: 0``):
each tensor is ``[N, 1]`` with N the rollouts of the request, and Triton never merges or
splits requests, so a 2,048-rollout step is always scored as one unit.

Inputs (N rows; row i of every tensor describes rollout i):

    pair_id          BYTES   [N, 1]  required  UTF-8 text; rows with equal text share a pair
    side             INT32   [N, 1]  required  0 = original question, 1..k = rephrasings
    response         BYTES   [N, 1]  one of    UTF-8 response text (the server extracts)
    answer           BYTES   [N, 1]  these     UTF-8 final answer the client extracted
    role             INT8    [N, 1]  optional  0 = policy (default), 1 = teacher
    ground_truth     BYTES   [N, 1]  optional  UTF-8 known answer (metrics, ground_truth reward)
    has_ground_truth BOOL    [N, 1]  optional  false marks a row without one (default: all true)
    self_certainty   FP32    [N, 1]  optional  NaN = missing
    entropy          FP32    [N, 1]  optional  NaN = missing

Request parameters (all optional; strings): ``reward`` (default ``co_reward``),
``equivalence`` (``exact``), ``fallbacks`` (comma-separated, default none), ``timeout_s``
(per symbolic comparison, default ``RewardConfig``'s), ``text_repairs`` (texts the
client already repaired, added to the reply's count).

A step's responses are ~19 MB; their answers a few kB. ``RewardClient`` therefore
extracts the answers itself, with the same code the server would run
(``reward.graded.final_answer``), and sends ``answer`` instead of ``response``.
Text that is not valid Unicode is repaired with U+FFFD on either side, never refused;
the reply's ``text_repairs`` metric counts the texts repaired.

Outputs (M rows, one per policy row, in request order; teacher rows get none):

    reward        FP32    [M, 1]
    answer        BYTES   [M, 1]   extracted final answer ("" = none)
    label         BYTES   [M, 1]   pseudo label (or ground truth) compared with
    failure       BYTES   [M, 1]   "" or no_answer / empty_label / grader_timeout
    echo_pair_id  BYTES   [M, 1]   the row's pair_id, so a client can check attachment
    echo_side     INT32   [M, 1]   the row's side
    metrics       BYTES   [1]      JSON object of collapse metrics for the request

Everything here is pure numpy: encode and decode both ways, with validation that names
the tensor and the row.
"""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nemo_coreward.answers import MODES
from nemo_coreward.answers.text import decode_utf8, repair_text
from nemo_coreward.reward.graded import final_answer
from nemo_coreward.reward.rewards import REWARDS
from nemo_coreward.reward.scoring import RewardConfig
from nemo_coreward.reward.types import Rollout, Score, ScoredBatch

MODEL_NAME = "co_reward"
POLICY, TEACHER = 0, 1
# Prefixes of the server's error messages: the client retries the second, never the first.
BAD_REQUEST = "co_reward bad request"
UNAVAILABLE = "co_reward unavailable"
PARAMETERS = ("reward", "equivalence", "fallbacks", "timeout_s", "text_repairs")
MAX_PAIR_ID_BYTES = 1024


class ProtocolError(ValueError):
    """A request or reply that breaks the contract; the message names tensor and row."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: type  # np.object_ holds bytes
    optional: bool = False


INPUTS = (
    TensorSpec("pair_id", np.object_),
    TensorSpec("side", np.int32),
    TensorSpec("response", np.object_, optional=True),
    TensorSpec("answer", np.object_, optional=True),
    TensorSpec("role", np.int8, optional=True),
    TensorSpec("ground_truth", np.object_, optional=True),
    TensorSpec("has_ground_truth", np.bool_, optional=True),
    TensorSpec("self_certainty", np.float32, optional=True),
    TensorSpec("entropy", np.float32, optional=True),
)
ROW_OUTPUTS = (
    TensorSpec("reward", np.float32),
    TensorSpec("answer", np.object_),
    TensorSpec("label", np.object_),
    TensorSpec("failure", np.object_),
    TensorSpec("echo_pair_id", np.object_),
    TensorSpec("echo_side", np.int32),
)
METRICS = TensorSpec("metrics", np.object_)
OUTPUTS = ROW_OUTPUTS + (METRICS,)
_INPUT_SPECS = {s.name: s for s in INPUTS}


@dataclass(frozen=True)
class Limits:
    """What a server accepts; larger requests are refused before any grading."""

    max_rollouts: int = 65536
    max_response_bytes: int = 262144


@dataclass(frozen=True)
class ScoreRequest:
    """A decoded request: what ``score_rollouts`` is called with, plus the echo keys."""

    rollouts: list[Rollout]
    teacher: list[Rollout]
    config: RewardConfig
    pair_ids: list[bytes]  # wire pair ids of the policy rows, in order
    sides: list[int]
    text_repairs: int = 0  # texts repaired by the decoder or, before sending, the client


# ---------------------------------------------------------------- client side ---------
def _column(values: Sequence[Any], dtype: type) -> np.ndarray:
    arr = np.empty((len(values), 1), dtype=dtype)
    arr[:, 0] = values
    return arr


def _wire_pair_id(pair_id: object, where: str) -> bytes:
    if isinstance(pair_id, bool) or not isinstance(pair_id, (str, numbers.Integral)):
        raise ProtocolError(f"{where}: pair_id must be a str or an int to travel to the "
                            f"server, got {pair_id!r}")
    return str(int(pair_id) if isinstance(pair_id, numbers.Integral) else pair_id).encode()


def _str(text: object, what: str, where: str) -> str:
    if not isinstance(text, str):
        raise ProtocolError(f"{where}: {what} must be a str, got {type(text).__name__}")
    return text


def _stat(value: float | None, what: str, where: str) -> float:
    if value is None:
        return math.nan
    if math.isnan(value):
        raise ProtocolError(f"{where}: {what} is NaN; NaN marks a missing value on the wire")
    return float(value)


def encode_request(
    rollouts: Sequence[Rollout], config: RewardConfig, teacher: Sequence[Rollout] | None = None,
    send_answers: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Rollouts -> (inputs, parameters) for one ``co_reward`` request.

    ``send_answers`` extracts each final answer here and sends it instead of the
    response. Pair ids travel as text, so ``3`` and ``"3"`` become the same pair: a batch
    holding both is refused rather than silently merged. Token statistics travel as
    float32. Text that is not valid Unicode is repaired and counted (``text_repairs``).
    """
    rows = [(r, POLICY, f"rollout {i}") for i, r in enumerate(rollouts)]
    rows += [(r, TEACHER, f"teacher rollout {i}") for i, r in enumerate(teacher or ())]
    if not any(role == POLICY for _, role, _ in rows):
        raise ProtocolError("no policy rollouts to score")
    seen: dict[bytes, object] = {}
    pair_ids = []
    for r, _, where in rows:
        wire = _wire_pair_id(r.pair_id, where)
        if seen.setdefault(wire, r.pair_id) != r.pair_id:
            raise ProtocolError(f"{where}: pair ids {seen[wire]!r} and {r.pair_id!r} have the "
                                "same text form and would be merged on the wire")
        pair_ids.append(wire)
    sides = []
    for r, _, where in rows:
        if isinstance(r.side, bool) or not isinstance(r.side, numbers.Integral) \
                or not 0 <= r.side < 2**31:
            raise ProtocolError(f"{where}: side must be an integer in [0, 2**31), got {r.side!r}")
        sides.append(int(r.side))
    repairs = 0

    def utf8(text: str, counted: bool = True) -> bytes:
        nonlocal repairs
        text, repaired = repair_text(text)
        repairs += repaired and counted  # as grading counts: a teacher's ground truth is unused
        return text.encode("utf-8")

    send_answers = send_answers or any(r.answer is not None for r, _, _ in rows)
    texts = []
    for r, _, where in rows:
        _str(r.response if r.answer is None else r.answer, "response", where)
        if send_answers:
            answer, repaired = final_answer(r, config.fallbacks)
            repairs += repaired
            texts.append(answer.encode("utf-8"))
        else:
            texts.append(utf8(r.response))
    inputs = {
        "pair_id": _column(pair_ids, np.object_),
        "side": _column(sides, np.int32),
        ("answer" if send_answers else "response"): _column(texts, np.object_),
    }
    if any(role == TEACHER for _, role, _ in rows):
        inputs["role"] = _column([role for _, role, _ in rows], np.int8)
    if any(r.ground_truth is not None for r, _, _ in rows):
        inputs["ground_truth"] = _column(
            [b"" if r.ground_truth is None else
             utf8(_str(r.ground_truth, "ground_truth", w), counted=role == POLICY)
             for r, role, w in rows], np.object_)
        if any(r.ground_truth is None for r, _, _ in rows):
            inputs["has_ground_truth"] = _column([r.ground_truth is not None for r, _, _ in rows],
                                                 np.bool_)
    for name in ("self_certainty", "entropy"):
        if any(getattr(r, name) is not None for r, _, _ in rows):
            inputs[name] = _column([_stat(getattr(r, name), name, w) for r, _, w in rows],
                                   np.float32)
    parameters = {
        "reward": config.name,
        "equivalence": config.equivalence,
        "fallbacks": ",".join(config.fallbacks),
        "timeout_s": repr(float(config.timeout_s)),
    }
    if repairs:
        parameters["text_repairs"] = str(repairs)
    return inputs, parameters


def decode_response(outputs: Mapping[str, np.ndarray],
                    inputs: Mapping[str, np.ndarray]) -> ScoredBatch:
    """Reply -> ``ScoredBatch``, checking every row is for the rollout sent in that place."""
    for spec in OUTPUTS:
        if spec.name not in outputs:
            raise ProtocolError(f"reply lacks output {spec.name!r}")
    policy = np.flatnonzero(inputs["role"][:, 0] == POLICY) if "role" in inputs \
        else np.arange(len(inputs["pair_id"]))
    for spec in ROW_OUTPUTS:
        shape = np.shape(outputs[spec.name])
        if shape != (len(policy), 1):
            raise ProtocolError(f"reply output {spec.name!r} has shape {shape}; expected "
                                f"({len(policy)}, 1), one row per policy rollout sent")
    sent_ids, sent_sides = inputs["pair_id"][policy, 0], inputs["side"][policy, 0]
    got_ids, got_sides = outputs["echo_pair_id"][:, 0], outputs["echo_side"][:, 0]
    for i in range(len(policy)):
        if bytes(got_ids[i]) != sent_ids[i] or int(got_sides[i]) != int(sent_sides[i]):
            raise ProtocolError(
                f"reply row {i} is for pair {bytes(got_ids[i])!r} side {int(got_sides[i])} but "
                f"policy rollout {i} was pair {sent_ids[i]!r} side {int(sent_sides[i])}")
    if "answer" in inputs:  # answers sent come back as scored: one more attachment check
        sent_answers, got_answers = inputs["answer"][policy, 0], outputs["answer"][:, 0]
        for i in range(len(policy)):
            if bytes(got_answers[i]) != sent_answers[i]:
                raise ProtocolError(f"reply row {i} has answer {bytes(got_answers[i])!r} but "
                                    f"policy rollout {i} sent {sent_answers[i]!r}")
    scores = [
        Score(float(reward), bytes(answer).decode(), bytes(label).decode(),
              bytes(failure).decode() or None)
        for reward, answer, label, failure in zip(
            outputs["reward"][:, 0], outputs["answer"][:, 0], outputs["label"][:, 0],
            outputs["failure"][:, 0])
    ]
    metrics = json.loads(bytes(np.asarray(outputs["metrics"]).reshape(-1)[0]))
    return ScoredBatch(scores, {str(k): float(v) for k, v in metrics.items()})


# ---------------------------------------------------------------- server side ---------
def _check_tensor(name: str, arr: object, rows: int | None) -> np.ndarray:
    spec = _INPUT_SPECS[name]
    if not isinstance(arr, np.ndarray):
        raise ProtocolError(f"input {name!r}: expected a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.dtype(spec.dtype):
        want = "BYTES" if spec.dtype is np.object_ else np.dtype(spec.dtype).name
        raise ProtocolError(f"input {name!r}: dtype {arr.dtype} but the contract says {want}")
    if arr.ndim != 2 or arr.shape[1] != 1:
        raise ProtocolError(f"input {name!r}: shape {arr.shape}; expected [N, 1]")
    if rows is not None and arr.shape[0] != rows:
        raise ProtocolError(f"input {name!r} has {arr.shape[0]} rows but 'pair_id' has {rows}; "
                            "every input needs one row per rollout")
    return arr[:, 0]


def _texts(name: str, column: np.ndarray, max_bytes: int) -> tuple[list[str], int]:
    """The column's texts, invalid UTF-8 replaced by U+FFFD, and how many were repaired."""
    out, repairs = [], 0
    for i, item in enumerate(column):
        if not isinstance(item, bytes):
            raise ProtocolError(f"input {name!r} row {i}: expected bytes, "
                                f"got {type(item).__name__}")
        if len(item) > max_bytes:
            raise ProtocolError(f"input {name!r} row {i}: {len(item)} bytes exceeds the limit of "
                                f"{max_bytes} bytes")
        text, repaired = decode_utf8(item)
        out.append(text)
        repairs += repaired
    return out, repairs


def _client_repairs(parameters: Mapping[str, Any] | None) -> int:
    value = (parameters or {}).get("text_repairs", "0")
    if not (isinstance(value, str) and value.isdigit()):
        raise ProtocolError(f"request parameter 'text_repairs' must be a count, got {value!r}")
    return int(value)


def _config(parameters: Mapping[str, Any] | None) -> RewardConfig:
    params = dict(parameters or {})
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ProtocolError(f"unknown request parameter {unknown[0]!r}; "
                            f"valid: {', '.join(PARAMETERS)}")
    kwargs: dict[str, Any] = {}
    for key in ("reward", "equivalence", "fallbacks"):
        if key in params and not isinstance(params[key], str):
            raise ProtocolError(f"request parameter {key!r} must be a string, got {params[key]!r}")
    if "reward" in params:
        if params["reward"] not in REWARDS.names():
            raise ProtocolError(f"request parameter 'reward': unknown reward {params['reward']!r}; "
                                f"valid: {', '.join(REWARDS.names())}")
        kwargs["name"] = params["reward"]
    if "equivalence" in params:
        if params["equivalence"] not in MODES:
            raise ProtocolError(f"request parameter 'equivalence': unknown mode "
                                f"{params['equivalence']!r}; valid: {', '.join(MODES)}")
        kwargs["equivalence"] = params["equivalence"]
    if params.get("fallbacks"):
        kwargs["fallbacks"] = tuple(f.strip() for f in params["fallbacks"].split(","))
    if "timeout_s" in params:
        value = params["timeout_s"]
        try:
            kwargs["timeout_s"] = float(value) if not isinstance(value, bool) else math.nan
        except ValueError:
            kwargs["timeout_s"] = math.nan
        if not math.isfinite(kwargs["timeout_s"]):
            raise ProtocolError(f"request parameter 'timeout_s' must be a number, got {value!r}")
    try:
        return RewardConfig(**kwargs)
    except ValueError as e:
        raise ProtocolError(f"request parameters: {e}") from None


def decode_request(
    inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any] | None = None,
    limits: Limits = Limits(),
) -> ScoreRequest:
    """Validate one request and rebuild the rollouts ``score_rollouts`` will see."""
    unknown = sorted(set(inputs) - set(_INPUT_SPECS))
    if unknown:
        raise ProtocolError(f"unknown input {unknown[0]!r}; valid: {', '.join(_INPUT_SPECS)}")
    for spec in INPUTS:
        if not spec.optional and spec.name not in inputs:
            raise ProtocolError(f"missing required input {spec.name!r}")
    if "has_ground_truth" in inputs and "ground_truth" not in inputs:
        raise ProtocolError("input 'has_ground_truth' given without 'ground_truth'")
    if ("response" in inputs) == ("answer" in inputs):
        raise ProtocolError("a request carries exactly one of 'response' (the server "
                            "extracts answers) and 'answer' (the client did)")
    n = len(_check_tensor("pair_id", inputs["pair_id"], None))
    if not 1 <= n <= limits.max_rollouts:
        raise ProtocolError(f"request has {n} rollouts; "
                            f"the server accepts 1..{limits.max_rollouts}")
    cols = {name: _check_tensor(name, arr, n) for name, arr in inputs.items()}
    config = _config(parameters)

    wire_ids = list(cols["pair_id"])
    pair_ids, repairs = _texts("pair_id", cols["pair_id"], MAX_PAIR_ID_BYTES)
    text_name = "answer" if "answer" in cols else "response"
    texts, repaired = _texts(text_name, cols[text_name], limits.max_response_bytes)
    repairs += repaired
    sides = [int(s) for s in cols["side"]]
    for i, s in enumerate(sides):
        if s < 0:
            raise ProtocolError(f"input 'side' row {i}: must be >= 0, got {s}")
    roles = [int(r) for r in cols["role"]] if "role" in cols else [POLICY] * n
    for i, role in enumerate(roles):
        if role not in (POLICY, TEACHER):
            raise ProtocolError(f"input 'role' row {i}: must be 0 (policy) or 1 (teacher), "
                                f"got {role}")
    truths: list[str | None] = [None] * n
    if "ground_truth" in cols:
        gts, repaired = _texts("ground_truth", cols["ground_truth"], limits.max_response_bytes)
        repairs += repaired
        has = cols["has_ground_truth"] if "has_ground_truth" in cols else [True] * n
        truths = [t if h else None for t, h in zip(gts, has)]
    stats = {name: [None if math.isnan(v) else float(v) for v in cols[name]] if name in cols
             else [None] * n for name in ("self_certainty", "entropy")}

    policy: list[Rollout] = []
    teacher: list[Rollout] = []
    answers = texts if text_name == "answer" else [None] * n
    responses = texts if text_name == "response" else [""] * n
    for i in range(n):
        r = Rollout(pair_ids[i], sides[i], responses[i], truths[i],
                    stats["self_certainty"][i], stats["entropy"][i], answers[i])
        (policy if roles[i] == POLICY else teacher).append(r)
    if not policy:
        raise ProtocolError("request has teacher rows only; at least one policy row is needed")
    keep = [i for i in range(n) if roles[i] == POLICY]
    return ScoreRequest(policy, teacher, config, [wire_ids[i] for i in keep],
                        [sides[i] for i in keep], repairs + _client_repairs(parameters))


def encode_response(request: ScoreRequest, scored: ScoredBatch) -> dict[str, np.ndarray]:
    """``ScoredBatch`` -> output tensors (one row per policy rollout, plus metrics)."""
    if len(scored.scores) != len(request.rollouts):
        raise ProtocolError(f"scorer returned {len(scored.scores)} scores for "
                            f"{len(request.rollouts)} policy rollouts")
    s = scored.scores
    metrics = dict(scored.metrics)
    metrics["text_repairs"] = metrics.get("text_repairs", 0.0) + request.text_repairs
    return {
        "reward": _column([x.reward for x in s], np.float32),
        "answer": _column([x.answer.encode() for x in s], np.object_),
        "label": _column([x.label.encode() for x in s], np.object_),
        "failure": _column([(x.failure or "").encode() for x in s], np.object_),
        "echo_pair_id": _column(request.pair_ids, np.object_),
        "echo_side": _column(request.sides, np.int32),
        "metrics": np.array([json.dumps(metrics).encode()], dtype=np.object_),
    }
