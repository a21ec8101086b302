"""The whole Conveyor system as separate real processes, for end-to-end tests.

`running_system(workdir)` starts, on free loopback ports with everything under `workdir`:

1. a JetStream `nats-server`;
2. the SANDBOX cluster (`python -m conveyor_sandbox`, samples seeded), registered with the deployer
   through a clusters file (cluster `sandbox`);
3. `conveyor-config` on SQLite (checking targets against the deployer);
4. `conveyor-trigger` (gRPC + webhook receiver, a shared webhook token, an optional registries file);
5. `conveyor-deployer` with the sandbox kubeconfig;

waits for each to be ready (gRPC health SERVING), and on exit stops them in reverse order with
SIGTERM and asserts each exited cleanly (status 0). `System.logs()` collects every process's
output (the e2e conftest attaches it to a failing test's report).

Tests drive the system only from outside, through the helpers here: `ctl(...)` runs
`conveyorctl` as a subprocess, `grpcurl(...)` runs the grpcurl binary, `post_webhook(...)` posts
HTTP, and `apps()` is the official Kubernetes client (apps/v1) against the sandbox
(`create_deployment`, `images`, `generation` are built on it).

The processes are started directly rather than through `python -m conveyor_launcher` so each
one's exit status on SIGTERM can be checked, each has its own log, and the whole environment is
exactly what the test chose (fast poll intervals, a registries file, no CONVEYOR_* of the caller).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from kubernetes import client as kube_client, config as kube_config

from conveyor_sandbox import samples
from tests.support.nats_server import nats_server_binary
from tests.support.net import free_port, wait_port
from tests.support.procs import ServiceProcess, console_script

T = TypeVar("T")

SANDBOX_CLUSTER = "sandbox"
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SUPERSEDED", "CANCELLED"})
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
GRPCURL = pathlib.Path(sys.executable).parent / "grpcurl"

# Short delays so a whole deploy takes about a second (what a user waits for is the same code).
FAST_SETTINGS = {
    "CONVEYOR_DEPLOYER_POLL_INTERVAL": "200ms",
    "CONVEYOR_DEPLOYER_KUBE_BACKOFF": "100ms",
    "CONVEYOR_DEPLOYER_SHUTDOWN_GRACE": "5s",
    "CONVEYOR_CONFIG_TAIL_POLL_INTERVAL": "200ms",
    "CONVEYOR_CONFIG_OUTBOX_INTERVAL": "200ms",
    "CONVEYOR_CONFIG_SHUTDOWN_GRACE": "5s",
    "CONVEYOR_TRIGGER_SHUTDOWN_GRACE": "5s",
    "CONVEYOR_TRIGGER_RESYNC_INTERVAL": "5s",
}


def wait_until(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.3) -> T:
    """Call `check()` until it returns without AssertionError; its value. Re-raises the last failure."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


@dataclass(frozen=True)
class CtlResult:
    argv: list[str]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\n[exit {self.code}]\n{self.stdout}{self.stderr}"


