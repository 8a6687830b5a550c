"""Which kind of inputs a cube is built from — the twin Earth's or real downloads — and that they never mix.

A twin file is one with ``twin_manifest.json`` in a folder above it (the twin writes it at its root).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from gtws_dl.io.errors import InputFileError

_KEYS = {"era5": "data.era5_dir", "lai": "data.lai", "sif": "data.sif", "landcover": "data.landcover",
         "jpl_gain_factor": "data.jpl_gain_factor"}


def check_data_kind(kind: str | None, files: Mapping[str, Sequence[Path]], cube_dir: Path) -> None:
    """Refuse inputs of the twin Earth and real downloads mixed in one cube, and a cube rebuilt from the other kind.

    A twin file is one with ``twin_manifest.json`` in a folder above it (the twin writes it at its root). With
    ``kind="files"`` no input may be a twin file (a forgotten ``data=files`` would put synthetic LAI, SIF or land
    cover into a real cube); with ``kind="twin"`` every input must be one. The cube's manifest records the kind
    (``data_kind``): ingest or update from the other kind into the same cube folder is refused."""
    if kind is None:
        return
    roots: dict[Path, Path | None] = {}
    for group, paths in files.items():
        key = _KEYS.get(group, f"data.grace.{group.removeprefix('grace_')}")
        for p in paths:
            root = _twin_root(Path(p), roots)
            if kind == "files" and root is not None:
                raise InputFileError(
                    f"{key}={p}: a twin Earth file (its folder {root} holds twin_manifest.json), but data=files "
                    f"reads real downloads: give your own file for {key}, or run everything with data=twin",
                    paths=[str(p)], expected="a downloaded file", found=f"a twin file under {root}")
            if kind == "twin" and root is None:
                raise InputFileError(
                    f"{key}={p}: not a twin Earth file (no twin_manifest.json in the folders above it), but data=twin: "
                    "pass data=files to read real downloads (and give every input: data.era5_dir, data.grace.*, "
                    "data.lai, data.sif, data.landcover), or point the key back to paths.twin_dir",
                    paths=[str(p)], expected="a file of the twin Earth", found="a file outside any twin folder")
    try:
        old = json.loads((Path(cube_dir) / "manifest.json").read_text()).get("data_kind")
    except (OSError, ValueError, AttributeError):
        old = None
    if old is not None and old != kind:
        raise InputFileError(
            f"{cube_dir}: this cube was built from data={old} inputs, the config gives data={kind}; a run folder "
            f"holds one kind: use another paths.output_dir (or paths.cube_dir) for data={kind}",
            paths=[str(cube_dir)], expected=f"data={old}", found=f"data={kind}")


def _twin_root(path: Path, cache: dict[Path, Path | None]) -> Path | None:
    """The nearest folder above ``path`` holding ``twin_manifest.json`` (None: not a twin file)."""
    d = path.resolve().parent
    seen = []
    while True:
        if d in cache:
            root = cache[d]
            break
        seen.append(d)
        if (d / "twin_manifest.json").is_file():
            root = d
            break
        if d.parent == d:
            root = None
            break
        d = d.parent
    for x in seen:
        cache[x] = root
    return root
