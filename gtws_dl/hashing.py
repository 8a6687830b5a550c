"""sha256 of files and folders: the one digest of inputs (cube), checkpoints (reconstruction) and products."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def sha256_path(path: str | os.PathLike, *, salt: str = "", block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, or of a folder (every file in sorted relative-path order, name and bytes).

    ``salt`` (e.g. the fingerprint of the cube a checkpoint is applied to) is hashed after the content, so
    one digest can stand for a file *and* what it was combined with.
    """
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for q in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(q.relative_to(path)).encode() + b"\0")
            _update(h, q, block)
    else:
        _update(h, path, block)
    h.update(salt.encode())
    return h.hexdigest()


def _update(h, path: Path, block: int) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)


def sha256_json(obj, *, length: int | None = None) -> str:
    """Hex sha256 of ``obj`` as canonical JSON (sorted keys, ``str`` for what JSON lacks); first ``length`` chars."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:length] if length else digest
