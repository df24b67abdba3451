"""Helpers shared by the benchmark scripts: devices to run on, timing and peak memory, table printing."""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager

import torch


def available_devices(requested: str = "all") -> list[str]:
    """``["cpu"]`` plus ``"cuda"`` when a GPU is present (or just the requested one)."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return devices if requested == "all" else [requested]


@contextmanager
def measure(device: str):
    """Yield a dict that receives ``seconds`` and ``peak_memory_mb`` (host RSS, or GPU allocations on CUDA)."""
    result: dict = {}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    yield result
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["seconds"] = time.perf_counter() - start


def print_table(rows: list[dict], title: str) -> None:
    import pandas as pd

    print(f"\n{title}\n" + pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def proc_status(key: str = "VmRSS") -> float:
    """A memory entry of /proc/self/status in MiB: ``VmRSS`` (resident now), ``VmHWM`` (its peak), ``VmPeak``."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")
