"""Generate the Python code for protos/conveyor/v1 into src/conveyor/v1.

The one way generated code is produced: `make protos` runs this with the pinned
grpcio-tools. tests/unit/test_generated_code.py regenerates into a temporary
directory and fails when the committed code differs.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_DIR = pathlib.Path("conveyor") / "v1"
DEFAULT_OUT = ROOT / "src"


def _include_dirs() -> list[str]:
    """Well-known types from grpc_tools; google.api/google.rpc from googleapis-common-protos."""
    import google.api

    googleapis_root = pathlib.Path(google.api.__path__[0]).parent.parent
    return [
        str(PROTO_ROOT),
        str(pathlib.Path(grpc_tools.__file__).parent / "_proto"),
        str(googleapis_root),
    ]


def generate(out_root: pathlib.Path) -> list[pathlib.Path]:
    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE_DIR}")
    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc"]
        args += [f"-I{d}" for d in _include_dirs()]
        args += [f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}"]
        args += [str(p.relative_to(PROTO_ROOT)) for p in protos]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        target = out_root / PACKAGE_DIR
        for old in target.glob("*_pb2*.py*"):
            old.unlink()
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for produced in sorted((pathlib.Path(tmp) / PACKAGE_DIR).iterdir()):
            shutil.copyfile(produced, target / produced.name)
            written.append(target / produced.name)
        init = target / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated protobuf code for conveyor.v1 (see scripts/gen_protos.py)."""\n')
        return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    ns = parser.parse_args()
    for path in generate(ns.out):
        print(path.relative_to(ns.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
