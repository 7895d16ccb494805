"""The committed gRPC code must match protos/: regenerate and compare."""

from pathlib import Path

from devstack.protos import PACKAGE_PATH, REPO_ROOT, generate


def test_committed_grpc_code_is_up_to_date(tmp_path: Path):
    fresh = {path.name: path.read_text() for path in generate(tmp_path)}
    committed_dir = REPO_ROOT / PACKAGE_PATH
    assert fresh, "protoc generated nothing"
    for name, text in fresh.items():
        committed = committed_dir / name
        assert committed.exists(), f"{name} is not committed; run `make proto`"
        assert committed.read_text() == text, f"{name} is stale; run `make proto`"
