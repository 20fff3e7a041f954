"""The machine a benchmark ran on, for the figures it prints (ratios travel, seconds don't)."""
from __future__ import annotations

import os


def cpu_model() -> str:
    """The CPU's model name, as ``lscpu`` prints it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def describe() -> str:
    """CPU model, cores and the current load average."""
    return f"{cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
