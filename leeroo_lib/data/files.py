"""The committed data files: each is checked against data/SHA256SUMS before it is read, so a damaged or
edited measurement is an error that says how to restore it, never a silently different result."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import DATA_DIR

CHECKSUMS_FILE = "SHA256SUMS"


def verify_data_file(name: str, data_dir: Path | None = None) -> Path:
    """The path of a committed data file, after checking it exists and matches data/SHA256SUMS."""
    data_dir = Path(data_dir or DATA_DIR)
    path = data_dir / name
    restore = f"restore it from the repository with `git checkout -- data/{name}`"
    if not path.is_file():
        raise FileNotFoundError(f"data file missing: {path}; {restore}")
    checksums = data_dir / CHECKSUMS_FILE
    if not checksums.is_file():
        raise FileNotFoundError(
            f"{checksums} missing: it holds the sha256 every data file is checked against; "
            f"restore it from the repository with `git checkout -- data/{CHECKSUMS_FILE}`"
        )
    sums = dict(reversed(line.split()) for line in checksums.read_text().splitlines() if line.strip())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if sums.get(name) != digest:
        raise ValueError(
            f"data file corrupt: {path} has sha256 {digest[:12]}..., "
            f"data/{CHECKSUMS_FILE} expects {str(sums.get(name))[:12]}...; {restore}"
        )
    return path
