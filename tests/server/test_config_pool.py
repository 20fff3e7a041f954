"""Server configuration, the libpython set-up for Triton, the request gate and the
scoring pool (deadlines, a worker dying) without Triton."""
from __future__ import annotations

import os
import signal
import sysconfig
import threading
import time

import pytest

from nemo_coreward.reward import RewardConfig, score_rollouts
from nemo_coreward.server.app import Gate, PortInUse, check_ports_free, ensure_libpython_on_ld_path
from nemo_coreward.server.cli import main
from nemo_coreward.server.config import (
    DEFAULT_CONFIG,
    ConfigError,
    ServerConfig,
    load_server_config,
)
from nemo_coreward.server.pool import PoolUnavailable, ScoringPool
from nemo_coreward.server.protocol import Limits, ProtocolError, decode_response, encode_request

from .conftest import assert_same, make_step


def test_shipped_yaml_spells_out_every_key_and_binds_loopback():
    import yaml

    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert set(shipped) == set(ServerConfig.__dataclass_fields__)
    config = load_server_config()
    assert config.host == "127.0.0.1" and config == ServerConfig(**shipped)


@pytest.mark.parametrize("override, message", [
    ("bogus=1", "Key 'bogus' not in 'ServerConfig'"),
    ("workers=many", "full_key: workers"),
    ("workers=0", "workers must be >= 1"),
    ("grpc_port=5590", "must differ"),
    ("http_port=70000", "http_port must be in 1..65535"),
    ("start_method=fork", "start_method must be one of spawn, forkserver"),
    ("request_timeout_s=0", "request_timeout_s must be > 0"),
    ("workers", "is not key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_server_config(DEFAULT_CONFIG, [override])


def test_bad_yaml_key_names_the_file(tmp_path):
    path = tmp_path / "server.yaml"
    path.write_text("host: 127.0.0.1\nworkrs: 3\n")
    with pytest.raises(ConfigError, match=f"{path}: Key 'workrs' not in 'ServerConfig'"):
        load_server_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_server_config(tmp_path / "missing.yaml")


def test_cli_prints_the_resolved_config_and_rejects_bad_keys(capsys):
    assert main(["--print-config", "workers=3", "host=0.0.0.0"]) == 0
    out = capsys.readouterr().out
    assert "workers: 3" in out and "host: 0.0.0.0" in out
    assert main(["wrkers=3"]) == 2
    assert "Key 'wrkers' not in 'ServerConfig'" in capsys.readouterr().err


def test_libpython_folder_is_prepended_once_when_it_holds_the_shared_library():
    libdir = sysconfig.get_config_var("LIBDIR")
    library = sysconfig.get_config_var("LDLIBRARY") or ""
    shared = library.endswith(".so") and os.path.isfile(os.path.join(libdir, library))
    env = {"LD_LIBRARY_PATH": "/opt/x"}
    added = ensure_libpython_on_ld_path(env)
    if not shared or libdir.startswith("/usr/lib"):
        assert added is None and env == {"LD_LIBRARY_PATH": "/opt/x"}
        pytest.skip("this Python has no private shared libpython (nothing to set up)")
    assert added == libdir and env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x"
    assert ensure_libpython_on_ld_path(env) is None and env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x"
    empty: dict[str, str] = {}
    ensure_libpython_on_ld_path(empty)
    assert empty == {"LD_LIBRARY_PATH": libdir}


def test_gate_waits_for_running_requests_and_turns_new_ones_away():
    gate = Gate()
    assert gate.enter()
    threading.Timer(0.2, gate.leave).start()
    start = time.monotonic()
    assert gate.close_and_wait(5.0) == 0
    assert 0.15 < time.monotonic() - start < 4.0
    assert not gate.enter()
    gate2 = Gate()
    gate2.enter()
    assert gate2.close_and_wait(0.05) == 1  # still running after the timeout


@pytest.mark.slow
def test_pool_scores_like_in_process_survives_deadlines_and_a_dead_worker():
    pool = ScoringPool(1, "spawn")
    step = make_step(8, 8, seed=9)
    config = RewardConfig("co_reward", "normalized")
    inputs, params = encode_request(step, config)
    want = score_rollouts(step, config)

    def handle(inputs=inputs, params=params, timeout_s=60.0):
        return decode_response(pool.handle(inputs, params, Limits(), timeout_s), inputs)

    try:
        (pid,) = pool.start()
        assert_same(handle(), want)

        big, _ = encode_request(step * 20, config)
        with pytest.raises(PoolUnavailable, match="deadline of 0.0001 s exceeded"):
            handle(big, timeout_s=0.0001)
        assert_same(handle(), want)

        one_side, _ = encode_request([r for r in step if r.side == 0], config)
        with pytest.raises(ValueError, match="has rollouts for side 0 only"):
            handle(one_side)
        with pytest.raises(ProtocolError, match="unknown request parameter 'x'"):
            handle(params={"x": "1"})

        os.kill(pid, signal.SIGKILL)
        with pytest.raises(PoolUnavailable, match="worker died"):
            handle()
        assert_same(handle(), want)  # a rebuilt pool
    finally:
        pool.close()
    with pytest.raises(PoolUnavailable, match="shutting down"):
        handle()


def test_a_taken_port_is_reported_at_once(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"grpc_port={port} on 127.0.0.1 is not available"):
            check_ports_free(ServerConfig(grpc_port=port))
        assert main([f"grpc_port={port}"]) == 2
    assert "is not available" in capsys.readouterr().err
