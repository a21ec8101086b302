"""The committed generated code must be what scripts/gen_protos.py produces from protos/."""

from __future__ import annotations

import filecmp
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATED = ROOT / "src" / "conveyor" / "v1"


def _generate(out: pathlib.Path) -> pathlib.Path:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out / "conveyor" / "v1"


def _differences(fresh: pathlib.Path, committed: pathlib.Path) -> list[str]:
    names = {p.name for p in fresh.glob("*_pb2*")} | {p.name for p in committed.glob("*_pb2*")}
    diffs = []
    for name in sorted(names):
        a, b = fresh / name, committed / name
        if not a.exists() or not b.exists() or not filecmp.cmp(a, b, shallow=False):
            diffs.append(name)
    return diffs


def test_committed_generated_code_is_current(tmp_path: pathlib.Path) -> None:
    fresh = _generate(tmp_path)
    assert _differences(fresh, GENERATED) == [], "generated code is stale: run `make protos` and commit"


def test_stale_generated_code_is_detected(tmp_path: pathlib.Path) -> None:
    """Edit a proto in a copy of the repo: the committed code must then count as stale."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "protos", copy / "protos")
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    proto = copy / "protos" / "conveyor" / "v1" / "run.proto"
    proto.write_text(proto.read_text().replace("CANCELLED = 6;", "CANCELLED = 6;\n    PAUSED = 7;"))
    subprocess.run(
        [sys.executable, str(copy / "scripts" / "gen_protos.py"), "--out", str(copy / "src")],
        check=True,
        capture_output=True,
    )
    assert "run_pb2.py" in _differences(copy / "src" / "conveyor" / "v1", GENERATED)
