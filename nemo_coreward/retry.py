"""The one retry loop: exponential backoff after transient failures (tenacity underneath).

Whoever calls a remote service (the rephrasing and evaluation HTTP client, the reward
server's client) retries through ``call_with_retries``, so every retry in the project waits
the same way: ``backoff_s``, then doubling, each wait capped at ``backoff_max_s``; after
``retries`` extra attempts the last error is raised as it was.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

T = TypeVar("T")


def call_with_retries(
    fn: Callable[[], T],
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    retries: int,
    backoff_s: float,
    backoff_max_s: float,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> T:
    """``fn()``, called again after an exception of ``retry_on`` at most ``retries`` times,
    waiting ``backoff_s * 2**k`` (at most ``backoff_max_s``) before retry ``k + 1``.

    ``on_retry(error, retry_number, wait_s)`` is told before each wait (for a log line).
    Any other exception, and the last retryable one, propagates unchanged.
    """
    if retries < 0 or backoff_s < 0:
        raise ValueError(f"retries and backoff_s must be >= 0, got {retries}, {backoff_s}")

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            on_retry(state.outcome.exception(), state.attempt_number, state.next_action.sleep)

    retrying = Retrying(
        retry=retry_if_exception_type(retry_on),
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=backoff_s, exp_base=2, min=0, max=backoff_max_s),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
