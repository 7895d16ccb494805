"""Render ``architecture.png`` from ``docs/architecture.dot`` (``make diagram``, needs graphviz).

The PNG carries the SHA-256 of the DOT text it was rendered from in a
``tEXt`` chunk, so a test (which needs no graphviz) can tell when someone
edited the source and forgot to re-render the picture.
"""

import hashlib
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOT_SOURCE = REPO_ROOT / "docs" / "architecture.dot"
PNG_OUTPUT = REPO_ROOT / "architecture.png"
DIGEST_KEYWORD = b"source-sha256"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Sharp enough for a README and a slide, small enough to keep in git.
DPI = 110


def source_digest(path: Path = DOT_SOURCE) -> str:
    """Return the SHA-256 (hex) of the diagram's source text."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """Split a PNG into ``(type, data)`` chunks."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        chunks.append((kind, png[offset + 8 : offset + 8 + length]))
        offset += 12 + length  # length, type, data, CRC
    return chunks


def embedded_digest(png: bytes) -> str | None:
    """Return the source digest stamped into the PNG, or None when it has none."""
    for kind, data in png_chunks(png):
        keyword, _, text = data.partition(b"\0")
        if kind == b"tEXt" and keyword == DIGEST_KEYWORD:
            return text.decode("latin-1")
    return None


def with_digest(png: bytes, digest: str) -> bytes:
    """Return the PNG with a ``tEXt`` chunk holding ``digest``, just before ``IEND``."""
    data = DIGEST_KEYWORD + b"\0" + digest.encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + data))
    end = png.rindex(b"IEND") - 4  # the IEND chunk starts with its length field
    return png[:end] + chunk + png[end:]


def main() -> int:
    """Render the DOT source with graphviz's ``dot`` and stamp its digest into the PNG."""
    dot = shutil.which("dot")
    if dot is None:
        print("graphviz is not installed: apt-get install graphviz (or brew install graphviz)")
        return 1
    png = subprocess.run(
        [dot, "-Tpng", f"-Gdpi={DPI}", str(DOT_SOURCE)], check=True, capture_output=True
    ).stdout
    PNG_OUTPUT.write_bytes(with_digest(png, source_digest()))
    print(f"wrote {PNG_OUTPUT.relative_to(REPO_ROOT)} from {DOT_SOURCE.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
