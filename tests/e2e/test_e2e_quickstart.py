"""End to end (issue 10): the README's quick start, driven from what `make run` prints.

`python -m conveyor_launcher` runs as a process (temp data dir, free ports, no kubeconfig, so the
sandbox and its real local registry are used). The test reads the banner and runs its commands as a
newcomer would, in another "terminal" with the banner's exports: the `skopeo copy` line pushes a new
tag, the registry's own notification makes the demo pipeline deploy it (SUCCEEDED, the sandbox's
Deployment runs it), `pipelines tags --digests` lists the demo tags with the digests of the images
the launcher built, and a manual start of a tag the registry lacks is refused. A second start on the
same data dir (warm) still runs what the run history says, and proposes the next tag to push.

docker-registry and skopeo must be installed (`make test` installs them); this test never skips.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import pytest

from conveyor_sandbox import images
from tests.integration.launcher.launcher_support import LauncherProcess, launcher_env
from tests.support.procs import console_script
from tests.support.system import wait_until

pytestmark = pytest.mark.e2e

READY = r"Conveyor is ready\."
PREFIX = "conveyor | "
CLOSING_RULE = "=" * 78


def banner(launcher: LauncherProcess) -> list[str]:
    """The banner's lines (the last one printed), without the output prefix.

    The launcher prints it as one block, but its lines reach us one at a time: it is complete only
    once its closing rule has arrived (reading it at the "ready" line alone raced the rest of it).
    """

    def complete() -> list[str]:
        lines = [line.removeprefix(PREFIX).strip() for line in launcher.lines if line.startswith(PREFIX)]
        start = max(index for index, line in enumerate(lines) if line.startswith("Conveyor is ready."))
        ends = [index for index in range(start, len(lines)) if lines[index] == CLOSING_RULE]
        assert ends, "the banner is still being printed"
        return lines[start : ends[0] + 1]

    return wait_until(complete, timeout=30)


def banner_command(lines: list[str], pattern: str) -> list[str]:
    (line,) = [line for line in lines if re.search(pattern, line)]
    return shlex.split(line)


def terminal_env(base: Mapping[str, str], lines: list[str]) -> dict[str, str]:
    """Another terminal: the user's environment plus the banner's `export` lines."""
    env = {k: v for k, v in base.items() if not k.startswith("CONVEYOR_")}
    env["HOME"] = base["HOME"]
    for line in lines:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value
    return env


def run(env: Mapping[str, str], argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    if argv[0].endswith("conveyorctl"):
        argv = [console_script("conveyorctl"), *argv[1:]]
    return subprocess.run(argv, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False)


def runs(env: Mapping[str, str]) -> list[dict[str, Any]]:
    listed = run(env, ["conveyorctl", "runs", "list", "web", "-o", "json"])
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout).get("runs", [])
    return found


def app_image(env: Mapping[str, str], lines: list[str]) -> str:
    shown = run(env, banner_command(lines, r"targets containers web -n demo$"))
    assert shown.returncode == 0, shown.stderr
    (row,) = [row.split() for row in shown.stdout.splitlines() if row.startswith("app ")]
    return row[2]


def start(env: Mapping[str, str]) -> tuple[LauncherProcess, float]:
    began = time.monotonic()
    launcher = LauncherProcess(env, fakes=False)
    launcher.wait_for(READY, timeout=120)
    return launcher, time.monotonic() - began


def test_the_quick_start_works_from_the_banner(tmp_path: pathlib.Path) -> None:
    missing = [name for name in ("docker-registry", "skopeo") if shutil.which(name) is None]
    assert not missing, f"{missing} not installed: run `make test` (scripts/bootstrap.sh installs them)"
    data_dir = tmp_path / "data"
    env = launcher_env(data_dir, tmp_path, CONVEYOR_SANDBOX="auto")
    registry = f"127.0.0.1:{env['CONVEYOR_SANDBOX_REGISTRY_PORT']}"
    digests = images.build_demo_layout(tmp_path / "expected-images")

    launcher, cold = start(env)
    try:
        lines = banner(launcher)
        terminal = terminal_env(env, lines)
        assert f"demo/web tags: {' '.join(sorted(images.DEMO_SEEDED_TAGS))}" in lines

        # 1. The banner's push: a new tag, through the real registry.
        push = banner_command(lines, r"^skopeo copy ")
        assert push[-1] == f"docker://{registry}/demo/web:v1.2.0"
        pushed = run(terminal, push)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr

        # 2. ... deploys, without anything else: the registry notified the trigger.
        def deployed() -> dict[str, Any]:
            (found,) = [r for r in runs(terminal) if r["tag"] == "v1.2.0"]
            assert found["state"] == "SUCCEEDED", found
            return found

        deployed_run = wait_until(deployed, timeout=60)
        assert deployed_run["trigger"] == "PUSH" and deployed_run["digest"] == digests["v1.2.0"]
        assert deployed_run["previousImage"] == f"{registry}/demo/web:v1.0.0"
        logs = banner_command(lines, r"runs logs -f <NAME")
        followed = run(terminal, [*logs[:-4], deployed_run["name"]])
        assert followed.returncode == 0, followed.stdout + followed.stderr
        assert f"{registry}/demo/web:v1.2.0" in followed.stdout
        assert app_image(terminal, lines) == f"{registry}/demo/web:v1.2.0"

        # 3. The tags it can deploy, with the digests of the images the launcher built.
        tags = run(terminal, banner_command(lines, r"pipelines tags web --digests$"))
        assert tags.returncode == 0, tags.stderr
        rows = dict(row.split() for row in tags.stdout.splitlines()[1:])
        assert rows == digests

        # 4. A manual start of a tag the registry does not have is refused, and starts nothing.
        refused_start = banner_command(lines, r"pipelines start web --tag [^ ]+$")
        refused = run(terminal, refused_start)
        assert refused.returncode != 0
        assert f"tag {refused_start[-1]} does not exist in {registry}/demo/web" in refused.stderr
        assert [r["tag"] for r in runs(terminal)] == ["v1.2.0"]

        # ... and one the sandbox cannot pull fails and is rolled back.
        broken = run(terminal, banner_command(lines, r"pipelines start web --tag .*broken -f$"))
        assert broken.returncode != 0
        assert "FAILED" in broken.stdout + broken.stderr and "rolled back" in broken.stdout + broken.stderr
        assert app_image(terminal, lines) == f"{registry}/demo/web:v1.2.0"

        assert launcher.terminate() == 0
    finally:
        launcher.kill()

    # Warm start on the same data dir: nothing to seed or create, the workload still runs what the
    # run history says it runs, and the banner proposes a tag that is still new.
    again, warm = start(env)
    try:
        output = again.output
        assert "pushed the demo images" not in output and "created the demo pipeline" not in output
        lines = banner(again)
        terminal = terminal_env(env, lines)
        succeeded = [r for r in runs(terminal) if r["state"] == "SUCCEEDED"]
        assert succeeded[0]["image"] == app_image(terminal, lines) == f"{registry}/demo/web:v1.2.0"
        assert banner_command(lines, r"^skopeo copy ")[-1] == f"docker://{registry}/demo/web:v1.3.0"
        assert again.terminate() == 0
    finally:
        again.kill()
    print(f"\nmake run start: cold {cold:.1f}s, warm {warm:.1f}s")
