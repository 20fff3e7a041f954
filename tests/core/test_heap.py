"""nemo_coreward.heap: freed large tensors are reused without new page faults."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# Allocates, touches and frees a 64 MiB tensor five times after twenty warm-up ones (small
# allocations in between may split a freed block until the heap settles); prints the minor
# page faults those five cost. A fresh process each: the setting is process-wide.
_SCRIPT = """
import resource, sys, torch
from nemo_coreward.heap import keep_freed_memory
if sys.argv[1] == "on":
    assert keep_freed_memory() and keep_freed_memory()
def churn():
    x = torch.empty(16 << 20)
    x.fill_(1.0)
    del x
for _ in range(20):
    churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True,
                          text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_without_page_faults():
    pages = 5 * (64 << 20) // 4096
    assert _faults("off") > pages // 2  # glibc's default: every block is fresh pages
    assert _faults("on") < pages // 100
