"""`python -m bench --quick --only matching` runs the real processes and prints the matching figures."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_quick_matching_bench_prints_the_matching_figures() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "matching"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    table = completed.stdout
    for figure in ("pure matcher: events matched per second", "running trigger: events matched per second"):
        line = next((line for line in table.splitlines() if figure in line), None)
        assert line is not None, table
        # A measured number with its unit and the target next to it.
        assert re.search(r"\s[\d,.]+ /s\s+>= 50,000 /s", line), line
    assert "FAILED" not in table
    assert "latency" not in table.split("\n\n")[1]  # only the chosen scenario ran
