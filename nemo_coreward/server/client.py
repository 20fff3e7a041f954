"""One scoring interface for both trainers: ``RewardClient`` (the server) or
``LocalScorer`` (in process, the default when no server is configured).

Both expose ``score(rollouts, config, teacher=None) -> ScoredBatch`` and
``score_async(...) -> concurrent.futures.Future``; results are the same either way.

By default the client extracts every final answer itself (the code the server would
run, ``reward.graded.final_answer``) and sends answers instead of responses: a step's
responses are ~19 MB, its answers a few kB, and moving the responses cost ten times
the scoring. ``send_answers=False`` sends whole responses.

The client never attaches a reward to the wrong rollout: replies are matched to the
request by position and every row's echoed ``pair_id`` and ``side`` is checked against
what was sent in that place. A request is stateless and idempotent, so on a lost
connection, a restarting server or a server-side deadline the whole request is sent
again after an exponential backoff, up to ``retries`` times; a request the server
refuses for its content raises ``RewardRequestError`` at once.
"""
from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from http.client import HTTPException
from typing import Any

from nemo_coreward.errors import UserError
from nemo_coreward.retry import call_with_retries
from nemo_coreward.reward import RewardConfig, Rollout, ScoredBatch, score_rollouts
from nemo_coreward.server.protocol import (
    BAD_REQUEST,
    MODEL_NAME,
    decode_response,
    encode_request,
)

LOG = logging.getLogger(__name__)


class RewardServerError(UserError, RuntimeError):
    """The server could not score the request within the retries (a user-facing error:
    the way out is to start or reach the server)."""


class RewardRequestError(ValueError):
    """The server refused the request for its content (never retried)."""


def _server_message(text: str, marker: str) -> str | None:
    match = re.search(re.escape(marker) + r": ([^\n]*)", text)
    return match.group(1).rstrip("\\n\"' ") if match else None


