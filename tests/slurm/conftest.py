"""A real SLURM 22.05 cluster (munged, slurmctld, two slurmd on loopback) for the session.

Installs Debian's slurm-wlm and munge when missing (root only), starts the cluster under
the session's temporary folder with ports picked free at start, and tears it down at the
end: every job cancelled and the queue empty, the daemons stopped by their pid files and
reaped. Skips, saying why, only where SLURM is absent and cannot be installed.
Also the tiny model the launch-script tests train.
"""
from __future__ import annotations

import pytest

from .cluster import Cluster, install, reap_daemon_zombies, set_subreaper, why_unavailable


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    install()
    set_subreaper(True)
    try:
        cluster = Cluster.start(tmp_path_factory.mktemp("slurm"))
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        reap_daemon_zombies()
        set_subreaper(False)
    left = cluster.live_daemons()
    assert not left, f"daemons still running after teardown: {left}"
