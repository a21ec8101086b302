"""scripts/bootstrap.sh against a fake machine: PATH holds only stubs that log their arguments.

The script is copied into a temp "repo" (so `.venv` is absent unless a test creates it) and run with
PATH set to one stub directory: every command it may call (id, apt-get, python3, pg_*, psql,
createdb, sleep) is a stub there, and a package "is installed" when its command's stub exists.
apt-get's stub installs by copying the stubs from a shelf. The Makefile's two stamps are checked with
`make -n` against a venv that does not exist.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
from collections.abc import Iterable

import pytest

from tests.unit.artifacts.artifacts_support import ROOT

SCRIPT = ROOT / "scripts" / "bootstrap.sh"
BASH = shutil.which("bash") or "/bin/bash"

# Debian package -> the stub its installation puts on PATH (mirrors the script's CHECK table).
PROVIDES = {
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "postgresql-client": "pg_isready",
    "postgresql": "pg_lsclusters",
    "nodejs": "node",
    "npm": "npm",
    "prometheus": "promtool",
    "zsh": "zsh",
    "fish": "fish",
}
EVERYTHING = tuple(PROVIDES)


class Machine:
    def __init__(self, base: pathlib.Path) -> None:
        self.repo = base / "repo"
        self.bin = base / "bin"
        self.shelf = base / "shelf"
        self.state = base / "state"
        self.log = base / "calls.log"
        self.hba = base / "pg_hba.conf"
        for directory in (self.repo / "scripts", self.bin, self.shelf, self.state):
            directory.mkdir(parents=True)
        shutil.copy(SCRIPT, self.repo / "scripts" / "bootstrap.sh")
        self.hba.write_text("local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n")
        self.log.touch()
        self.uid = 0
        self.ensurepip = True
        self.postgres = "up"  # up | down | never (down and never comes up)
        self.start_delay = 2  # pg_isready failures after pg_ctlcluster start
        self.test_database = True
        self.auth_ok = True
        self._write_stubs()

    # ---------------------------------------------------------------- stubs

    def stub(self, directory: pathlib.Path, name: str, body: str = "exit 0") -> None:
        path = directory / name
        path.write_text(f'#!{BASH}\necho "{name} $*" >> "{self.log}"\n{body}\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def _write_stubs(self) -> None:
        state = self.state
        self.stub(self.bin, "id", f'n=$(<"{state}/uid"); echo "$n"')
        self.stub(self.bin, "sleep")
        self.stub(self.bin, "python3", f'[[ -e "{state}/ensurepip" ]]')
        self.stub(
            self.bin,
            "apt-get",
            f'[[ $1 == install ]] || exit 0\nfor p in "$@"; do\n'
            f'  case $p in -*|install) ;; python3-venv) : > "{state}/ensurepip" ;;\n'
            f'  *) /bin/cp "{self.shelf}/$(<"{state}/provides-$p")" "{self.bin}/" ;; esac\ndone',
        )
        for package, command in PROVIDES.items():
            (state / f"provides-{package}").write_text(command)
        # pg_isready: up, or down until pg_ctlcluster start has been followed by `start_delay` probes.
        self.stub(
            self.shelf,
            "pg_isready",
            f'[[ -e "{state}/pg-up" ]] && exit 0\n[[ -e "{state}/pg-starting" ]] || exit 2\n'
            f'n=$(<"{state}/pg-starting")\n'
            f'if ((n <= 0)); then : > "{state}/pg-up"; exit 0; fi\n'
            f'echo $((n - 1)) > "{state}/pg-starting"; exit 2',
        )
        self.stub(
            self.bin,
            "pg_ctlcluster",
            f'[[ $4 == start && ! -e "{state}/pg-never" ]] && delay=$(<"{state}/delay") && '
            f'echo "$delay" > "{state}/pg-starting"\nexit 0',
        )
        self.stub(self.shelf, "pg_lsclusters", 'echo "15 main 5432 down postgres /var/lib/pg /var/log/pg.log"')
        self.stub(self.bin, "pg_conftool", f'echo "{self.hba}"')
        # psql: the `test` database answers when it exists; with bad auth nothing answers.
        self.stub(
            self.bin,
            "psql",
            f'[[ -e "{state}/auth" ]] || {{ echo "FATAL: password authentication failed" >&2; exit 2; }}\n'
            f'for a in "$@"; do [[ $a == test && ! -e "{state}/testdb" ]] && '
            f'{{ echo "FATAL: database does not exist" >&2; exit 2; }}; done\necho 1',
        )
        self.stub(self.bin, "createdb", f': > "{state}/testdb"')
        for command in PROVIDES.values():
            if command not in ("pg_isready", "pg_lsclusters"):
                self.stub(self.shelf, command)

    def have(self, *packages: str) -> None:
        for package in packages:
            shutil.copy(self.shelf / PROVIDES[package], self.bin / PROVIDES[package])

    # ---------------------------------------------------------------- running

    def run(self, mode: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        (self.state / "uid").write_text(str(self.uid))
        (self.state / "delay").write_text(str(self.start_delay))
        for flag, on in {
            "ensurepip": self.ensurepip,
            "pg-up": self.postgres == "up",
            "pg-never": self.postgres == "never",
            "testdb": self.test_database,
            "auth": self.auth_ok,
        }.items():
            (self.state / flag).unlink(missing_ok=True)
            if on:
                (self.state / flag).touch()
        return subprocess.run(
            [BASH, str(self.repo / "scripts" / "bootstrap.sh"), mode],
            check=False,
            env={"PATH": str(self.bin), **(env or {})},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def calls(self, name: str | None = None) -> list[str]:
        lines = self.log.read_text().splitlines()
        return [line for line in lines if name is None or line.split(" ", 1)[0] == name]


@pytest.fixture
def machine(tmp_path: pathlib.Path) -> Machine:
    return Machine(tmp_path)


def installs(machine: Machine) -> list[str]:
    return [line for line in machine.calls("apt-get") if line.startswith("apt-get install")]


def lines(text: str) -> list[str]:
    return text.splitlines()


def output_mentions(result: subprocess.CompletedProcess[str], words: Iterable[str]) -> bool:
    return all(word in result.stdout + result.stderr for word in words)


# ---------------------------------------------------------------- packages


def test_everything_present_is_a_silent_no_op(machine: Machine) -> None:
    machine.have(*EVERYTHING)
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert machine.calls("apt-get") == []
    assert machine.calls("pg_ctlcluster") == []
    assert machine.calls("pg_isready") == ["pg_isready -h 127.0.0.1 -p 5432 -q"]


def test_missing_packages_as_root_are_installed_in_one_apt_call(machine: Machine) -> None:
    machine.have("postgresql-client", "postgresql", "nodejs")
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    assert machine.calls("apt-get") == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends docker-registry skopeo npm prometheus zsh fish",
    ]
    assert lines(result.stdout) == [
        "bootstrap: installing docker-registry",
        "bootstrap: installing skopeo",
        "bootstrap: installing npm",
        "bootstrap: installing prometheus",
        "bootstrap: installing zsh",
        "bootstrap: installing fish",
    ]


def test_not_root_stops_with_the_exact_apt_line_and_installs_nothing(machine: Machine) -> None:
    machine.uid = 1000
    machine.have("postgresql-client", "postgresql", "nodejs", "npm", "prometheus", "zsh", "fish")
    result = machine.run("test")
    assert result.returncode != 0
    assert "  sudo apt-get install -y --no-install-recommends docker-registry skopeo\n" in result.stderr
    assert machine.calls("apt-get") == []
    # It stops at once: PostgreSQL is not even looked at.
    assert machine.calls("pg_isready") == []


def test_root_without_apt_get_stops_and_names_the_packages(machine: Machine) -> None:
    (machine.bin / "apt-get").unlink()
    machine.have("postgresql-client", "postgresql", "nodejs", "npm", "docker-registry", "prometheus", "zsh", "fish")
    result = machine.run("test")
    assert result.returncode != 0
    assert "No apt-get here" in result.stderr
    assert "sudo apt-get install -y --no-install-recommends skopeo" in result.stderr


def test_a_package_whose_command_still_is_missing_after_install_fails(machine: Machine) -> None:
    machine.have("postgresql-client", "postgresql", "nodejs", "npm", "docker-registry", "prometheus", "zsh", "fish")
    (machine.state / "provides-skopeo").write_text("not-skopeo")
    machine.stub(machine.shelf, "not-skopeo")
    result = machine.run("test")
    assert result.returncode != 0
    assert "installed skopeo but skopeo is still not found" in result.stderr


def test_run_mode_needs_only_the_registry_tools_and_leaves_postgres_alone(machine: Machine) -> None:
    machine.postgres = "down"
    result = machine.run("run")
    assert result.returncode == 0, result.stderr
    assert installs(machine) == ["apt-get install -y -qq --no-install-recommends docker-registry skopeo"]
    assert machine.calls("pg_isready") == machine.calls("pg_ctlcluster") == []


def test_lint_mode_needs_only_node_for_buf(machine: Machine) -> None:
    result = machine.run("lint")
    assert result.returncode == 0, result.stderr
    assert installs(machine) == ["apt-get install -y -qq --no-install-recommends nodejs npm"]
    assert machine.calls("pg_isready") == []


def test_python3_venv_is_needed_only_until_the_venv_exists(machine: Machine) -> None:
    machine.have(*EVERYTHING)
    machine.ensurepip = False
    assert machine.run("run").returncode == 0
    assert installs(machine) == ["apt-get install -y -qq --no-install-recommends python3-venv"]

    venv_python = machine.repo / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.touch(mode=0o755)
    machine.log.write_text("")
    assert machine.run("run").returncode == 0
    assert machine.calls("apt-get") == []
    assert machine.calls("python3") == []


def test_unknown_mode_is_a_usage_error(machine: Machine) -> None:
    result = machine.run("deploy")
    assert result.returncode != 0
    assert "usage: scripts/bootstrap.sh test|run" in result.stderr
    assert machine.calls() == []


# ---------------------------------------------------------------- PostgreSQL


def test_postgres_down_is_started_and_waited_for(machine: Machine) -> None:
    machine.have(*EVERYTHING)
    machine.postgres = "down"
    machine.start_delay = 3
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == ["bootstrap: starting PostgreSQL 15/main"]
    assert machine.calls("pg_ctlcluster") == ["pg_ctlcluster --skip-systemctl-redirect 15 main start"]
    calls = machine.calls()
    after_start = calls[calls.index("pg_ctlcluster --skip-systemctl-redirect 15 main start") + 1 :]
    # Three refusals with a pause after each, then the probe that succeeds, then the database check.
    probes = [c for c in after_start if c.split()[0] in ("pg_isready", "sleep")]
    assert probes == ["pg_isready -h 127.0.0.1 -p 5432 -q", "sleep 0.5"] * 3 + ["pg_isready -h 127.0.0.1 -p 5432 -q"]
    assert machine.calls("psql")


def test_postgres_that_never_comes_up_fails_loudly_and_boundedly(machine: Machine) -> None:
    machine.have(*EVERYTHING)
    machine.postgres = "never"
    result = machine.run("test")
    assert result.returncode != 0
    assert "PostgreSQL 15/main did not accept connections at 127.0.0.1:5432 within 30 s" in result.stderr
    assert "/var/log/pg.log" in result.stderr
    assert len(machine.calls("sleep")) == 60
    assert machine.calls("psql") == []


def test_postgres_start_failure_shows_the_command_with_sudo_when_not_root(machine: Machine) -> None:
    machine.have(*EVERYTHING)
    machine.postgres = "down"
    machine.uid = 1000
    machine.stub(
        machine.bin, "pg_ctlcluster", 'echo "Error: You must run this program as the cluster owner" >&2; exit 1'
    )
    result = machine.run("test")
    assert result.returncode != 0
    assert "sudo pg_ctlcluster --skip-systemctl-redirect 15 main start" in result.stderr
    assert "You must run this program as the cluster owner" in result.stderr


def test_missing_test_database_is_created(machine: Machine) -> None:
    machine.have(*EVERYTHING)
    machine.test_database = False
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == ["bootstrap: creating database test"]
    assert machine.calls("createdb") == ["createdb -h 127.0.0.1 -p 5432 -U postgres -w test"]


def test_postgres_refusing_the_tests_user_fails_with_what_to_do(machine: Machine) -> None:
    machine.have(*EVERYTHING)
    machine.auth_ok = False
    result = machine.run("test")
    assert result.returncode != 0
    assert output_mentions(result, ["password authentication failed", "host all postgres 127.0.0.1/32 trust"])
    assert machine.calls("createdb") == []
    # An existing installation's auth is never edited.
    assert "trust" not in machine.hba.read_text()


def test_freshly_installed_server_is_configured_started_and_given_a_test_database(machine: Machine) -> None:
    machine.have("docker-registry", "skopeo", "nodejs", "npm", "prometheus", "zsh", "fish")
    machine.postgres = "down"
    machine.test_database = False
    # The trust line the script adds is what lets psql in.
    machine.stub(
        machine.bin,
        "psql",
        f'[[ $(<"{machine.hba}") == "host all postgres 127.0.0.1/32 trust"$\'\\n\'* ]] || exit 2\n'
        f'for a in "$@"; do [[ $a == test && ! -e "{machine.state}/testdb" ]] && exit 2; done; echo 1',
    )
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    assert installs(machine) == ["apt-get install -y -qq --no-install-recommends postgresql-client postgresql"]
    assert machine.hba.read_text().splitlines() == [
        "host all postgres 127.0.0.1/32 trust",
        "local all postgres peer",
        "host all all 127.0.0.1/32 scram-sha-256",
    ]
    assert machine.calls("pg_ctlcluster") == ["pg_ctlcluster --skip-systemctl-redirect 15 main start"]
    assert machine.calls("createdb") == ["createdb -h 127.0.0.1 -p 5432 -U postgres -w test"]
    assert lines(result.stdout)[-3:] == [
        f"bootstrap: letting postgres in without a password on 127.0.0.1 ({machine.hba})",
        "bootstrap: starting PostgreSQL 15/main",
        "bootstrap: creating database test",
    ]


def test_freshly_installed_server_already_running_is_reloaded(machine: Machine) -> None:
    machine.have("docker-registry", "skopeo", "nodejs", "npm", "postgresql-client", "prometheus", "zsh", "fish")
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    assert installs(machine) == ["apt-get install -y -qq --no-install-recommends postgresql"]
    assert machine.calls("pg_ctlcluster") == ["pg_ctlcluster --skip-systemctl-redirect 15 main reload"]
    assert machine.hba.read_text().startswith("host all postgres 127.0.0.1/32 trust\n")


def test_an_external_test_database_leaves_local_postgres_alone(machine: Machine) -> None:
    machine.have("docker-registry", "skopeo", "nodejs", "npm", "postgresql-client", "prometheus", "zsh", "fish")
    machine.postgres = "down"
    result = machine.run("test", env={"CONVEYOR_TEST_POSTGRES_URL": "postgresql+asyncpg://u:p@db.example:5432/t"})
    assert result.returncode == 0, result.stderr
    assert machine.calls("apt-get") == []
    assert machine.calls("pg_isready") == machine.calls("pg_ctlcluster") == machine.calls("psql") == []


# ---------------------------------------------------------------- Makefile


def make_dry_run(target: str, tmp_path: pathlib.Path) -> str:
    """`make -n TARGET` against a venv that does not exist, so every install step shows."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_the_runtime_and_sandbox_only(tmp_path: pathlib.Path) -> None:
    out = make_dry_run("run", tmp_path)
    assert "bash scripts/bootstrap.sh run" in out
    assert [line.split(" -e ", 1)[1] for line in lines(out) if " -e " in line] == ["'.[sandbox]'"]
    assert out.rstrip().endswith("-m conveyor_launcher")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_bootstraps_then_installs_dev_tools_lints_and_tests(tmp_path: pathlib.Path) -> None:
    out = lines(make_dry_run("test", tmp_path))
    bootstrap = out.index("bash scripts/bootstrap.sh test")
    install = next(i for i, line in enumerate(out) if "-e '.[dev,sandbox]'" in line)
    lint = out.index("bash scripts/lint.sh")
    pytest_line = next(i for i, line in enumerate(out) if "-m pytest" in line)
    assert bootstrap < install < lint < pytest_line
