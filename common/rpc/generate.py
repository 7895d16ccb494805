"""Regenerate the committed gRPC code from protos/ (``make proto``).

protoc's virtual include path ``common/rpc=protos`` makes the generated
modules import each other as ``common.rpc.…`` without any sys.path tricks.
"""

import sys
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO_ROOT / "protos"


def generate(output_root: Path) -> list[Path]:
    """Write the generated modules under ``output_root/common/rpc`` and return their paths."""
    protos = sorted(PROTO_DIR.glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-Icommon/rpc={PROTO_DIR}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        *(f"common/rpc/{proto.name}" for proto in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see the message above")
    return sorted((output_root / "common" / "rpc").glob("*_pb2*"))


if __name__ == "__main__":
    for path in generate(REPO_ROOT):
        print(path.relative_to(REPO_ROOT))
    sys.exit(0)
