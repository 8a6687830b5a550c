"""Extend a finished cube with the new months of its ERA5 files (the monthly update), history untouched.

:func:`plan_update` reads only metadata and the files that hold the months an update needs, and refuses files
that do not continue the record (a gap, another grid, other variables or units, other numbers for a month the
cube already holds). :func:`apply_update` then writes:

* the **appended** months (after the cube's last month), and
* the **recomputed** months: months the cube holds from ERA5T (preliminary, ``expver`` 5) that the files now
  hold as final ERA5 — with every later month, since the antecedent water-balance memories carry them forward;

with the cube's frozen normalisation statistics and the same arithmetic as a build
(:meth:`~gtws_dl.cube.build.CubeBuilder.predictor_band`, its memories started from the cube's own values at
the month before), so the cube equals one built from scratch on the longer record. Other months are not written.
New GRACE months in the mascon files are added to the targets (evaluation only: the model is not retrained).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from tqdm.auto import tqdm

from gtws_dl.cube import file_index
from gtws_dl.cube.build import (
    CubeBuilder,
    CubeSpec,
    _source_rows,
    _source_slice,
    check_coverage,
    era5_signature,
)
from gtws_dl.cube.kind import check_data_kind
from gtws_dl.cube.store import open_cube
from gtws_dl.cube.writer import check_land_finite
from gtws_dl.grid import Grid
from gtws_dl.hashing import sha256_json, sha256_path
from gtws_dl.io import era5 as era5_io
from gtws_dl.io import mascon as mascon_io
from gtws_dl.io._common import months_str, resolve_files
from gtws_dl.io.errors import InputFileError, describe_files
from gtws_dl.io.regrid import regrid_conservative
from gtws_dl.lock import write_text_atomic
from gtws_dl.zarr_time import extend_time

LOGGER = logging.getLogger(__name__)
IDENTITY_TOL = 1e-3  # of a channel's training standard deviation: the same month must give the same numbers


@dataclass
class CubeUpdate:
    """What an update changes in a cube: month indices into the new record (``times``)."""

    cube_dir: Path
    old_times: pd.DatetimeIndex
    times: pd.DatetimeIndex  # the record after the update
    appended: list[str] = field(default_factory=list)  # YYYY-MM after the old end
    recomputed: list[str] = field(default_factory=list)  # ERA5T months now final in the files
    preliminary: list[str] = field(default_factory=list)  # ERA5T months of the record after the update
    files: list[str] = field(default_factory=list)  # the ERA5 files read
    first: int = 0  # first month index written (everything before it is untouched)

    @property
    def empty(self) -> bool:
        return not self.appended and not self.recomputed

    def summary(self) -> dict:
        return {"record": [f"{self.times[0]:%Y-%m}", f"{self.times[-1]:%Y-%m}"], "appended": self.appended,
                "recomputed": self.recomputed, "preliminary": self.preliminary,
                "first_changed": f"{self.times[self.first]:%Y-%m}" if not self.empty else None,
                "era5_files": self.files}


def _needed_files(spec: CubeSpec, since: pd.Timestamp,
                  cube_dir: Path) -> tuple[list[Path], dict[Path, pd.DatetimeIndex]]:
    """The ERA5 files that hold a month at or after ``since`` (from their time axes, or the cube's index of
    them: :mod:`gtws_dl.cube.file_index`)."""
    files = resolve_files(spec.era5, what="ERA5 (data.era5_dir)")
    months = file_index.era5_file_months(files, cube_dir, write=False)  # recorded by apply_update: a refusal writes nothing
    return [f for f in files if (months[f] >= since).any()], months


def plan_update(cube_dir: str | Path, spec: CubeSpec, grid: Grid) -> tuple[CubeUpdate, dict]:
    """Decide what an update of ``cube_dir`` from the files of ``spec`` writes; check that the files continue
    the record. Returns the plan and the opened inputs (for :func:`apply_update`). Writes nothing."""
    manifest, pred_g, _ = open_cube(cube_dir)
    old = pd.date_range(manifest["time"]["start"], periods=int(manifest["time"]["n"]), freq="MS")
    if "era5t_months" not in manifest:
        LOGGER.warning("%s: the cube was built before gtws-dl recorded ERA5T months; its months are taken as final "
                       "(rebuild it with `gtws-dl ingest force=true` to have its ERA5T months recomputed when final)",
                       cube_dir)
    prelim = sorted(manifest.get("era5t_months") or [])
    last_final = old[-1] if not prelim else pd.Timestamp(prelim[0]) - pd.offsets.MonthBegin(1)
    since = max(last_final, old[0])  # the identity check reads the last final month, when there is one
    files, months = _needed_files(spec, since, Path(cube_dir))
    check_data_kind(spec.kind, {"era5": files}, Path(cube_dir))
    plan = CubeUpdate(Path(cube_dir), old, old, files=[str(f) for f in files], preliminary=list(prelim))
    if not files:
        LOGGER.info("no ERA5 file in %s holds a month after %s: nothing to update", spec.era5, f"{since:%Y-%m}")
        return plan, {}
    era5 = era5_io.open_era5(files, list(spec.variables), check_nan=False, plausibility=spec.plausibility_skip)
    new_t = pd.DatetimeIndex(era5["time"].values)
    if spec.end is not None:
        cut = new_t[new_t > pd.Timestamp(spec.end)]
        if len(cut):
            LOGGER.warning("data.end=%s: the months %s..%s of the files are not added; drop data.end to add them",
                           spec.end, f"{cut[0]:%Y-%m}", f"{cut[-1]:%Y-%m}")
        new_t = new_t[new_t <= pd.Timestamp(spec.end)]
    _check_source(manifest, era5, spec, files, cube_dir)
    nxt = old[-1] + pd.offsets.MonthBegin(1)
    after = new_t[new_t > old[-1]]
    if len(after) and after[0] != nxt:
        raise InputFileError(
            f"{describe_files([str(f) for f in files])}: the ERA5 record does not continue the cube {cube_dir}: "
            f"the cube ends {old[-1]:%Y-%m}, the files' next month is {after[0]:%Y-%m} (missing "
            f"{months_str(pd.date_range(nxt, after[0] - pd.offsets.MonthBegin(1), freq='MS'))}); download the "
            "missing months into data.era5_dir", paths=[str(f) for f in files], expected=f"{nxt:%Y-%m}",
            found=f"{after[0]:%Y-%m}")
    now_final = set(f"{m:%Y-%m}" for m in new_t) - set(era5.attrs.get("era5t_months", []))
    plan.recomputed = [m for m in prelim if m in now_final]
    plan.appended = [f"{m:%Y-%m}" for m in after]
    plan.times = old.append(after)
    plan.preliminary = sorted((set(prelim) - set(plan.recomputed))
                              | {m for m in era5.attrs.get("era5t_months", []) if m in plan.appended})
    if plan.empty:
        return plan, {}
    plan.first = int(plan.times.get_loc(pd.Timestamp(min(plan.recomputed + plan.appended))))
    if plan.first == 0:
        raise InputFileError(f"{cube_dir}: every month of the cube is ERA5T (preliminary); rebuild it with "
                             "`gtws-dl ingest force=true` instead of updating it", paths=[str(cube_dir)])
    if last_final in new_t and last_final >= old[0]:
        _check_identity(manifest, pred_g, era5, spec, grid, last_final, old, files)
    plan.files = sorted({str(f) for f in files if (months[f] >= plan.times[plan.first]).any()})
    return plan, {"era5": era5, "manifest": manifest, "file_months": months}


def _check_source(manifest: dict, era5, spec: CubeSpec, files, cube_dir) -> None:
    """Refuse files on another ERA5 grid, or with other unit labels, than those the cube was built from."""
    want = manifest.get("era5_source")
    if not want:  # a cube from before the record was kept: the identity check of one month still applies
        return
    have = era5_signature(era5, spec.variables)
    paths = [str(f) for f in files]
    if have["grid"] != want["grid"]:
        raise InputFileError(
            f"{describe_files(paths)}: ERA5 grid {have['grid']} differs from the one the cube {cube_dir} was built "
            f"from {want['grid']}; download the new months with the same grid/area settings",
            paths=paths, expected=str(want["grid"]), found=str(have["grid"]))
    for v, u in want.get("units_in_file", {}).items():
        if have["units_in_file"].get(v) != u:
            raise InputFileError(
                f"{describe_files(paths)}: variable {v!r} in units {have['units_in_file'].get(v)!r}, the cube "
                f"{cube_dir} was built from {u!r}: another product or processing than the record's; download "
                "the same data set (reanalysis-era5-single-levels-monthly-means) in the same format",
                paths=paths, variable=v, expected=u, found=have["units_in_file"].get(v))


def _check_identity(manifest, pred_g, era5, spec: CubeSpec, grid: Grid, month: pd.Timestamp, old, files) -> None:
    """The last final month the cube holds, regridded from the new files, must give the cube's numbers."""
    i = int(old.get_loc(month))
    met = regrid_conservative(_source_rows(era5[list(spec.variables)].sel(time=[month]), grid, 0, grid.nlat).load(),
                              grid)
    cube = np.asarray(pred_g["predictors"][i, : len(spec.variables)], dtype=np.float64)
    land = np.asarray(pred_g["land_mask"][:], dtype=bool)
    std = np.asarray(manifest["stats"]["std"], dtype=np.float64)
    for c, v in enumerate(spec.variables):
        new = met[v].transpose("time", "lat", "lon").values[0].astype(np.float32).astype(np.float64)
        diff = float(np.nanmax(np.abs(new[land] - cube[c][land]))) if land.any() else 0.0
        if not diff <= IDENTITY_TOL * std[c]:
            paths = [str(f) for f in files]
            raise InputFileError(
                f"{describe_files(paths)}: variable {v!r} of {month:%Y-%m} differs from the cube's by up to "
                f"{diff:.4g} {era5[v].attrs.get('units', '')} (expected the same numbers, within "
                f"{IDENTITY_TOL * std[c]:.3g}): these files are not a continuation of the record the cube was "
                "built from (another data set, grid or processing); keep the original downloads, or rebuild the "
                "cube (`gtws-dl ingest force=true`) and retrain", paths=paths, variable=v,
                expected="the cube's values", found=f"max difference {diff:.4g}")


