"""Which months each ERA5 file holds, remembered beside the cube (``era5_file_months.json``).

The monthly update must find the files holding months after the cube's last final month among every file of
``data.era5_dir`` (a 1940-present download is ~170 yearly files, or thousands of monthly ones). Reading each
file's time axis costs ~2-30 ms a file; the index keeps the months of every file it has read, keyed by the
file's resolved path, size and modification time, so an update opens only the files that are new or changed.
A stale or unreadable index is ignored (rebuilt), never trusted: any change of size or mtime re-reads the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from gtws_dl.io import era5 as era5_io
from gtws_dl.lock import write_text_atomic

LOGGER = logging.getLogger(__name__)
INDEX = "era5_file_months.json"


def _key(path: Path) -> tuple[str, list[int]]:
    st = os.stat(path)
    return str(Path(path).resolve()), [int(st.st_size), int(st.st_mtime_ns)]


def era5_file_months(files: Sequence[str | os.PathLike], cube_dir: str | Path, *,
                     write: bool = True) -> dict[Path, pd.DatetimeIndex]:
    """``{file: its months (month starts)}`` for ``files``, from the index in ``cube_dir`` where the file is
    unchanged, else from its time axis (:func:`gtws_dl.io.era5.file_months`); the index is rewritten
    (atomically) when a file was read and ``write``."""
    index_path = Path(cube_dir) / INDEX
    try:
        index = json.loads(index_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        index = {}
    out: dict[Path, pd.DatetimeIndex] = {}
    read = 0
    for f in map(Path, files):
        name, stamp = _key(f)
        entry = index.get(name)
        if entry and entry.get("stat") == stamp:
            out[f] = pd.DatetimeIndex(pd.to_datetime(entry["months"], format="%Y-%m"))
            continue
        out[f] = era5_io.file_months(f)
        index[name] = {"stat": stamp, "months": list(out[f].strftime("%Y-%m"))}
        read += 1
    if read:
        LOGGER.debug("read the time axes of %d of %d ERA5 files", read, len(out))
        if write and index_path.parent.is_dir():
            write_text_atomic(index_path, json.dumps({"files": index}, sort_keys=True))
    return out
