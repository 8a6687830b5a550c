"""Which months each input file holds, remembered beside the cube (``era5_file_months.json``).

The monthly update must find the files holding months after the cube's last final month among every file of
``data.era5_dir`` (a 1940-present download is ~170 yearly files, or thousands of monthly ones). Reading each
file's time axis costs ~2-30 ms a file; the index keeps the months of every file it has read, keyed by the
file's resolved path, size and modification time, so an update opens only the files that are new or changed.
A stale or unreadable index is ignored (rebuilt), never trusted: any change of size or mtime re-reads the file.
The update also records the months of the mascon files it opened (:func:`record`), so an unchanged
GRACE file with no month after the cube's record is not opened again (:func:`remembered_months`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from gtws_dl.io import era5 as era5_io
from gtws_dl.lock import write_text_atomic

LOGGER = logging.getLogger(__name__)
INDEX = "era5_file_months.json"


def _key(path: Path) -> tuple[str, list[int]]:
    st = os.stat(path)
    return str(Path(path).resolve()), [int(st.st_size), int(st.st_mtime_ns)]


def _load(cube_dir: str | Path) -> dict:
    try:
        return json.loads((Path(cube_dir) / INDEX).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _lookup(index: dict, path: Path) -> pd.DatetimeIndex | None:
    """The months ``index`` holds for ``path`` if the file is unchanged since (same size and mtime), else None."""
    name, stamp = _key(path)
    entry = index.get(name)
    if not entry or entry.get("stat") != stamp:
        return None
    return pd.DatetimeIndex(pd.to_datetime(entry["months"], format="%Y-%m"))


def remembered_months(path: str | os.PathLike, cube_dir: str | Path) -> pd.DatetimeIndex | None:
    """The months the index of ``cube_dir`` holds for ``path`` if the file is unchanged since, else None."""
    return _lookup(_load(cube_dir), Path(path))


def record(months: Mapping[Path, pd.DatetimeIndex], cube_dir: str | Path) -> None:
    """Record ``{file: its months}`` (the files as they are now) in the index of ``cube_dir``, atomically."""
    index = _load(cube_dir)
    for path, m in months.items():
        name, stamp = _key(Path(path))
        index[name] = {"stat": stamp, "months": list(pd.DatetimeIndex(m).strftime("%Y-%m"))}
    write_text_atomic(Path(cube_dir) / INDEX, json.dumps({"files": index}, sort_keys=True))


def era5_file_months(files: Sequence[str | os.PathLike], cube_dir: str | Path, *,
                     write: bool = True) -> dict[Path, pd.DatetimeIndex]:
    """``{file: its months (month starts)}`` for ``files``, from the index in ``cube_dir`` where the file is
    unchanged, else from its time axis (:func:`gtws_dl.io.era5.file_months`); the index is rewritten
    (atomically) when a file was read and ``write`` (else the caller records them with :func:`record` once it may write)."""
    index = _load(cube_dir)
    out: dict[Path, pd.DatetimeIndex] = {}
    read = 0
    for f in map(Path, files):
        known = _lookup(index, f)
        if known is None:
            known = era5_io.file_months(f)
            read += 1
        out[f] = known
    if read:
        LOGGER.debug("read the time axes of %d of %d ERA5 files", read, len(out))
        if write and Path(cube_dir).is_dir():
            record(out, cube_dir)
    return out
