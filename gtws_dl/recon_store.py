"""The reconstruction store: the one owner of its layout, its completion marker and its resume fingerprint.

A reconstruction is a Zarr (v3) store ``<name>.zarr`` holding ``twsa`` — (target, time, lat, lon) float32, mm,
NaN over ocean — and, when the model predicts a spread, ``twsa_std`` (same layout, mm). Its ``complete``
attribute is set last: readers (:func:`open_finished`) refuse a store without it. A streaming writer
(:func:`gtws_dl.reconstruct.reconstruct`) creates the template (:func:`create_template`), fills it block by
block (:class:`BlockWriter`), records finished batches beside it (``<name>.zarr.progress.json``, keyed by
:func:`fingerprint` of checkpoint and cube: :func:`read_progress`, :func:`write_progress`) and marks it complete
(:func:`mark_complete`). Whole reconstructions held in memory are written at once and atomically
(:func:`write_reconstruction`, :func:`combine_ensemble`).

Torch-free (zarr, xarray, numpy): :mod:`gtws_dl.post` reads reconstructions through this module.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from gtws_dl.cube.store import lazy_nan
from gtws_dl.diskspace import disk_full_is_an_error
from gtws_dl.hashing import sha256_path
from gtws_dl.lock import remove_tree, write_text_atomic
from gtws_dl.zarr_time import extend_time

DIMS = ("target", "time", "lat", "lon")
UNITS = "mm"
TWSA_LONG_NAME = "reconstructed terrestrial water storage anomaly"
RERUN_INFER = "re-run infer.py to complete it"
MEMORY_STATE = "memory_state"


def _attrs(long_name: str) -> dict:
    return {"units": UNITS, "long_name": long_name}


def _coords(targets, times, lat, lon) -> dict:
    return {
        "target": np.array(list(targets), dtype=object),
        "time": pd.DatetimeIndex(times),
        "lat": np.asarray(lat),
        "lon": np.asarray(lon),
    }


# ------------------------------------------------------------------------------------- streaming writes
def fingerprint(ckpt_path: str | Path, cube_manifest: dict) -> str:
    """The identity of a reconstruction run: the checkpoint's bytes salted with the cube's fingerprint."""
    return sha256_path(ckpt_path, salt=cube_manifest["fingerprint"])


def progress_path(path: str | Path) -> Path:
    """``<name>.zarr.progress.json`` beside the store ``<name>.zarr``."""
    path = Path(path)
    return path.with_name(path.name + ".progress.json")


def read_progress(path: str | Path, *, fingerprint: str, batch_windows: int) -> set[int]:
    """The batches already written into the store ``path`` by a run of the same ``fingerprint`` and
    ``batch_windows``; empty when there is no store, no progress record or it belongs to another run."""
    path, prog_path = Path(path), progress_path(path)
    if path.exists() and prog_path.exists():
        prog = json.loads(prog_path.read_text())
        if prog.get("fingerprint") == fingerprint and prog.get("batch_windows") == batch_windows:
            return set(prog["done"])
    return set()


def write_progress(path: str | Path, done: set[int], *, fingerprint: str, batch_windows: int) -> None:
    """Record (atomically) that the batches ``done`` of the store ``path`` are written."""
    write_text_atomic(
        progress_path(path),
        json.dumps({"fingerprint": fingerprint, "batch_windows": batch_windows, "done": sorted(done)}),
    )


def create_template(
    path: str | Path,
    *,
    targets,
    times,
    lat,
    lon,
    chunk_months: int,
    std_long_name: str | None = None,
    attrs: dict | None = None,
    chunk_mb: float = 16.0,
) -> None:
    """(Re)create the store ``path``: metadata and NaN-filled ``twsa`` (and ``twsa_std`` when ``std_long_name``
    is given), chunked ``(1, chunk_months, rows, lon)`` with as many latitude rows as keep a chunk within
    ``chunk_mb`` (all rows on small grids), so a band of rows reads only its chunks; no chunk is written until
    :class:`BlockWriter` fills it."""
    shape = (len(targets), len(times), len(lat), len(lon))
    rows = max(1, min(shape[2], int(chunk_mb * 2**20 // (4 * chunk_months * shape[3]))))
    chunks = (1, chunk_months, rows, shape[3])
    variables = {"twsa": (DIMS, lazy_nan(shape, chunks), _attrs(TWSA_LONG_NAME))}
    if std_long_name is not None:
        variables["twsa_std"] = (DIMS, lazy_nan(shape, chunks), _attrs(std_long_name))
    shutil.rmtree(path, ignore_errors=True)
    ds = xr.Dataset(variables, coords=_coords(targets, times, lat, lon), attrs=dict(attrs or {}))
    ds.to_zarr(
        path,
        mode="w",
        compute=False,
        consolidated=False,
        zarr_format=3,
        encoding={v: {"chunks": chunks} for v in variables},
    )


class BlockWriter:
    """Writes blocks of months into a store made by :func:`create_template`."""

    def __init__(self, path: str | Path):
        self.path = path
        group = zarr.open_group(path, mode="r+")
        self.twsa = group["twsa"]
        self.twsa_std = group["twsa_std"] if "twsa_std" in group else None

    def write(self, k0: int, twsa: np.ndarray, twsa_std: np.ndarray | None = None) -> None:
        """Months ``k0 .. k0 + n`` of every target: ``twsa`` (and ``twsa_std``) shaped (target, n, lat, lon).
        A full disk raises :class:`~gtws_dl.diskspace.DiskSpaceError` naming the store."""
        k1 = k0 + twsa.shape[1]
        with disk_full_is_an_error(self.path, what="reconstruction", config_key="paths.recon_dir"):
            self.twsa[:, k0:k1] = twsa
            if twsa_std is not None:
                self.twsa_std[:, k0:k1] = twsa_std


def extend(path: str | Path, times) -> None:
    """Lengthen a finished store's time axis to ``times`` (the update): unmarked as complete until the new
    months are written (:func:`mark_complete`); months already there are kept."""
    group = zarr.open_group(path, mode="r+")
    if not group.attrs.get("complete"):
        raise RuntimeError(f"{path} is an unfinished reconstruction; {RERUN_INFER} before updating it")
    group.attrs["complete"] = False
    extend_time(group, pd.DatetimeIndex(times))


def write_memory_state(path: str | Path, index: int, state: np.ndarray, token: str) -> None:
    """Keep in the store the forcing memories (F, lat, lon) of the months before month ``index`` (the target
    base's stream, :class:`gtws_dl.target_base.ForcingMemory`): the update resumes there instead of streaming
    the record from its start. ``token`` names what they were computed from (:func:`read_memory_state`)."""
    group = zarr.open_group(path, mode="r+")
    arr = group.create_array(MEMORY_STATE, shape=state.shape, dtype="float32", chunks=(1, *state.shape[1:]),
                             overwrite=True, dimension_names=("memory", "lat", "lon"), fill_value=np.nan)
    arr[:] = np.asarray(state, np.float32)
    arr.attrs.update({"month_index": int(index), "token": token,
                      "long_name": "forcing memories of the months before month_index (target base state)"})


def read_memory_state(path: str | Path, token: str) -> tuple[int, np.ndarray] | None:
    """``(index, state)`` kept by :func:`write_memory_state` with the same ``token``, else None."""
    group = zarr.open_group(path, mode="r")
    index = state_index(group[MEMORY_STATE], token) if MEMORY_STATE in group else None
    return None if index is None else (index, np.asarray(group[MEMORY_STATE][:], np.float32))


def state_array(path: str | Path, name: str, n_vars: int, shape: tuple[int, int]) -> zarr.Array:
    """The carried recurrent state ``name`` (state variable, lat, lon) float32 of the store (created, zeros, where
    it is missing or of another shape; :mod:`gtws_dl.carry`). Its ``month_index`` attribute says before which
    month it stands (-1: being written, not valid); ``token`` what it was computed with."""
    group = zarr.open_group(path, mode="r+")
    full = (int(n_vars), *map(int, shape))
    if name in group and tuple(group[name].shape) == full:
        return group[name]
    chunks = (full[0], min(full[1], 128), min(full[2], 128))
    arr = group.create_array(name, shape=full, dtype="float32", chunks=chunks, fill_value=0.0, overwrite=True,
                             dimension_names=("state", "lat", "lon"))
    arr.attrs.update({"month_index": -1, "long_name": "recurrent state of the network before month_index"})
    return arr


def state_index(arr: zarr.Array, token: str) -> int | None:
    """The month before which the carried state ``arr`` stands, if it is valid and was made with ``token``."""
    index = int(arr.attrs.get("month_index", -1))
    return index if index >= 0 and arr.attrs.get("token") == token else None


def mark_complete(path: str | Path) -> None:
    """Set the ``complete`` attribute: the store is finished and readers accept it."""
    zarr.open_group(path, mode="r+").attrs["complete"] = True


# ---------------------------------------------------------------------------------------------- reading
def open_finished(path: str | Path, *, fix: str = RERUN_INFER) -> xr.Dataset:
    """Open a reconstruction store (``twsa``, optional ``twsa_std``); refuse one whose run has not finished
    (``RuntimeError`` naming the store and ``fix``)."""
    ds = xr.open_zarr(path, consolidated=False)
    if not ds.attrs.get("complete"):
        raise RuntimeError(f"{path} is an unfinished reconstruction; {fix}")
    return ds


# ----------------------------------------------------------------------------------------- whole writes
def _write_whole(out_path: Path, variables: dict, coords: dict, attrs: dict, chunks: tuple) -> Path:
    """Write a finished store (``complete`` set) to a temporary folder and move it over ``out_path``."""
    ds = xr.Dataset(variables, coords=coords, attrs={**attrs, "complete": True})
    tmp = out_path.with_name(f"{out_path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        ds.to_zarr(
            tmp,
            mode="w",
            consolidated=False,
            zarr_format=3,
            encoding={v: {"chunks": chunks} for v in variables},
        )
        shutil.rmtree(out_path, ignore_errors=True)
        os.replace(tmp, out_path)
    finally:
        remove_tree(tmp)  # after a failure zarr may still be writing chunks into it
    return out_path


def write_reconstruction(
    out_path: str | Path,
    twsa: np.ndarray,
    *,
    targets,
    times,
    lat,
    lon,
    twsa_std: np.ndarray | None = None,
    attrs: dict | None = None,
    chunk_months: int = 12,
) -> Path:
    """Write a finished reconstruction store in the layout of :func:`gtws_dl.reconstruct.reconstruct`
    (atomically).

    ``twsa`` (and optional ``twsa_std``): (target, time, lat, lon) mm, NaN over ocean. Used by models that
    predict the whole record at once (the baselines), so the same products and skill code evaluates them.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    data = {"twsa": (DIMS, np.asarray(twsa, np.float32), _attrs(TWSA_LONG_NAME))}
    if twsa_std is not None:
        data["twsa_std"] = (DIMS, np.asarray(twsa_std, np.float32), _attrs("predicted standard deviation"))
    coords = _coords(targets, times, lat, lon)
    return _write_whole(out_path, data, coords, dict(attrs or {}), (1, chunk_months, len(lat), len(lon)))


def combine_ensemble(members: list[str | Path], out_path: str | Path) -> Path:
    """Merge the reconstructions of a deep ensemble into one store of the same layout.

    ``twsa`` = the members' mean; ``twsa_std`` = the total predictive spread
    ``sqrt(mean_i σ_i² + var_i μ_i)`` (Lakshminarayanan et al. 2017): each member's own predicted σ_i
    (0 for members without a heteroscedastic head) plus the spread of the member means. Written atomically.
    """
    members = [Path(m) for m in members]
    if not members:
        raise ValueError("combine_ensemble needs at least one member reconstruction")
    dss = [open_finished(m, fix="re-run it before combining") for m in members]
    ref = dss[0]["twsa"]
    for m, ds in zip(members[1:], dss[1:], strict=True):
        if ds["twsa"].shape != ref.shape or list(ds["target"].values) != list(ref["target"].values):
            raise ValueError(
                f"{m}: shape/targets {ds['twsa'].shape} {list(ds['target'].values)} differ from "
                f"{members[0]}: {ref.shape} {list(ref['target'].values)}"
            )
    K, nt, H, W = ref.shape
    mean = np.empty((K, nt, H, W), np.float32)
    std = np.empty((K, nt, H, W), np.float32)
    for k in range(K):  # one target at a time: memory = members × one target's record
        mus = np.stack([ds["twsa"].isel(target=k).values for ds in dss]).astype(np.float32)
        var_al = np.mean(
            np.stack(
                [
                    (ds["twsa_std"].isel(target=k).values if "twsa_std" in ds else np.zeros_like(mus[0])) ** 2
                    for ds in dss
                ]
            ),
            axis=0,
        )
        mean[k], std[k] = mus.mean(axis=0), np.sqrt(var_al + mus.var(axis=0))
    variables = {
        "twsa": (ref.dims, mean, _attrs("deep-ensemble mean TWSA")),
        "twsa_std": (ref.dims, std, _attrs("deep-ensemble predictive standard deviation")),
    }
    coords = {c: ref[c].values for c in ref.dims}  # as stored in the members (their dtypes kept)
    attrs = {"members": [str(m) for m in members]}
    return _write_whole(Path(out_path), variables, coords, attrs, (1, min(nt, 120), H, W))
