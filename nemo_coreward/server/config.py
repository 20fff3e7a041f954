"""The server's configuration: ``conf/server/co_reward_server.yaml`` checked against a
frozen dataclass, with ``key=value`` overrides from the command line.

Validation is OmegaConf's structured merge, so an unknown or misspelt key, or a value of
the wrong type, fails at start naming the key and the file it came from; then
``__post_init__`` checks ranges.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nemo_coreward.server.pool import START_METHODS

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "server" / "co_reward_server.yaml"


class ConfigError(ValueError):
    """A configuration mistake; the message names the key."""


@dataclass(frozen=True)
class ServerConfig:
    """host: address HTTP, gRPC and metrics bind to (loopback unless opened on purpose).
    workers: scoring processes. instances: requests served at once (Triton model
    instances; more than ``workers`` only queues). request_timeout_s: deadline of one
    request, queueing included. max_rollouts / max_response_bytes: larger requests are
    refused before grading. exit_timeout_s: how long shutdown waits for in-flight requests.
    """

    host: str = "127.0.0.1"
    http_port: int = 5590
    grpc_port: int = 5591
    metrics_port: int = 5592
    workers: int = 2
    instances: int = 2
    start_method: str = "spawn"
    request_timeout_s: float = 120.0
    max_rollouts: int = 65536
    max_response_bytes: int = 262144
    exit_timeout_s: int = 30
    log_verbose: int = 0

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host must not be empty")
        ports = {k: getattr(self, k) for k in ("http_port", "grpc_port", "metrics_port")}
        for key, port in ports.items():
            if not 1 <= port <= 65535:
                raise ConfigError(f"{key} must be in 1..65535, got {port}")
        if len(set(ports.values())) != len(ports):
            raise ConfigError(f"http_port, grpc_port and metrics_port must differ, got {ports}")
        for key in ("workers", "instances", "max_rollouts", "max_response_bytes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.start_method not in START_METHODS:
            raise ConfigError(f"start_method must be one of {', '.join(START_METHODS)}, "
                              f"got {self.start_method!r}")
        if not self.request_timeout_s > 0:
            raise ConfigError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if self.exit_timeout_s < 1 or self.log_verbose < 0:
            raise ConfigError("exit_timeout_s must be >= 1 and log_verbose >= 0")


def load_server_config(path: str | Path | None = DEFAULT_CONFIG,
                       overrides: Sequence[str] = ()) -> ServerConfig:
    """YAML (``None``: defaults only) + ``key=value`` overrides -> ``ServerConfig``."""
    merged = OmegaConf.structured(ServerConfig)
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file {path} does not exist")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: {e.msg if hasattr(e, 'msg') else e}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
    try:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as e:
        raise ConfigError(f"command-line override: {e.msg if hasattr(e, 'msg') else e}") from None
    return ServerConfig(**OmegaConf.to_container(merged))  # type: ignore[arg-type]