def apply_update(plan: CubeUpdate, opened: dict, spec: CubeSpec, grid: Grid, *, progress: bool = True) -> dict:
    """Write the plan's months into the cube and its new manifest (last); returns the manifest."""
    manifest, era5 = opened["manifest"], opened["era5"]
    pred_path, targ_path = plan.cube_dir / "predictors.zarr", plan.cube_dir / "targets.zarr"
    builder = CubeBuilder(spec, grid, plan.cube_dir)
    tail = plan.times[plan.first:]
    builder.times = tail  # the vegetation/land-cover channels on the months written
    files = builder._input_files()
    extra = builder._open_extra(files)
    channels = list(manifest["channels"])
    mems = [channels.index(f"wb_ewma{int(m)}") for m in spec.ewma_months]
    # readers refuse the cube while its stores and manifest disagree (open_cube names the fix)
    write_text_atomic(plan.cube_dir / "manifest.json", _json({**manifest, "update_in_progress": plan.summary()}))
    extend_time(pred_path, plan.times)
    extend_time(targ_path, plan.times)
    arr = zarr.open_group(pred_path, mode="r+")["predictors"]  # opened after the resize: its new shape
    step, rows = builder._block_shape(era5, len(channels))
    bands = builder.bands(rows)
    bar = tqdm(total=-(-len(tail) // step) * len(bands), desc="cube update", unit="block", disable=not progress)
    for r0, r1 in bands:
        state = np.asarray(arr[plan.first - 1, mems, r0:r1], dtype=np.float32).copy()  # the memories before
        for i0 in range(0, len(tail), step):
            tsel = tail[i0:i0 + step]
            block = builder.predictor_band(era5, extra, tsel, (r0, r1), state)
            check_land_finite(block, builder.land[r0:r1], channels, tsel, grid)
            arr[plan.first + i0:plan.first + i0 + len(tsel), :, r0:r1] = block
            bar.update()
    bar.close()
    grace = _append_targets(plan, builder, files, bands)
    file_index.record(opened.get("file_months") or {}, plan.cube_dir)
    inputs = dict(manifest.get("inputs") or {})
    inputs.update({f: sha256_path(f) for f in plan.files})
    record = {"updated": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"), **plan.summary(),
              "grace_appended": grace}
    new = {**manifest, "time": {"start": f"{plan.times[0]:%Y-%m}", "end": f"{plan.times[-1]:%Y-%m}",
                                "n": len(plan.times)},
           "era5t_months": plan.preliminary, "inputs": inputs,
           "fingerprint": sha256_json({"previous": manifest["fingerprint"], "update": plan.summary()}),
           "updates": [*manifest.get("updates", []), record]}
    periods = dict(new.get("periods") or {})
    if "record" in periods:
        periods["record"] = {**periods["record"], "end": f"{plan.times[-1]:%Y-%m}", "end_from": "update"}
        new["periods"] = periods
    write_text_atomic(plan.cube_dir / "manifest.json", _json(new))
    LOGGER.info("cube %s updated: %d month(s) appended, %d recomputed (%s)", plan.cube_dir, len(plan.appended),
                len(plan.recomputed), ", ".join(plan.recomputed) or "none")
    return new


def _append_targets(plan: CubeUpdate, builder: CubeBuilder, files: dict, bands) -> dict:
    """GRACE months of the mascon files after the old record, regridded into the targets; {centre: months}."""
    targ = zarr.open_group(plan.cube_dir / "targets.zarr", mode="r+")
    centres = [str(c) for c in targ["target"][:]]
    new = plan.times[len(plan.old_times):]
    out: dict[str, list[str]] = {}
    if not len(new):
        return out
    for k, c in enumerate(centres):
        if f"grace_{c}" not in files:
            continue
        path = files[f"grace_{c}"][0]
        known = file_index.remembered_months(path, plan.cube_dir)  # an unchanged file with no new month: not opened
        if known is not None and not len(new.intersection(known)):
            out[c] = []
            continue
        lat, _, _ = mascon_io.mascon_grid(path, c)
        head = builder._open_centre(files, c, lat=(lat[0], lat[min(lat.size, 2) - 1]))  # months, whole-file checks
        check_coverage(head, builder.grid, [path], f"data.grace.{c}", lat=lat)
        file_index.record({path: head["time"].values}, plan.cube_dir)
        common = new.intersection(pd.DatetimeIndex(head["time"].values))
        out[c] = [f"{m:%Y-%m}" for m in common]
        if not len(common):
            continue
        where = plan.times.get_indexer(common)
        for r0, r1 in bands:  # each band read from the file with the source rows its regridding needs
            j0, j1 = _source_slice(lat, builder.grid, r0, r1)
            da = builder._open_centre(files, c, lat=(lat[j0], lat[j1 - 1]), checks=False).sel(time=common)
            band = builder._regrid(da, r0, r1).copy()
            band[:, ~builder.land[r0:r1]] = np.nan
            for j, t in enumerate(where):
                targ["twsa"][k, t, r0:r1] = band[j]
    return out


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=1, default=str)