class _Scorer:
    """What both scorers share: ``score_async`` on a thread pool, and closing it."""

    def __init__(self, max_in_flight: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix=name)

    def score(self, rollouts: Sequence[Rollout], config: RewardConfig = RewardConfig(),
              teacher: Sequence[Rollout] | None = None) -> ScoredBatch:
        raise NotImplementedError

    def score_async(self, rollouts: Sequence[Rollout], config: RewardConfig = RewardConfig(),
                    teacher: Sequence[Rollout] | None = None) -> Future[ScoredBatch]:
        """``score`` in a background thread; the future resolves to the ``ScoredBatch``."""
        return self._executor.submit(self.score, list(rollouts), config,
                                     list(teacher) if teacher is not None else None)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> _Scorer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class RewardClient(_Scorer):
    """Client of the ``co_reward`` model at ``url`` (``http://host:port`` or ``grpc://...``).

    timeout_s: one attempt's inference timeout. connect_timeout_s: how long one attempt
    waits for the server and model to be ready. retries: extra attempts after a
    retryable failure, sleeping ``backoff_s * 2**k`` (at most ``max_backoff_s``) between.
    max_in_flight: threads behind ``score_async``; every attempt opens its own connection.
    send_answers: extract answers here and send them instead of the responses.
    """

    def __init__(self, url: str, *, timeout_s: float = 300.0, retries: int = 5,
                 backoff_s: float = 0.5, max_backoff_s: float = 10.0,
                 connect_timeout_s: float = 30.0, max_in_flight: int = 4,
                 send_answers: bool = True) -> None:
        if timeout_s <= 0 or connect_timeout_s <= 0 or retries < 0 or backoff_s < 0 \
                or max_in_flight < 1:
            raise ValueError("RewardClient: timeouts must be > 0, retries and backoff_s >= 0, "
                             "max_in_flight >= 1")
        self.url = url
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.send_answers = send_answers
        self._model_config: Any = None  # the model's configuration, once a request succeeded
        self._lock = threading.Lock()
        super().__init__(max_in_flight, "reward-client")
        self.failed_attempts = 0  # connection failures, timeouts, server errors (for logs, tests)

    # -- connections -----------------------------------------------------------------
    def _connect(self) -> Any:
        """A fresh connection per attempt: no idle keep-alive connection outlives a
        restarted server or holds up a server's shutdown. The first waits for the model
        to be ready and reads its configuration (several round trips); later ones reuse
        that configuration until an attempt fails, when the next one waits again."""
        from pytriton.client import ModelClient
        from pytriton.client.warnings import NotSupportedTimeoutWarning

        # PyTriton warns on every connection that its HTTP readiness polls and gRPC
        # metadata calls ignore the inference timeout; our timeouts are set knowingly.
        warnings.filterwarnings("ignore", category=NotSupportedTimeoutWarning)
        known = self._model_config
        return ModelClient(self.url, MODEL_NAME, lazy_init=True,
                           init_timeout_s=self.connect_timeout_s,
                           inference_timeout_s=self.timeout_s,
                           model_config=known, ensure_model_is_ready=known is None)

    @staticmethod
    def _close(client: Any) -> None:
        try:
            client.close()
        except Exception as e:  # a broken connection may fail to close; it is gone anyway
            LOG.debug("closing a connection: %s", e)

    # -- scoring ---------------------------------------------------------------------
    def score(self, rollouts: Sequence[Rollout], config: RewardConfig = RewardConfig(),
              teacher: Sequence[Rollout] | None = None) -> ScoredBatch:
        """Score on the server; same result as ``score_rollouts(rollouts, config, teacher)``.

        Token statistics travel as float32, so the self_certainty / entropy rewards equal
        the in-process ones for float32 statistics (what a model produces).
        """
        if not rollouts:  # nothing to send; the in-process answer is the definition
            return score_rollouts(rollouts, config, teacher=teacher)
        from pytriton.client.exceptions import (
            PyTritonClientError,
            PyTritonClientInferenceServerError,
            PyTritonClientValueError,
        )
        from tritonclient.utils import InferenceServerException

        inputs, parameters = encode_request(rollouts, config, teacher, self.send_answers)

        def attempt() -> ScoredBatch:
            client = self._connect()
            try:
                outputs = client.infer_sample(parameters=parameters, **inputs)
            except PyTritonClientInferenceServerError as e:
                refused = _server_message(str(e), BAD_REQUEST)
                if refused is not None:
                    raise RewardRequestError(f"{self.url} refused the request: {refused}") from None
                self._failed_attempt()
                raise _Retryable(e) from e
            except PyTritonClientValueError:
                raise
            except (PyTritonClientError, InferenceServerException, HTTPException, OSError) as e:
                # connection lost or reset, timeout, server or model not ready yet
                self._failed_attempt()
                raise _Retryable(e) from e
            else:
                self._model_config = client.model_config
                return decode_response(outputs, inputs)
            finally:
                self._close(client)

        def log_retry(error: BaseException, retry: int, wait_s: float) -> None:
            LOG.warning("reward server %s: %s; retry %d/%d in %.1f s", self.url, error.__cause__,
                        retry, self.retries, wait_s)

        try:
            return call_with_retries(attempt, retry_on=_Retryable, retries=self.retries,
                                     backoff_s=self.backoff_s, backoff_max_s=self.max_backoff_s,
                                     on_retry=log_retry)
        except _Retryable as e:
            raise RewardServerError(f"reward server {self.url} failed {self.retries + 1} "
                                    f"attempts (last error: {e.__cause__}); "
                                    "start `coreward serve` there or "
                                    "point the client at a running server") from e.__cause__

    def _failed_attempt(self) -> None:
        self._model_config = None  # wait for the model again before the next attempt
        with self._lock:
            self.failed_attempts += 1


class _Retryable(Exception):
    """A transient failure of one attempt (its cause is the transport's error)."""


class LocalScorer(_Scorer):
    """``score_rollouts`` behind the client's interface, for runs without a server."""

    def __init__(self) -> None:
        super().__init__(1, "reward-local")

    def score(self, rollouts: Sequence[Rollout], config: RewardConfig = RewardConfig(),
              teacher: Sequence[Rollout] | None = None) -> ScoredBatch:
        return score_rollouts(rollouts, config, teacher=teacher)


def make_scorer(url: str | None, **client_options: Any) -> RewardClient | LocalScorer:
    """``RewardClient(url, ...)`` when a server URL is configured, else ``LocalScorer()``."""
    return RewardClient(url, **client_options) if url else LocalScorer()