@dataclass
class System:
    workdir: pathlib.Path
    config_addr: str
    trigger_addr: str
    deployer_addr: str
    webhook_addr: str
    nats_url: str
    token: str
    kubeconfig: pathlib.Path
    processes: list[ServiceProcess] = field(default_factory=list)
    _kube: kube_client.ApiClient | None = None

    # ------------------------------------------------------------ outside interfaces

    @property
    def addresses(self) -> dict[str, str]:
        return {"config": self.config_addr, "trigger": self.trigger_addr, "deployer": self.deployer_addr}

    def client_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env |= {
            "CONVEYOR_CONFIG_ADDR": self.config_addr,
            "CONVEYOR_TRIGGER_ADDR": self.trigger_addr,
            "CONVEYOR_DEPLOYER_ADDR": self.deployer_addr,
            "NO_COLOR": "1",
        }
        return env

    def ctl(self, *args: str, expect: int | None = 0, timeout: float = 60.0) -> CtlResult:
        """`conveyorctl ARGS` as a subprocess; asserts its exit status unless `expect` is None."""
        argv = [console_script("conveyorctl"), *args]
        done = subprocess.run(argv, check=False, env=self.client_env(), capture_output=True, text=True, timeout=timeout)
        result = CtlResult(["conveyorctl", *args], done.returncode, done.stdout, done.stderr)
        if expect is not None:
            assert result.code == expect, f"expected exit {expect}:\n{result}"
        return result

    def ctl_json(self, *args: str) -> Any:
        return self.ctl(*args, "-o", "json").json()

    def runs(self, pipeline: str = "-") -> list[dict[str, Any]]:
        """`conveyorctl runs list PIPELINE -o json`, newest first."""
        runs: list[dict[str, Any]] = self.ctl_json("runs", "list", pipeline, "--limit", "0").get("runs", [])
        return runs

    def wait_for_runs(self, pipeline: str, count: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until `pipeline` has at least `count` runs and all of them have finished; the runs."""

        def finished() -> list[dict[str, Any]]:
            runs = self.runs(pipeline)
            assert len(runs) >= count, f"{len(runs)} runs of {pipeline}, waiting for {count}: {runs}"
            assert all(run["state"] in TERMINAL_STATES for run in runs), f"unfinished runs: {runs}"
            return runs

        return wait_until(finished, timeout)

    def wait_for_run(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """`conveyorctl runs get NAME -o json` once the run has finished."""

        def finished() -> dict[str, Any]:
            run: dict[str, Any] = self.ctl_json("runs", "get", name)
            assert run["state"] in TERMINAL_STATES, f"run not finished: {run}"
            return run

        return wait_until(finished, timeout)

    def run_log(self, name: str) -> list[dict[str, Any]]:
        """`conveyorctl runs logs NAME -o json`: one RunLogEntry object per line."""
        return [json.loads(line) for line in self.ctl("runs", "logs", name, "-o", "json").stdout.splitlines() if line]

    def events(self, repository: str) -> list[dict[str, Any]]:
        """`conveyorctl events list --repository REPOSITORY -o json`, newest first."""
        events: list[dict[str, Any]] = self.ctl_json("events", "list", "--repository", repository).get("events", [])
        return events

    def grpcurl(self, *args: str, expect: int | None = 0) -> CtlResult:
        argv = [str(GRPCURL), "-plaintext", *args]
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
        result = CtlResult(["grpcurl", "-plaintext", *args], done.returncode, done.stdout, done.stderr)
        if expect is not None:
            assert result.code == expect, f"expected exit {expect}:\n{result}"
        return result

    def post_webhook(
        self, fmt: str, body: bytes, headers: Mapping[str, str] | None = None, *, token: str | None = None
    ) -> tuple[int, str]:
        """POST a webhook to the trigger; (HTTP status, body). Authenticated with the token by default."""
        request = urllib.request.Request(
            f"http://{self.webhook_addr}/webhooks/{fmt}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        request.add_header("Authorization", f"Bearer {self.token if token is None else token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def apps(self) -> kube_client.AppsV1Api:
        """The official Kubernetes client's apps/v1 API against the sandbox (context `sandbox`)."""
        if self._kube is None:
            self._kube = kube_config.new_client_from_config(
                str(self.kubeconfig), context=SANDBOX_CLUSTER, persist_config=False
            )
        return kube_client.AppsV1Api(self._kube)

    def create_deployment(self, name: str, namespace: str = samples.NAMESPACE) -> dict[str, str]:
        """A copy of the sandbox's sample Deployment `web` named `name` (containers `app` and
        `log-shipper`, init container `migrate`), created through the Kubernetes API; its images."""
        body = samples.web(namespace)
        body["metadata"]["name"] = name
        labels = {"app": name}
        body["metadata"]["labels"] = dict(labels)
        body["spec"]["selector"] = {"matchLabels": dict(labels)}
        body["spec"]["template"]["metadata"]["labels"] = dict(labels)
        self.apps().create_namespaced_deployment(namespace, body)
        return self.images(name, namespace)

    def deployment(self, name: str, namespace: str = samples.NAMESPACE) -> dict[str, Any]:
        """A Deployment as the API server returns it (JSON), through the official client."""
        response = self.apps().read_namespaced_deployment(name, namespace, _preload_content=False)
        deployment: dict[str, Any] = json.loads(response.data)
        return deployment

    def generation(self, name: str, namespace: str = samples.NAMESPACE) -> int:
        """A Deployment's metadata.generation: it moves once per change of its spec (one per deploy)."""
        return int(self.deployment(name, namespace)["metadata"]["generation"])

    def images(self, name: str, namespace: str = samples.NAMESPACE) -> dict[str, str]:
        """{container name: image} of a Deployment's pod template (init containers included)."""
        spec = self.deployment(name, namespace)["spec"]["template"]["spec"]
        return {c["name"]: c["image"] for c in [*spec.get("initContainers", []), *spec["containers"]]}

    # ------------------------------------------------------------ diagnostics

    def logs(self, tail: int = 12_000) -> str:
        parts = []
        for process in self.processes:
            text = process.output()
            if len(text) > tail:
                text = "...\n" + text[-tail:]
            state = "running" if process.returncode is None else f"exited {process.returncode}"
            parts.append(f"===== {process.name} ({state}) =====\n{text}")
        return "\n".join(parts)

    def assert_all_running(self) -> None:
        dead = [f"{p.name} exited {p.returncode}" for p in self.processes if p.returncode is not None]
        assert not dead, "processes died: " + ", ".join(dead)

    # ------------------------------------------------------------ shutdown

    def stop(self) -> dict[str, int]:
        """SIGTERM every process in reverse start order; their exit statuses."""
        if self._kube is not None:
            self._kube.close()
            self._kube = None
        codes: dict[str, int] = {}
        problems: list[str] = []
        for process in reversed(self.processes):
            try:
                codes[process.name] = process.terminate(STOP_TIMEOUT)
            except AssertionError as exc:  # ignored SIGTERM: killed
                problems.append(str(exc))
        for process in self.processes:
            process.kill()  # no-op for the exited ones
        assert not problems, "\n".join(problems)
        return codes


def clusters_file(path: pathlib.Path, kubeconfig: pathlib.Path) -> pathlib.Path:
    document = {
        "clusters": [
            {
                "name": SANDBOX_CLUSTER,
                "platform": "KUBERNETES",
                "region": "local",
                "kubeconfig": str(kubeconfig),
                "context": SANDBOX_CLUSTER,
            }
        ]
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _wait_for_line(process: ServiceProcess, prefix: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.startswith(prefix) for line in process.output().splitlines()):
            return
        if process.returncode is not None:
            break
        time.sleep(0.05)
    raise TimeoutError(f"{process.name} printed no {prefix!r} line; log:\n{process.output()[-4000:]}")


@contextlib.contextmanager
def running_system(
    workdir: pathlib.Path,
    *,
    registries_file: pathlib.Path | None = None,
    webhook_port: int | None = None,
    rollout_delay: str = "300ms",
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[System]:
    """The five processes started and ready; stopped (and checked for clean exits) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    logs_dir = workdir / "logs"
    kubeconfig = workdir / "sandbox-kubeconfig"
    nats_port = free_port()
    system = System(
        workdir=workdir,
        config_addr=f"127.0.0.1:{free_port()}",
        trigger_addr=f"127.0.0.1:{free_port()}",
        deployer_addr=f"127.0.0.1:{free_port()}",
        webhook_addr=f"127.0.0.1:{webhook_port or free_port()}",
        nats_url=f"nats://127.0.0.1:{nats_port}",
        token=secrets.token_hex(20),
        kubeconfig=kubeconfig,
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_") and k != "KUBECONFIG"}
    env = {
        **base,
        "PYTHONUNBUFFERED": "1",
        "HOME": str(workdir),  # no ~/.kube/config of the machine
        "CONVEYOR_DATA_DIR": str(workdir / "data"),
        "CONVEYOR_NATS_URL": system.nats_url,
        "CONVEYOR_CONFIG_ADDR": system.config_addr,
        "CONVEYOR_TRIGGER_ADDR": system.trigger_addr,
        "CONVEYOR_DEPLOYER_ADDR": system.deployer_addr,
        "CONVEYOR_WEBHOOK_ADDR": system.webhook_addr,
        "CONVEYOR_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'data' / 'conveyor.db'}",
        "CONVEYOR_WEBHOOK_TOKEN": system.token,
        "CONVEYOR_CLUSTERS_FILE": str(clusters_file(workdir / "clusters.yaml", kubeconfig)),
        "CONVEYOR_LOG_FORMAT": "text",
        **FAST_SETTINGS,
    }
    if registries_file is not None:
        env["CONVEYOR_REGISTRIES_FILE"] = str(registries_file)
    env |= dict(extra_env or {})
    (workdir / "data").mkdir(exist_ok=True)

    def start(name: str, argv: list[str]) -> ServiceProcess:
        process = ServiceProcess(name, argv, env, logs_dir)
        process.env = dict(env)  # exactly this environment: no CONVEYOR_* or KUBECONFIG of the caller
        system.processes.append(process.start())
        return process

    try:
        nats = start(
            "nats",
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", str(workdir / "jetstream")],
        )
        wait_port(nats_port, READY_TIMEOUT)
        assert nats.returncode is None, nats.output()
        sandbox = start(
            "sandbox",
            [
                sys.executable,
                "-m",
                "conveyor_sandbox",
                "--port",
                str(free_port()),
                "--kubeconfig",
                str(kubeconfig),
                "--rollout-delay",
                rollout_delay,
            ],
        )
        _wait_for_line(sandbox, "SANDBOX", READY_TIMEOUT)
        start("config", [console_script("conveyor-config")]).wait_ready(system.config_addr, READY_TIMEOUT)
        trigger = start("trigger", [console_script("conveyor-trigger")])
        deployer = start("deployer", [console_script("conveyor-deployer")])
        trigger.wait_ready(system.trigger_addr, READY_TIMEOUT)
        deployer.wait_ready(system.deployer_addr, READY_TIMEOUT)
        wait_port(int(system.webhook_addr.rsplit(":", 1)[1]), READY_TIMEOUT)
    except BaseException:
        logs = system.logs()
        with contextlib.suppress(Exception):
            system.stop()
        for process in system.processes:
            process.kill()
        print(f"system start-up failed; logs:\n{logs}", file=sys.stderr)
        raise
    try:
        yield system
    finally:
        codes = system.stop()
    unclean = {name: code for name, code in codes.items() if code != 0}
    assert not unclean, f"processes did not exit cleanly on SIGTERM: {unclean}\n{system.logs()}"
