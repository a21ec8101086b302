"""conveyorctl's command line itself: flags, help, error objects and completion scripts (no services)."""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import shutil
import subprocess

import grpc
import pytest
import yaml
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from conveyor.errors import FieldViolation
from conveyor_ctl import completion, main as ctl_main, render
from conveyor_ctl.client import CONFIG, CallError
from conveyor_ctl.failure import Failure, headline
from tests.unit.ctl.test_ctl_spec import FakeRpcError


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = ctl_main.run(list(argv), environ={}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(all_parsers(child))
    return found


# ---------------------------------------------------------------- flags


def test_no_parser_accepts_abbreviated_flags() -> None:
    parsers = all_parsers(ctl_main.build_parser())
    assert len(parsers) > 20
    assert [p.prog for p in parsers if p.allow_abbrev] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pipelines", "create", "web", "--imag", "r.example.com/a/b"], "unrecognized arguments: --imag r.example.com"),
        (["runs", "list", "--out", "json"], "unrecognized arguments: --out"),
        (["--time", "5s", "targets", "clusters"], "argument COMMAND: invalid choice: '5s'"),
        (["pipelines", "delete", "web", "--ye"], "unrecognized arguments: --ye"),
    ],
)
def test_an_abbreviated_flag_is_a_usage_error(argv: list[str], message: str) -> None:
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {message}"), err
    assert err.endswith("(see conveyorctl --help)\n")


def test_every_namespace_option_has_the_short_form() -> None:
    with_namespace = [
        c for c in completion.commands(ctl_main.build_parser()) if any("--namespace" in o.strings for o in c.options)
    ]
    assert {c.key for c in with_namespace} >= {
        "conveyorctl pipelines list",
        "conveyorctl pipelines create",
        "conveyorctl pipelines update",
        "conveyorctl targets workloads",
        "conveyorctl targets containers",
    }
    for command in with_namespace:
        (option,) = [o for o in command.options if "--namespace" in o.strings]
        assert set(option.strings) == {"-n", "--namespace"}, command.key


def test_n_sets_the_pipelines_namespace() -> None:
    parser = ctl_main.build_parser()
    assert parser.parse_args(["pipelines", "create", "web", "-n", "shop"]).namespace == "shop"
    assert parser.parse_args(["pipelines", "update", "web", "-n", "shop"]).namespace == "shop"
    assert parser.parse_args(["pipelines", "list", "-n", "shop"]).namespace == "shop"


# ---------------------------------------------------------------- help


def test_bare_conveyorctl_prints_its_help() -> None:
    code, out, err = run()
    assert (code, err) == (0, "")
    assert out.startswith("usage: conveyorctl")
    for group in ("pipelines", "runs", "events", "targets", "completion"):
        assert f"    {group}" in out
    assert "exit codes:" in out


@pytest.mark.parametrize(
    ("group", "verbs"),
    [
        ("pipelines", ["list", "get", "create", "update", "delete", "start", "tags"]),
        ("runs", ["list", "get", "delete", "logs"]),
        ("events", ["list"]),
        ("targets", ["clusters", "namespaces", "workloads", "containers"]),
    ],
)
def test_a_bare_group_prints_its_help(group: str, verbs: list[str]) -> None:
    code, out, err = run(group)
    assert (code, err) == (0, "")
    assert out.startswith(f"usage: conveyorctl {group}")
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ") and not line.startswith("     ")]
    assert listed == verbs


def test_help_says_tag_filters_are_full_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_main.run(["pipelines", "create", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "must match the WHOLE tag" in text
    assert r"regex:v\d+(\.\d+)* matches v1.3.0" in text


def test_help_documents_the_exit_code_of_a_followed_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl_main.run(["--help"]) == 0
    top = capsys.readouterr().out
    assert "6  pipelines start --follow, runs logs -f: the run did not succeed" in top
    assert ctl_main.run(["runs", "logs", "--help"]) == 0
    assert "exit 6 if it does not succeed" in " ".join(capsys.readouterr().out.split())


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("argv", "fmt"),
    [
        (["runs", "list"], "table"),
        (["-o", "json", "runs"], "json"),
        (["runs", "list", "--output", "yaml"], "yaml"),
        (["runs", "list", "--output=json"], "json"),
        (["runs", "list", "-oyaml"], "yaml"),
        (["runs", "list", "-o", "xml"], "table"),
        (["runs", "list", "--", "-o", "json"], "table"),
    ],
)
def test_requested_format(argv: list[str], fmt: str) -> None:
    assert ctl_main.requested_format(argv) == fmt


def test_headline_drops_the_violations_the_message_repeats() -> None:
    two = [FieldViolation("a.b", "is required"), FieldViolation("c", "too  long\nby 3")]
    assert headline("invalid request: a.b: is required; c: too long by 3", two) == "invalid request: 2 field violations"
    assert headline("tag filter is not valid RE2", [FieldViolation("filter", "tag filter is not valid RE2")]) == (
        "invalid request: 1 field violation"
    )
    assert headline("pipeline web: a.b: is required", two[:1]) == "pipeline web: 1 field violation"
    assert headline("pipeline not found", []) == "pipeline not found"


def invalid_argument_error() -> CallError:
    violations = [
        error_details_pb2.BadRequest.FieldViolation(field="pipeline.source.registry", description="is required"),
        error_details_pb2.BadRequest.FieldViolation(field="pipeline.target.cluster", description="is required"),
    ]
    info = error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="conveyor.dev")
    details = []
    for message in (error_details_pb2.BadRequest(field_violations=violations), info):
        packed = any_pb2.Any()
        packed.Pack(message)
        details.append(packed)
    text = "invalid request: pipeline.source.registry: is required; pipeline.target.cluster: is required"
    status = status_pb2.Status(code=3, message=text, details=details)
    return CallError(CONFIG, "h:1", FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, text, status))


