"""The ``co_reward`` Triton model and its life cycle: start, serve, drain, unload, stop.

The server is stateless: every request carries whole groups and is handed, as raw
tensors, to a worker process that decodes it, scores it on its own with
``nemo_coreward.reward.score_rollouts`` and encodes the reply (``pool.py``). Concurrency comes from
``instances`` Triton model instances (a PyTriton instance serves one request at a time,
and must never block waiting for another request); grading parallelism from ``workers``
processes. A bad request is answered with an error whose message starts with
``protocol.BAD_REQUEST`` and the server goes on serving; ``protocol.UNAVAILABLE`` marks
errors worth retrying (deadline, a dead worker, shutdown).
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sysconfig
import threading
import time
from collections.abc import MutableMapping, Sequence
from typing import Any

import numpy as np

from nemo_coreward.errors import UserError
from nemo_coreward.server.config import ServerConfig
from nemo_coreward.server.pool import PoolUnavailable, ScoringPool
from nemo_coreward.server.protocol import (
    BAD_REQUEST,
    INPUTS,
    METRICS,
    MODEL_NAME,
    ROW_OUTPUTS,
    UNAVAILABLE,
    Limits,
)

LOG = logging.getLogger(__name__)
TRITON_EXIT_TIMEOUT_S = 3
_SYSTEM_LIBDIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")


def ensure_libpython_on_ld_path(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Put this Python's shared libpython directory on ``LD_LIBRARY_PATH`` if missing.

    Triton's Python-backend stub links against ``libpython3.x.so``. On pyenv-style
    Pythons that library lives in the interpreter's own lib folder, which the dynamic
    loader does not search, so the stub loads the system's libpython instead and fails
    (an RLock AttributeError). PyTriton copies ``os.environ`` when it starts tritonserver,
    so setting it here, before the server starts, reaches every child. System folders
    are left alone: the loader already searches them, and putting them first could hide
    the libraries PyTriton bundles. Returns the folder added, or ``None``.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    library = sysconfig.get_config_var("LDLIBRARY") or ""
    if (not libdir or not library.endswith(".so")
            or not os.path.isfile(os.path.join(libdir, library))):
        return None
    if os.path.realpath(libdir).rstrip("/") in _SYSTEM_LIBDIRS or \
            os.path.realpath(libdir).startswith("/usr/lib/"):
        return None
    parts = [p for p in environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if libdir in parts:
        return None
    environ["LD_LIBRARY_PATH"] = ":".join([libdir, *parts])
    return libdir


class Gate:
    """Counts requests in flight; once closed, new requests are turned away (retryable)
    so that shutdown can wait for the running ones and then unload the model."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._open = True
        self._in_flight = 0

    def enter(self) -> bool:
        with self._cv:
            if self._open:
                self._in_flight += 1
            return self._open

    def leave(self) -> None:
        with self._cv:
            self._in_flight -= 1
            self._cv.notify_all()

    def close_and_wait(self, timeout_s: float) -> int:
        """Close, wait up to ``timeout_s`` for running requests; returns those left."""
        with self._cv:
            self._open = False
            self._cv.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)
            return self._in_flight


