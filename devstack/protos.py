"""Regenerate the committed gRPC code from protos/ (``make proto``).

protoc's virtual include path ``common/rpc/generated=protos`` makes the
generated modules import each other as ``common.rpc.generated.…`` without any
sys.path tricks. The code is committed so that the container images need no
code generator; a test fails when it is stale.
"""

import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = REPO_ROOT / "protos"
PACKAGE_PATH = Path("common", "rpc", "generated")


def generate(output_root: Path) -> list[Path]:
    """Write the generated modules under ``output_root/common/rpc/generated``; return them."""
    protos = sorted(PROTO_DIR.glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PACKAGE_PATH.as_posix()}={PROTO_DIR}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        *(f"{PACKAGE_PATH.as_posix()}/{proto.name}" for proto in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see the message above")
    return sorted((output_root / PACKAGE_PATH).glob("*_pb2*"))


def descriptor_set(proto: Path, output: Path) -> descriptor_pb2.FileDescriptorSet:
    """Compile one .proto (with its directory as the include path) into a descriptor set.

    For checks of a contract without loading it into this process's
    descriptor pool, where it would clash with the generated modules.
    """
    args = [
        "grpc_tools.protoc",
        f"-I{proto.parent}",
        f"--descriptor_set_out={output}",
        proto.name,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {proto}; see the message above")
    return descriptor_pb2.FileDescriptorSet.FromString(output.read_bytes())


if __name__ == "__main__":
    for path in generate(REPO_ROOT):
        print(path.relative_to(REPO_ROOT))
    sys.exit(0)