def test_a_call_failure_as_an_object_carries_each_violation_once() -> None:
    data = Failure.from_call(invalid_argument_error()).data()

    assert data == {
        "error": {
            "code": "INVALID_ARGUMENT",
            "message": "invalid request: 2 field violations",
            "exitCode": 1,
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [
                        {"field": "pipeline.source.registry", "description": "is required"},
                        {"field": "pipeline.target.cluster", "description": "is required"},
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "INVALID_ARGUMENT",
                    "domain": "conveyor.dev",
                },
            ],
        }
    }
    assert json.dumps(data).count("pipeline.source.registry") == 1
    assert yaml.safe_load(render.dump(data, "yaml")) == data  # plain dicts, so YAML can dump it too


def test_usage_errors_are_objects_under_json_and_yaml() -> None:
    bad_flag = run("runs", "list", "--nope", "-o", "json")
    bad_name = run("pipelines", "get", "Not_A_Name", "-o", "yaml")
    bad_timeout = run("--timeout", "soon", "-o", "json", "targets", "clusters")

    assert bad_flag[0] == 2 and bad_flag[1] == ""
    assert json.loads(bad_flag[2]) == {
        "error": {
            "code": "USAGE",
            "message": "unrecognized arguments: --nope (see conveyorctl --help)",
            "exitCode": 2,
            "details": [],
        }
    }
    assert yaml.safe_load(bad_name[2])["error"]["message"] == (
        "'Not_A_Name' is not a pipeline name (expected ID or pipelines/ID)"
    )
    assert bad_name[0] == 2
    assert json.loads(bad_timeout[2])["error"]["code"] == "USAGE"


# ---------------------------------------------------------------- completion


VERBS = ["pipelines", "runs", "events", "targets", "completion", "create", "delete", "logs", "workloads"]


def complete_in_bash(script: str, *words: str) -> list[str]:
    """COMPREPLY of the bash completion function for `conveyorctl WORDS...` (the last word is being typed)."""
    line = ["conveyorctl", *words]
    quoted = " ".join(f"'{w}'" for w in line)
    program = (
        f'{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(line) - 1}; _conveyorctl; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.split()


def test_bash_completion_is_valid_and_completes_commands_flags_and_values(tmp_path: pathlib.Path) -> None:
    code, script, err = run("completion", "bash")
    assert (code, err) == (0, "")
    path = tmp_path / "conveyorctl.bash"
    path.write_text(script)
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    for verb in VERBS:
        assert f"'{verb}'" in script
    assert script.rstrip().endswith("complete -F _conveyorctl conveyorctl")

    assert complete_in_bash(script, "pi") == ["pipelines"]
    assert complete_in_bash(script, "pipelines", "") == ["list", "get", "create", "update", "delete", "start", "tags"]
    assert complete_in_bash(script, "-o", "json", "--timeout", "5s", "runs", "l") == ["list", "logs"]
    assert complete_in_bash(script, "pipelines", "create", "web", "--ki") == ["--kind"]
    assert complete_in_bash(script, "pipelines", "create", "--kind", "") == [
        "deployment",
        "deploy",
        "statefulset",
        "sts",
        "daemonset",
        "ds",
    ]
    assert complete_in_bash(script, "runs", "list", "-o", "y") == ["yaml"]
    assert complete_in_bash(script, "completion", "") == ["bash", "zsh", "fish"]
    assert "--yes" in complete_in_bash(script, "pipelines", "delete", "web", "--")
    assert complete_in_bash(script, "runs", "logs", "--") == [
        "--help",
        "--config-addr",
        "--trigger-addr",
        "--deployer-addr",
        "--output",
        "--timeout",
        "--follow",
    ]


def test_bash_completion_completes_files_for_dash_f(tmp_path: pathlib.Path) -> None:
    (tmp_path / "web.yaml").write_text("{}")
    _, script, _ = run("completion", "bash")
    program = f"cd {tmp_path}\n{script}\nCOMP_WORDS=(conveyorctl pipelines create -f w); COMP_CWORD=4; _conveyorctl\n"
    program += 'printf "%s\\n" "${COMPREPLY[@]}"'
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True, timeout=30)
    assert done.stdout.split() == ["web.yaml"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_command(shell: str) -> None:
    code, script, _ = run("completion", shell)
    assert code == 0
    for command in completion.commands(ctl_main.build_parser()):
        for word, _help in command.words:
            assert word in script, (shell, word)
        for option in command.options:
            long_names = [s for s in option.strings if s.startswith("--")]
            assert all((s if shell == "zsh" else f"-l {s[2:]}") in script for s in long_names), (shell, option)
    if shell == "zsh":
        assert script.startswith("#compdef conveyorctl\n") and "compdef _conveyorctl conveyorctl" in script
        assert "'pipelines:pipelines\\: what to deploy where'" not in script  # only the word's colon is escaped
        assert "'pipelines:pipelines: what to deploy where'" in script
    else:
        assert "complete -c conveyorctl -n 'test (__conveyorctl_key) = \\'conveyorctl pipelines\\'' -a 'list'" in script


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_parse(shell: str, tmp_path: pathlib.Path) -> None:
    # scripts/bootstrap.sh installs both for `make test`; a missing shell is a failure, not a skip.
    assert shutil.which(shell), f"{shell} is not installed: run scripts/bootstrap.sh test"
    path = tmp_path / f"conveyorctl.{shell}"
    path.write_text(run("completion", shell)[1])
    syntax = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