class CoRewardModel:
    """The inference callable of one model instance (PyTriton calls it with a list of
    requests; with batching off the list holds one request)."""

    def __init__(self, pool: ScoringPool, limits: Limits, request_timeout_s: float,
                 gate: Gate | None = None) -> None:
        self.pool = pool
        self.limits = limits
        self.request_timeout_s = request_timeout_s
        self.gate = gate or Gate()

    def __call__(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        from pytriton.exceptions import PyTritonRuntimeError

        if not self.gate.enter():
            raise PyTritonRuntimeError(f"{UNAVAILABLE}: the server is shutting down")
        try:
            return [self._one(r) for r in requests]
        finally:
            self.gate.leave()

    def _one(self, request: Any) -> dict[str, np.ndarray]:
        from pytriton.exceptions import PyTritonBadParameterError, PyTritonRuntimeError

        start = time.monotonic()
        try:
            outputs = self.pool.handle(request.data, request.parameters, self.limits,
                                       self.request_timeout_s)
        except ValueError as e:  # the contract or the reward refused the request
            LOG.warning("refused a request: %s", e)
            raise PyTritonBadParameterError(f"{BAD_REQUEST}: {e}") from None
        except PoolUnavailable as e:
            LOG.error("request not scored: %s", e)
            raise PyTritonRuntimeError(f"{UNAVAILABLE}: {e}") from None
        params = request.parameters or {}
        LOG.info("scored %d of %d rollouts (%s/%s) in %.3f s", len(outputs["reward"]),
                 len(request.data.get("pair_id", ())), params.get("reward", "co_reward"),
                 params.get("equivalence", "exact"), time.monotonic() - start)
        return outputs


def _tensors() -> tuple[list[Any], list[Any]]:
    from pytriton.model_config import Tensor

    def tensor(spec: Any, shape: tuple[int, ...]) -> Any:
        dtype = bytes if spec.dtype is np.object_ else spec.dtype
        return Tensor(name=spec.name, dtype=dtype, shape=shape, optional=spec.optional)

    inputs = [tensor(s, (-1, 1)) for s in INPUTS]
    outputs = [tensor(s, (-1, 1)) for s in ROW_OUTPUTS] + [tensor(METRICS, (1,))]
    return inputs, outputs


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            LOG.error("second %s: exiting without cleanup", signal.Signals(signum).name)
            os._exit(128 + signum)
        LOG.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _backend_stubs() -> list[int]:
    """Pids of Triton's Python-backend stubs below this process (one per model instance).

    Triton's unload call returns before the instances have finalised, and a model that
    PyTriton loaded from an in-memory config is not in the repository index, so the
    stub processes going away is the one reliable sign that the unload is complete.
    """
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                head, _, tail = f.read().rpartition(")")
        except OSError:
            continue
        pid = int(entry.name)
        names[pid] = head.partition("(")[2]
        parents[pid] = int(tail.split()[1])
    me, stubs = os.getpid(), []
    for pid, name in names.items():
        if not name.startswith("triton_python_b"):
            continue
        ancestor = parents.get(pid, 0)
        while ancestor > 1 and ancestor != me:
            ancestor = parents.get(ancestor, 0)
        if ancestor == me:
            stubs.append(pid)
    return stubs


def _unload(config: ServerConfig, access_token: str | None, timeout_s: float = 60.0) -> None:
    """Unload the model while Triton still runs, so its instances finalise gracefully.

    Triton's own SIGINT path first waits ``exit_timeout`` for every HTTP connection to
    close, idle keep-alive ones included, and then exits without finalising the Python
    backend stubs (orphaned stubs, leaked shared memory). Unloading first leaves it
    nothing to clean up, whoever still holds a connection.
    """
    import tritonclient.http
    from pytriton.triton import TRITON_ACCESS_HEADER

    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    headers = {TRITON_ACCESS_HEADER: access_token} if access_token else None
    client = tritonclient.http.InferenceServerClient(f"{host}:{config.http_port}",
                                                     network_timeout=timeout_s)
    try:
        client.unload_model(MODEL_NAME, headers=headers)
    finally:
        client.close()
    deadline = time.monotonic() + timeout_s
    while _backend_stubs():
        if time.monotonic() > deadline:
            LOG.warning("model %r still unloading after %g s", MODEL_NAME, timeout_s)
            return
        time.sleep(0.1)


class PortInUse(UserError, RuntimeError):
    """A configured port is taken; Triton itself would only fail after a long timeout."""


def check_ports_free(config: ServerConfig) -> None:
    """Bind each configured port once (as Triton will, with SO_REUSEADDR) or raise."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    for key in ("http_port", "grpc_port", "metrics_port"):
        port = getattr(config, key)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((config.host, port))
            except OSError as e:
                raise PortInUse(f"{key}={port} on {config.host} is not available ({e.strerror}); "
                                f"choose another with `coreward serve {key}=...`") from None


def serve(config: ServerConfig, stop: threading.Event | None = None) -> int:
    """Run the server until SIGTERM/SIGINT (or ``stop`` is set); 0 on a clean exit."""
    check_ports_free(config)
    ensure_libpython_on_ld_path()
    from pytriton.model_config import ModelConfig
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        _install_signal_handlers(stop)
    pool = ScoringPool(config.workers, config.start_method)
    gate = Gate()
    security = TritonSecurityConfig()  # pytriton's default: a fresh token guards model control
    triton = None
    serving = False
    try:
        pool.start()  # before Triton, so ready means the workers are warm
        triton = Triton(config=TritonConfig(
            http_address=config.host, http_port=config.http_port,
            grpc_address=config.host, grpc_port=config.grpc_port,
            metrics_address=config.host, metrics_port=config.metrics_port,
            allow_gpu_metrics=False, log_verbose=config.log_verbose,
            # Requests are drained and the model unloaded before Triton is stopped; what
            # Triton would still wait for is idle client connections only.
            exit_timeout_secs=TRITON_EXIT_TIMEOUT_S,
        ), security_config=security)
        limits = Limits(config.max_rollouts, config.max_response_bytes)
        inputs, outputs = _tensors()
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=[CoRewardModel(pool, limits, config.request_timeout_s, gate)
                        for _ in range(config.instances)],
            inputs=inputs, outputs=outputs,
            config=ModelConfig(batching=False), strict=True,
        )
        if stop.is_set():
            return 0
        triton.run()
        serving = True
        LOG.info("model %r serving on http://%s:%d and grpc://%s:%d (%d workers, %d instances)",
                 MODEL_NAME, config.host, config.http_port, config.host, config.grpc_port,
                 config.workers, config.instances)
        while not stop.wait(0.5):
            if not triton.is_alive():
                LOG.error("Triton or a model instance died; exiting")
                return 1
        return 0
    finally:
        started = time.monotonic()
        left = gate.close_and_wait(config.exit_timeout_s)
        if left:
            LOG.warning("%d requests still running after %d s; stopping anyway", left,
                        config.exit_timeout_s)
        if serving:
            try:
                _unload(config, security.access_token)
            except Exception as e:  # Triton may already be gone; stopping it is still right
                LOG.warning("could not unload the model before stopping Triton: %s", e)
        if triton is not None:
            triton.stop()
        pool.close()
        LOG.info("stopped in %.1f s", time.monotonic() - started)
