from __future__ import annotations

import io
import pathlib
import sys

import pytest

from conveyor_launcher.main import data_dir_lock
from conveyor_launcher.plan import ChildSpec, FileExists, LaunchError, PortOpen, Start, Step, free_port
from conveyor_launcher.supervisor import ChildExited, Console, Supervisor


def test_one_launcher_per_data_dir(tmp_path: pathlib.Path) -> None:
    with (
        data_dir_lock(tmp_path / "data"),
        pytest.raises(LaunchError, match="already using"),
        data_dir_lock(tmp_path / "data"),
    ):
        pass
    with data_dir_lock(tmp_path / "data"):  # released
        pass


def test_console_prefixes_and_colours_only_when_asked() -> None:
    plain, coloured = io.StringIO(), io.StringIO()
    Console(plain, colour=False).line("config", "hello")
    Console(coloured, colour=True).line("config", "hello")
    assert plain.getvalue() == "config   | hello\n"
    assert coloured.getvalue() == "\x1b[32mconfig   |\x1b[0m hello\n"


def python_child(name: str, code: str) -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-c", code], {"PYTHONUNBUFFERED": "1"})


async def test_wait_ready_fails_when_the_child_exits_and_shows_its_output() -> None:
    out = io.StringIO()
    supervisor = Supervisor(Console(out, colour=False), grace=1)
    child = await supervisor.start(python_child("config", "print('boom: bad settings'); raise SystemExit(2)"))

    async def never() -> bool:
        return False

    with pytest.raises(ChildExited) as caught:
        await supervisor.wait_ready(child, never, timeout=30)
    assert caught.value.code == 2
    assert list(child.tail) == ["boom: bad settings"]
    assert "config   | boom: bad settings" in out.getvalue()


async def test_wait_ready_times_out_and_stop_kills_a_stubborn_child() -> None:
    out = io.StringIO()
    supervisor = Supervisor(Console(out, colour=False), grace=0.5)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up'); time.sleep(60)"
    child = await supervisor.start(python_child("trigger", stubborn))

    async def said_up() -> bool:
        return "up" in child.tail  # SIGTERM is ignored from here on

    async def never() -> bool:
        return False

    await supervisor.wait_ready(child, said_up, timeout=30)
    with pytest.raises(LaunchError, match=r"did not become ready within 0\.3s"):
        await supervisor.wait_ready(child, never, timeout=0.3)
    await supervisor.stop_all()
    assert child.process.returncode == -9
    assert "trigger did not stop in time: killing it" in out.getvalue()


async def test_a_step_prepares_its_files_then_waits_for_every_process(tmp_path: pathlib.Path) -> None:
    out = io.StringIO()
    supervisor = Supervisor(Console(out, colour=False), grace=5)
    stale, ready, nested = tmp_path / "stale", tmp_path / "ready", tmp_path / "a" / "b"
    stale.write_text("old")
    code = f"import pathlib, time; pathlib.Path({str(ready)!r}).write_text('x'); time.sleep(60)"
    writer = python_child("sandbox", code)
    step = Step(
        notes=("starting it",),
        mkdirs=(nested,),
        unlink=(stale,),
        writes=((tmp_path / "written", "content"),),
        start=(Start(writer, FileExists(ready)),),
    )
    await supervisor.start_step(step, ready_timeout=30)
    assert ready.exists() and nested.is_dir() and not stale.exists()
    assert (tmp_path / "written").read_text() == "content"
    assert (tmp_path / "written").stat().st_mode & 0o077 == 0  # generated files may hold the webhook token
    assert out.getvalue().startswith("conveyor | starting it\n")
    await supervisor.stop_all()


async def test_a_step_fails_when_a_process_is_never_ready(tmp_path: pathlib.Path) -> None:
    supervisor = Supervisor(Console(io.StringIO(), colour=False), grace=5)
    sleeper = python_child("nats", "import time; time.sleep(60)")
    with pytest.raises(LaunchError, match="nats did not become ready within 1s"):
        await supervisor.start_step(Step(start=(Start(sleeper, PortOpen("127.0.0.1", free_port())),)), ready_timeout=1)
    await supervisor.stop_all()
