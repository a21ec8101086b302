"""The bench's own arithmetic: percentiles, rates, summaries, crossing rates, PATCH parsing, the table."""

from __future__ import annotations

import math
import os

import pytest

from bench.report import ScenarioResult, Target, format_number, render_table
from bench.sandbox import images_in_patch
from bench.scenarios import _steady_rate
from bench.stats import CpuMeter, LatencySummary, cpu_seconds, memory_kib, parse_status_kib, percentile, rate


@pytest.mark.parametrize(
    ("p", "expected"),
    [(0, 1.0), (25, 1.75), (50, 2.5), (75, 3.25), (100, 4.0), (90, 3.7)],
)
def test_percentile_interpolates_linearly_between_closest_ranks(p: float, expected: float) -> None:
    # numpy.percentile([1, 2, 3, 4], p) gives the same values.
    assert percentile([4, 1, 3, 2], p) == pytest.approx(expected)


def test_percentile_of_one_value_and_of_a_hundred() -> None:
    assert percentile([7.5], 99) == 7.5
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)


def test_percentile_rejects_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1, 2], 101)


def test_rate() -> None:
    assert rate(5000, 2.0) == 2500.0
    assert rate(0, 0.0) == 0.0
    assert math.isinf(rate(3, 0.0))
    with pytest.raises(ValueError):
        rate(-1, 1.0)


def test_latency_summary_is_in_milliseconds() -> None:
    summary = LatencySummary.of_seconds([0.010, 0.020, 0.030, 0.040, 1.0])
    assert summary.count == 5
    assert summary.p50 == pytest.approx(30.0)
    assert summary.max == pytest.approx(1000.0)
    assert summary.mean == pytest.approx(220.0)
    assert summary.p99 == pytest.approx(40.0 + (1000.0 - 40.0) * 0.96)


def test_steady_rate_interpolates_the_crossing_times() -> None:
    # A counter growing 100 per second, sampled every half second.
    timeline = [(t / 2, int(50 * t)) for t in range(0, 21)]  # (0,0) (0.5,50) ... (10,1000)
    assert _steady_rate(timeline, 100, 900) == pytest.approx(100.0)
    # Marks between samples: 125 is crossed at 1.25 s, 875 at 8.75 s.
    assert _steady_rate(timeline, 125, 875) == pytest.approx(100.0)
    assert _steady_rate(timeline, 100, 2000) is None  # never reached


def test_status_parsing_reads_kib() -> None:
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t4\n"
    assert parse_status_kib(status, "VmRSS") == 102400
    assert parse_status_kib(status, "VmHWM") == 204800
    with pytest.raises(KeyError):
        parse_status_kib(status, "VmSwap")


def test_process_counters_of_this_process() -> None:
    assert memory_kib(os.getpid()) > 1024
    meter = CpuMeter({"me": os.getpid()})
    before = cpu_seconds(os.getpid())
    meter.start(0.0)
    sum(i * i for i in range(300_000))  # burn a little CPU
    used = meter.stop(1.0)
    assert used["me"] >= 0.0
    assert cpu_seconds(os.getpid()) >= before
    assert meter.describe().startswith("me ") or used["me"] == 0.0


def test_images_in_patch_reads_json_patches_and_merge_patches() -> None:
    json_patch = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "r/app:v2"},
        {"op": "add", "path": "/metadata/annotations/x", "value": "y"},
    ]
    assert images_in_patch(json_patch) == ["r/app:v2"]
    merge = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "r/app:v3"}]}}}}
    assert images_in_patch(merge) == ["r/app:v3"]
    assert images_in_patch("garbage") == []


def test_targets_and_table() -> None:
    assert Target("<", 50).met(49.9) and not Target("<", 50).met(50)
    assert Target(">=", 5000).met(5000) and not Target(">=", 5000).met(4999)
    result = ScenarioResult("latency", "t")
    result.add("p99", 42.4, "ms", Target("<", 50.0), detail="max 90")
    result.add("rate", 2514.0, "/s", Target(">=", 5000.0))
    result.add("info", None, "s")
    table = render_table([result])
    lines = table.splitlines()
    assert "42.4 ms (max 90)" in lines[2] and "< 50.0 ms" in lines[2] and lines[2].endswith("yes")
    assert "2,514 /s" in lines[3] and ">= 5,000 /s" in lines[3] and lines[3].endswith("NO")
    assert "n/a" in lines[4]
    assert format_number(0.123) == "0.12" and format_number(123456.0) == "123,456"
