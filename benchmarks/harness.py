"""The timing harness: device and precision, interleaved timing rounds, ratios of medians, peak memory and
the machine's description. Knows nothing about compt."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import os
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: ``{configuration: [seconds per round]}``
Times = dict[str, list[float]]


class Bench:
    """Device, precision and timing for one benchmark run.

    Args:
        device: where everything runs.
        dtype: ``fp32``, or ``bf16`` (autocast).
        repeats: timed rounds per configuration (figures are medians).
        warmup: untimed calls of each configuration first.
        clock: ``wall`` or ``cpu`` (:attr:`clock`).
    """

    def __init__(
        self, device: torch.device, dtype: str, repeats: int, warmup: int, clock: str = "wall"
    ) -> None:
        self.device, self.dtype, self.repeats, self.warmup = device, dtype, repeats, warmup
        self.cuda = device.type == "cuda"
        #: ``wall`` (elapsed time) or ``cpu`` (this process's CPU time: on a CPU shared with other jobs, what a
        #: step costs whatever the others do; with one torch thread it is the step's own time)
        self.clock = clock

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def time_once(self, fn: Callable[[], Any]) -> float:
        now = time.process_time if self.clock == "cpu" else time.perf_counter
        self.sync()
        start = now()
        fn()
        self.sync()
        return now() - start

    def interleaved(self, fns: dict[str, Callable[[], Any]], repeats: int | None = None) -> Times:
        """Warm every function up, then time them round by round (order rotated each round), so that a slow
        spell of the machine hits every configuration of a ratio alike."""
        repeats = repeats or self.repeats
        names = list(fns)
        for name in names:
            for _ in range(self.warmup):
                fns[name]()
        times: Times = {name: [] for name in names}
        for round_ in range(repeats):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(self.time_once(fns[name]))
        return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def medians(times: Times) -> dict[str, float]:
    return {name: median(t) for name, t in times.items()}


def ratio(times: Times, num: str, den: str) -> tuple[float, list[float]]:
    """Ratio of medians, and ``[min, max]`` of the per-round paired ratios."""
    paired = [a / b for a, b in zip(times[num], times[den])]
    return median(times[num]) / median(times[den]), [min(paired), max(paired)]


# ---------------------------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of one call: CUDA max allocated (and that above what was allocated before), or on CPU
    the peak RSS above the RSS before (both fields)."""

    peak_bytes: int
    delta_bytes: int


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled by a thread (CPU)."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory(step: Callable[[], Any], bench: Bench) -> PeakMemory:
    """Peak memory of one call of ``step`` after a warm-up call (optimizer state, autograd caches)."""
    step()
    if bench.cuda:
        bench.sync()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(bench.device)
        torch.cuda.reset_peak_memory_stats(bench.device)
        step()
        bench.sync()
        peak = torch.cuda.max_memory_allocated(bench.device)
        return PeakMemory(int(peak), int(peak - base))
    release_memory()
    try:
        with PeakRSS() as rss:
            step()
        delta = rss.peak - rss.start
    except ImportError:  # no psutil: the process-lifetime high-water mark (only grows)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        step()
        delta = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return PeakMemory(int(delta), int(delta))


def peak_memory_kind(bench: Bench) -> str:
    return (
        "torch.cuda.max_memory_allocated during one step" if bench.cuda else "max RSS delta during one step"
    )


# ---------------------------------------------------------------------------------------------- machine
def machine_info(device: torch.device, dtype: str) -> dict[str, Any]:
    """Date, platform, CPU model and count, torch threads, library versions, device and dtype."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "dtype": dtype,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for library in ("transformers", "peft"):
        with contextlib.suppress(ImportError):
            info[library] = __import__(library).__version__
    return info
