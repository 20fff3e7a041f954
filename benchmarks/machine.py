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


ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def describe() -> str:
    """CPU model, cores, the current load average and the instruction-set limits in force
    (how an AVX2-only CPU is emulated on a newer one)."""
    limits = [f"{k}={os.environ[k]}" for k in ISA_LIMITS if k in os.environ]
    return (f"{cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
            + (f", {' '.join(limits)}" if limits else ""))
