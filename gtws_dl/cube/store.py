"""Access to a finished cube: open it, check it, name its members (local directories and fsspec URLs).

The layout (``predictors.zarr``, ``targets.zarr``, ``manifest.json``) is written by :mod:`gtws_dl.cube.build`;
every later stage reads it through :func:`open_cube`, which refuses unfinished cubes and other format versions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

CUBE_FORMAT_VERSION = 1  # bump when the cube layout changes; readers refuse other versions


class CubeError(ValueError):
    """A cube that is missing, unfinished, corrupt, of another format version or lacking what a run needs."""



def lazy_nan(shape, chunks):
    """A dask float32 array of NaN: the template of a Zarr store filled block by block."""
    import dask.array as dsa

    return dsa.full(shape, np.nan, dtype=np.float32, chunks=chunks)


def is_url(location: str | Path) -> bool:
    """True for an fsspec URL (``s3://``, ``gs://``, ``https://``, ``memory://``, ``file://`` …)."""
    return "://" in str(location)


def cube_location(cube_dir: str | Path) -> str | Path:
    """``cube_dir`` as a :class:`Path`, or unchanged (a string) when it is an fsspec URL."""
    return str(cube_dir).rstrip("/") if is_url(cube_dir) else Path(cube_dir)


def cube_member(cube_dir: str | Path, name: str) -> str | Path:
    """``cube_dir/name`` for a local directory or an fsspec URL (what ``zarr``/``xarray`` open directly)."""
    loc = cube_location(cube_dir)
    return f"{loc}/{name}" if isinstance(loc, str) else loc / name


def _read_manifest_text(cube_dir: str | Path) -> str | None:
    """Text of ``cube_dir/manifest.json``, None when it does not exist (local directory or fsspec URL)."""
    mpath = cube_member(cube_dir, "manifest.json")
    if isinstance(mpath, Path):
        return mpath.read_text() if mpath.exists() else None
    import fsspec

    fs, path = fsspec.core.url_to_fs(mpath)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return f.read().decode()


def open_cube(cube_dir: str | Path) -> tuple[dict, zarr.Group, zarr.Group]:
    """Open a finished cube: (manifest, predictors group, targets group). Refuses incomplete/old cubes.

    ``cube_dir``: a local directory or an fsspec URL (e.g. ``s3://bucket/cube``; its filesystem package, such
    as ``s3fs``, must be installed). Cubes are read-only there: build them locally, then copy them.
    """
    cube_dir = cube_location(cube_dir)
    mpath = cube_member(cube_dir, "manifest.json")
    rebuild = "rebuild it with `python -m gtws_dl.ingest force=true` (same paths.* and grid.* overrides)"
    try:
        text = _read_manifest_text(cube_dir)
    except (ValueError, ImportError) as err:  # unknown protocol, filesystem package missing
        raise CubeNotFoundError(f"{cube_dir}: cannot open this location ({type(err).__name__}: {err})") from None
    if text is None:
        raise CubeNotFoundError(
            f"{cube_dir}: no manifest.json — the cube is missing or was not finished; run `python -m gtws_dl.ingest`"
        )
    try:
        manifest = json.loads(text)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as err:
        raise CubeError(f"{mpath}: the cube manifest is not valid JSON ({err}); {rebuild}") from None
    if manifest.get("update_in_progress"):
        raise CubeError(f"{cube_dir}: an update of this cube was interrupted ({manifest['update_in_progress']}); "
                        "run the same `gtws-dl update` command again: it rolls the update back and redoes it")
    if manifest.get("cube_format_version") != CUBE_FORMAT_VERSION:
        raise CubeError(
            f"{mpath}: cube format version {manifest.get('cube_format_version')} != {CUBE_FORMAT_VERSION} "
            f"expected by this gtws-dl (written by gtws-dl {manifest.get('code_version', '?')}); {rebuild}"
        )
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    stats = manifest.get("stats") or {}
    missing += [f"stats.{k}" for k in ("period", "mean", "std") if k not in stats]
    if missing:
        raise CubeError(f"{mpath}: the cube manifest lacks {missing} (normalisation statistics / layout); {rebuild}")
    nc = len(manifest["channels"])
    if len(stats["mean"]) != nc or len(stats["std"]) != nc:
        raise CubeError(f"{mpath}: normalisation statistics hold {len(stats['mean'])} means and "
                        f"{len(stats['std'])} stds for {nc} channels; {rebuild}")
    groups = []
    for name, var in (("predictors.zarr", "predictors"), ("targets.zarr", "twsa")):
        try:
            g = zarr.open_group(cube_member(cube_dir, name), mode="r")
            arr = g[var]
        except (FileNotFoundError, KeyError, ValueError, OSError) as err:
            raise CubeError(f"{cube_member(cube_dir, name)}: missing or unreadable ({type(err).__name__}: {err}); "
                            f"{rebuild}") from None
        groups.append((g, arr))
    shape = list(groups[0][1].shape)
    want = [manifest["time"]["n"], nc, *manifest["grid"]["shape"]]
    if shape != want:
        raise CubeError(f"{cube_member(cube_dir, 'predictors.zarr')}: shape {shape} (time, channel, lat, lon) does not match "
                        f"its manifest {want}; {rebuild}")
    return manifest, groups[0][0], groups[1][0]


_MANIFEST_KEYS = ("grid", "time", "channels", "stats", "fingerprint")


class CubeNotFoundError(CubeError, FileNotFoundError):
    """No finished cube (no manifest) in the directory."""


def cube_targets(targ: zarr.Group) -> list[str]:
    """Names of the target centres in a targets group."""
    return [str(t) for t in targ["target"][:]]


def check_cube_targets(cube_dir: str | Path, wanted) -> list[str]:
    """Refuse (:class:`CubeError`) target centres that the cube lacks; returns the cube's centres."""
    _, _, targ = open_cube(cube_dir)
    have = cube_targets(targ)
    missing = [t for t in wanted if t not in have]
    if missing:
        raise CubeError(
            f"{cube_member(cube_dir, 'targets.zarr')} holds targets {have}; requested {missing} is not in it: choose "
            f"target= one of {have} or add data.grace.{missing[0]} and rebuild the cube (`python -m gtws_dl.ingest`)"
        )
    return have
