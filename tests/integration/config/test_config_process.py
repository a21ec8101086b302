"""The real `conveyor-config` process on SQLite, driven by the real grpcurl binary through reflection."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.nats_server import NatsServer
from tests.support.net import free_port
from tests.support.procs import ServiceProcess, console_script
from tests.unit.config.samples import CHINESE_DESCRIPTION

GRPCURL = str(pathlib.Path(sys.executable).parent / "grpcurl")


def grpcurl(address: str, *args: str, data: str | None = None) -> subprocess.CompletedProcess[bytes]:
    command = [GRPCURL, "-plaintext", "-max-time", "20"]
    if data is not None:
        command += ["-d", data]
    return subprocess.run([*command, address, *args], capture_output=True, timeout=60, check=False)


@pytest.fixture
def config_process(nats_server: NatsServer, tmp_path: pathlib.Path) -> Iterator[tuple[ServiceProcess, str]]:
    address = f"127.0.0.1:{free_port()}"
    process = ServiceProcess(
        "conveyor-config",
        [console_script("conveyor-config")],
        {
            "CONVEYOR_CONFIG_ADDR": address,
            "CONVEYOR_NATS_URL": nats_server.url,
            "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
            "CONVEYOR_LOG_FORMAT": "json",
        },
        tmp_path / "logs",
    ).start()
    try:
        process.wait_ready(address)
        yield process, address
    finally:
        process.kill()


def test_grpcurl_lists_creates_gets_and_the_process_stops_cleanly(
    config_process: tuple[ServiceProcess, str], tmp_path: pathlib.Path
) -> None:
    process, address = config_process

    listed = grpcurl(address, "list")
    assert listed.returncode == 0, listed.stderr
    services = listed.stdout.decode().split()
    assert {"conveyor.v1.PipelineService", "conveyor.v1.RunService", "grpc.health.v1.Health"} <= set(services)

    request = {
        "pipeline_id": "demo",
        "pipeline": {
            "display_name": "生产环境",
            "description": CHINESE_DESCRIPTION,
            "source": {"registry": "demo.tencentcloudcr.com", "repository": "team/app"},
            "target": {
                "platform": "TKE",
                "cluster": "prod",
                "namespace": "default",
                "workload_kind": "DEPLOYMENT",
                "workload": "app",
                "container": "app",
            },
        },
    }
    created = grpcurl(
        address, "conveyor.v1.PipelineService/CreatePipeline", data=json.dumps(request, ensure_ascii=False)
    )
    assert created.returncode == 0, created.stderr.decode()
    fetched = grpcurl(address, "conveyor.v1.PipelineService/GetPipeline", data='{"name": "pipelines/demo"}')
    assert fetched.returncode == 0, fetched.stderr.decode()
    assert CHINESE_DESCRIPTION.encode() in fetched.stdout  # raw UTF-8 on the wire and in grpcurl's output
    pipeline = json.loads(fetched.stdout)
    assert pipeline["description"].encode() == CHINESE_DESCRIPTION.encode()
    assert pipeline["display_name"] == "生产环境"
    assert pipeline == json.loads(created.stdout)

    missing = grpcurl(address, "conveyor.v1.PipelineService/GetPipeline", data='{"name": "pipelines/nope"}')
    assert missing.returncode != 0 and b"NotFound" in missing.stderr + missing.stdout
    invalid = grpcurl(address, "conveyor.v1.PipelineService/CreatePipeline", data='{"pipeline": {}}')
    assert b"InvalidArgument" in invalid.stderr + invalid.stdout
    assert b"pipeline.target.workload" in invalid.stderr + invalid.stdout  # BadRequest details are shown

    health = grpcurl(address, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout) == {"status": "SERVING"}

    assert process.terminate() == 0
    lines = [json.loads(line) for line in process.output().splitlines() if line.startswith("{")]
    created_line = next(line for line in lines if line["message"] == "pipeline created")
    assert created_line["pipeline"] == "demo" and created_line["service"] == "conveyor-config"
    assert any(line["message"] == "shutting down" for line in lines)
    assert (tmp_path / "data" / "conveyor.db").exists()


def test_unreachable_database_exits_1_with_a_clear_log(nats_server: NatsServer, tmp_path: pathlib.Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    process = ServiceProcess(
        "conveyor-config-baddb",
        [console_script("conveyor-config")],
        {
            "CONVEYOR_CONFIG_ADDR": address,
            "CONVEYOR_NATS_URL": nats_server.url,
            "CONVEYOR_DATABASE_URL": f"postgresql+asyncpg://conveyor:secret-pw@127.0.0.1:{free_port()}/conveyor",
        },
        tmp_path / "logs",
    ).start()
    try:
        assert process.process is not None
        assert process.process.wait(60) == 1
    finally:
        process.kill()
    output = process.output()
    assert "cannot start conveyor-config" in output
    assert "secret-pw" not in output
