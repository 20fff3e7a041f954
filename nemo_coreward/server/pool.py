"""Worker processes that handle requests for the server, with per-request deadlines.

Grading is CPU-bound Python: threads would serialise on the GIL, so each request is
handled in a process of a ``ProcessPoolExecutor`` (spawn or forkserver: the server process
runs Triton's threads, which a plain fork would copy in unknown states). A worker gets
the request's raw tensors and does everything that costs CPU: decode and validate them
(``protocol.decode_request``), call ``nemo_coreward.reward.score_rollouts`` (the pool
never scores anything itself) and encode the reply. The server process only moves arrays.

A request that misses its deadline is answered with an error at once. If it was still
queued it is cancelled; if a worker was already grading it, the worker finishes it (each
symbolic comparison is bounded by the grader's own killable time limit) and the result
is dropped. A worker that dies (OOM killer, segfault) breaks a ``ProcessPoolExecutor``:
the pool is rebuilt and the affected requests get a retryable error.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from nemo_coreward.reward import RewardConfig, Rollout, score_rollouts
from nemo_coreward.server.protocol import Limits, decode_request, encode_response

LOG = logging.getLogger(__name__)
START_METHODS = ("spawn", "forkserver")


class PoolUnavailable(RuntimeError):
    """The request was not scored for a reason unrelated to its content; retry it."""


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: exit when the server process is gone.

    A SIGKILLed server cannot shut its pool down, and idle workers blocked on the task
    queue would live on as orphans; a daemon thread notices the re-parenting instead.
    (``PR_SET_PDEATHSIG`` would fire when the *thread* that spawned the worker exits.)
    """
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _handle(inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any] | None,
            limits: Limits) -> dict[str, np.ndarray]:
    request = decode_request(inputs, parameters, limits)
    scored = score_rollouts(request.rollouts, request.config, teacher=request.teacher or None)
    return encode_response(request, scored)


def _warm(delay_s: float) -> int:
    """Import the reward stack in a worker; the pause spreads warm-ups over all workers."""
    score_rollouts([Rollout("warm", 0, r"\boxed{1}")], RewardConfig(name="majority"))
    time.sleep(delay_s)
    return os.getpid()


class ScoringPool:
    """``handle(inputs, parameters, limits, timeout_s)`` in one of ``workers`` processes."""

    def __init__(self, workers: int, start_method: str = "spawn") -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, got {start_method!r}")
        self.workers = workers
        self._context = multiprocessing.get_context(start_method)
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    def start(self) -> list[int]:
        """Create the workers and import the reward stack in each before serving."""
        executor = self._current()
        futures = [executor.submit(_warm, 0.2) for _ in range(self.workers)]
        pids = sorted({f.result() for f in futures})
        LOG.info("scoring pool ready: %d workers (pids %s)", self.workers, pids)
        return pids

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise PoolUnavailable("the server is shutting down")
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    self.workers, mp_context=self._context,
                    initializer=_exit_with_parent, initargs=(os.getpid(),))
            return self._executor

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                LOG.error("a scoring worker died; rebuilding the pool")
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def handle(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any] | None,
               limits: Limits, timeout_s: float) -> dict[str, np.ndarray]:
        """The reply's tensors; ``ValueError`` for a bad request (``ProtocolError`` from the
        contract, or the reward refusing the batch); ``PoolUnavailable`` to retry."""
        executor = self._current()
        try:
            future = executor.submit(_handle, dict(inputs), dict(parameters or {}), limits)
        except BrokenProcessPool:
            self._replace(executor)
            raise PoolUnavailable("a scoring worker died; the pool is being rebuilt") from None
        except RuntimeError as e:  # submit after shutdown
            raise PoolUnavailable(f"the scoring pool is closed ({e})") from None
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()
            raise PoolUnavailable(f"deadline of {timeout_s:g} s exceeded before the scores were "
                                  "ready (the server is overloaded or the batch is too large)"
                                  ) from None
        except BrokenProcessPool:
            self._replace(executor)
            raise PoolUnavailable("a scoring worker died while grading this request") from None
        except CancelledError:
            raise PoolUnavailable("the server is shutting down") from None

    def close(self, grace_s: float = 2.0) -> None:
        """Cancel queued work, give running work ``grace_s``, then terminate the workers."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is None:
            return
        # The executor has no public handle on its processes; it is the only way to bound
        # the wait for a worker still inside a long grading call.
        processes = list(getattr(executor, "_processes", {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace_s
        for p in processes:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in processes:
            if p.is_alive():
                p.terminate()
                p.join(timeout=1.0)
