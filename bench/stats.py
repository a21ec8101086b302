"""Small statistics for the benchmarks: percentiles, rates, latency summaries, process counters."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], p: float) -> float:
    """The `p`-th percentile (0..100) by linear interpolation between closest ranks.

    Same definition as numpy's default (`method="linear"`): rank = p/100 * (n - 1).
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile {p} is not within 0..100")
    ordered = sorted(values)
    rank = p / 100.0 * (len(ordered) - 1)
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 when nothing happened, inf when it took no measurable time."""
    if count < 0 or seconds < 0:
        raise ValueError("count and seconds must not be negative")
    if count == 0:
        return 0.0
    if seconds == 0:
        return math.inf
    return count / seconds


@dataclass(frozen=True)
class LatencySummary:
    """Latencies in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of_seconds(cls, seconds: Sequence[float]) -> LatencySummary:
        millis = [s * 1000.0 for s in seconds]
        return cls(
            count=len(millis),
            p50=percentile(millis, 50),
            p95=percentile(millis, 95),
            p99=percentile(millis, 99),
            mean=sum(millis) / len(millis),
            max=max(millis),
        )


# ---- per-process resource figures (Linux /proc) -----------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    # The command name (field 2) may contain spaces; fields after its closing parenthesis are fixed.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLOCK_TICKS


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure (VmRSS, VmHWM, ...) of a process in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as handle:
        return parse_status_kib(handle.read(), field)


def parse_status_kib(status_text: str, field: str) -> int:
    for line in status_text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            number, _, unit = value.strip().partition(" ")
            if unit.strip().lower() != "kb":
                raise ValueError(f"{field} has an unexpected unit {unit!r}")
            return int(number)
    raise KeyError(f"{field} not found in the process status")


class CpuMeter:
    """CPU seconds each named process used between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self._before: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.wall = 0.0
        self._t0 = 0.0

    def start(self, now: float) -> None:
        self._t0 = now
        self._before = {name: _safe_cpu(pid) for name, pid in self.pids.items()}

    def stop(self, now: float) -> dict[str, float]:
        self.wall = now - self._t0
        self.used = {name: max(0.0, _safe_cpu(pid) - self._before[name]) for name, pid in self.pids.items()}
        return self.used

    def describe(self) -> str:
        """`trigger 95% · nats 20% · ...` (share of one core over the measured wall time)."""
        if self.wall <= 0:
            return ""
        parts = sorted(self.used.items(), key=lambda item: -item[1])
        return ", ".join(f"{name} {100.0 * seconds / self.wall:.0f}%" for name, seconds in parts if seconds > 0)


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0.0
