"""buf lint / buf breaking for protos/, with the rules in protos/buf.yaml.

    python scripts/buf_check.py lint
    python scripts/buf_check.py breaking [--against REF]     # default REF: HEAD~1

buf cannot resolve google/api/*.proto on its own here (they come from googleapis-common-protos, and there is
no registry to fetch them from), so both checks run on images: FileDescriptorSets that protoc builds with the
include roots scripts/gen_protos.py uses. `breaking` compares the work tree's protos with those of REF, read
with `git archive`; it is skipped, saying so, when REF does not exist (a first commit, a shallow clone) or has
no protos/ yet: there is nothing to break. --root runs either check on another checkout (the tests use it).
"""

from __future__ import annotations

import argparse
import io
import pathlib
import subprocess
import sys
import tarfile
import tempfile

import grpc_tools
from grpc_tools import protoc

REPO = pathlib.Path(__file__).resolve().parent.parent
BUF = REPO / "tools" / "node_modules" / ".bin" / "buf"
INSTALL = "npm ci --prefix tools --no-audit --no-fund"


def third_party_includes() -> list[str]:
    """Well-known types from grpc_tools, google.api from googleapis-common-protos (as scripts/gen_protos.py)."""
    import google.api

    return [
        str(pathlib.Path(grpc_tools.__file__).parent / "_proto"),
        str(pathlib.Path(google.api.__path__[0]).parent.parent),
    ]


def proto_files(proto_root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))


def build_image(proto_root: pathlib.Path, out: pathlib.Path) -> list[str]:
    """Compile every .proto under proto_root into the image `out`; returns the files, relative to the root."""
    files = proto_files(proto_root)
    if not files:
        raise SystemExit(f"no .proto files under {proto_root}")
    args = ["grpc_tools.protoc", f"-I{proto_root}", *(f"-I{d}" for d in third_party_includes())]
    args += ["--include_imports", "--include_source_info", f"--descriptor_set_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc could not compile {proto_root}")
    return files


def buf(*args: str | pathlib.Path) -> int:
    if not BUF.exists():
        raise SystemExit(f"buf is not installed: run `{INSTALL}` in {REPO}")
    return subprocess.run([str(BUF), *map(str, args)], check=False).returncode


def only(files: list[str]) -> list[str]:
    # The image carries the imported google/* files too; check ours only.
    return [arg for f in files for arg in ("--path", f)]


def lint(root: pathlib.Path, tmp: pathlib.Path) -> int:
    protos = root / "protos"
    files = build_image(protos, tmp / "head.binpb")
    return buf("lint", tmp / "head.binpb", "--config", protos / "buf.yaml", *only(files))


def git(root: pathlib.Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)


def breaking(root: pathlib.Path, tmp: pathlib.Path, against: str) -> int:
    protos = root / "protos"
    if git(root, "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}").returncode != 0:
        print(f"buf breaking: skipped: {against} does not exist here (first commit or shallow clone); nothing to break")
        return 0
    archive = git(root, "archive", "--format=tar", against, "--", "protos")
    if archive.returncode != 0:
        print(f"buf breaking: skipped: {against} has no protos/; nothing to break")
        return 0
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp / "against", filter="data")
    if not proto_files(tmp / "against" / "protos"):
        print(f"buf breaking: skipped: {against} has no .proto files; nothing to break")
        return 0
    build_image(tmp / "against" / "protos", tmp / "against.binpb")
    files = build_image(protos, tmp / "head.binpb")
    # Files of REF that are gone are ours too: name them so FILE_NO_DELETE sees the deletion.
    removed = sorted(set(proto_files(tmp / "against" / "protos")) - set(files))
    print(f"buf breaking: protos/ against {against}")
    return buf(
        "breaking",
        tmp / "head.binpb",
        "--against",
        tmp / "against.binpb",
        "--config",
        protos / "buf.yaml",
        *only(files + removed),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=["lint", "breaking"])
    parser.add_argument("--against", default="HEAD~1", help="git revision to compare with (breaking)")
    parser.add_argument("--root", type=pathlib.Path, default=REPO, help="checkout holding protos/ (default: this one)")
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="buf-check-") as tmp:
        if ns.check == "lint":
            return lint(ns.root.resolve(), pathlib.Path(tmp))
        return breaking(ns.root.resolve(), pathlib.Path(tmp), ns.against)


if __name__ == "__main__":
    sys.exit(main())
