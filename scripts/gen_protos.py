"""Generate Python, gRPC and typed stubs (mypy-protobuf) from protos/.

Output lands beside the .proto files so that `remitnet.<area>.v1` imports
resolve from the `remitnet` package root in protos/remitnet.
Usage: python scripts/gen_protos.py [--out DIR]  (DIR defaults to protos/)
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    files = [str(p.relative_to(PROTOS)) for p in proto_files()]
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Generated folders are regular packages, each with its py.typed; the root
    # `remitnet` is a namespace that protos/, services/ and clients/ share, so
    # no generated code holds its __init__.
    for proto in proto_files():
        folder = out / proto.relative_to(PROTOS).parent
        while folder.parent != out:
            if folder.parent.parent == out:
                (folder / "py.typed").touch()
            init = folder / "__init__.py"
            if not init.exists():
                init.write_text("")
            folder = folder.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTOS)
    args = parser.parse_args()
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
