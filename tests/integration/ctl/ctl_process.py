"""Running the installed conveyorctl against the fakes of ctl_fakes, and the state the tests start from."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from conveyor.v1 import pipeline_pb2, run_pb2, target_service_pb2
from tests.integration.ctl.ctl_fakes import FakeConveyor, FakeState, timestamp
from tests.support.procs import console_script

Target = pipeline_pb2.Target


CREATE_FLAGS = [
    "--registry",
    "registry.example.com",
    "--repository",
    "team/web",
    "--tag-filter",
    r"regex:^v\d+",
    "--platform",
    "kubernetes",
    "--region",
    "local",
    "--cluster",
    "sandbox",
    "--namespace",
    "demo",
    "--kind",
    "deployment",
    "--workload",
    "web",
    "--container",
    "app",
]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def seeded_state() -> FakeState:
    state = FakeState()
    state.clusters = [
        target_service_pb2.Cluster(name="sandbox", platform=Target.KUBERNETES, region="local", sandbox=True)
    ]
    state.workloads = [
        target_service_pb2.Workload(
            cluster="sandbox",
            namespace="demo",
            kind=Target.DEPLOYMENT,
            name="web",
            containers=[
                target_service_pb2.Container(name="app", image="registry.example.com/team/web:v1"),
                target_service_pb2.Container(name="sidecar", image="envoy:1.30"),
            ],
            init_containers=[target_service_pb2.Container(name="migrate", image="registry.example.com/team/mig:v1")],
        ),
        target_service_pb2.Workload(
            cluster="sandbox", namespace="demo", kind=Target.STATEFULSET, name="db", containers=[]
        ),
    ]
    return state


def ctl_env(fakes: FakeConveyor, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.pop("NO_COLOR", None)
    return {**env, **fakes.env, **extra}


async def ctl(fakes: FakeConveyor, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run the installed conveyorctl; the fakes keep serving on this loop while it runs."""
    process = await asyncio.create_subprocess_exec(
        console_script("conveyorctl"),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or ctl_env(fakes),
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin is not None else None), 60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def create_web(fakes: FakeConveyor, *extra: str) -> Result:
    result = await ctl(fakes, "pipelines", "create", "web", *CREATE_FLAGS, *extra)
    assert result.code == 0, result.stderr
    return result


def assert_one_line_error(result: Result, code: int, starts: str) -> None:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    first, *rest = result.stderr.rstrip("\n").split("\n")
    assert first.startswith(starts), result.stderr
    assert all(line.startswith("  ") for line in rest), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def add_run(fakes: FakeConveyor, run_id: str, state: int, *, tag: str = "v1") -> str:
    name = f"pipelines/web/runs/{run_id}"
    fakes.state.runs[name] = run_pb2.Run(
        name=name,
        trigger=run_pb2.Run.PUSH,
        image=f"registry.example.com/team/web:{tag}",
        tag=tag,
        state=state,
        create_time=timestamp(),
        start_time=timestamp(),
        error="image cannot be pulled" if state == run_pb2.Run.FAILED else "",
    )
    fakes.state.logs[name] = [
        run_pb2.RunLogEntry(time=timestamp(), level=run_pb2.RunLogEntry.INFO, step="resolve-target", message="found"),
    ]
    return name
