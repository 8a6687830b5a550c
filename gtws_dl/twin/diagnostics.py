"""How much of the twin's true TWSA the forcing can explain, and how noisy its GRACE is.

:func:`variance_budget` reads ``truth_twsa.nc``, ``truth_components.nc`` and the mascon files of a twin folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from gtws_dl.conventions import CENTRES
from gtws_dl.grid import Grid
from gtws_dl.twin import grace as gr
from gtws_dl.twin.config import DEFAULT_HOTSPOTS
from gtws_dl.twin.geo import antarctica_mask, great_circle_km, greenland_mask, mesh


def weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    """Area-weighted median of the finite values of ``x`` (weights ``w``, same shape); NaN when empty."""
    ok = np.isfinite(x) & (w > 0)
    if not ok.any():
        return float("nan")
    xs, ws = x[ok], w[ok]
    o = np.argsort(xs)
    c = np.cumsum(ws[o])
    return float(xs[o][np.searchsorted(c, 0.5 * c[-1])])


def _times(path: Path) -> np.ndarray:
    with netCDF4.Dataset(path) as ds:
        t = netCDF4.num2date(ds["time"][:], ds["time"].units, ds["time"].calendar,
                             only_use_cftime_datetimes=False, only_use_python_datetimes=True)
    return np.array([np.datetime64(x.strftime("%Y-%m"), "M") for x in t])


def explained_fraction(total: np.ndarray, forced: np.ndarray) -> np.ndarray:
    """Per cell 1 - var(total - forced) / var(total) over axis 0 (the R^2 of the forced stores alone)."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        vt = np.nanvar(total, axis=0)
        vu = np.nanvar(total - forced, axis=0)
        return np.where(vt > 0, 1 - vu / vt, np.nan)


def variance_budget(twin_dir: str | Path, grid: Grid | None = None, *, memory_mb: float = 512.0) -> dict[str, Any]:
    """Variance budget of the twin truth and the GRACE noise-to-signal ratio.

    Returns a dict with, for the full period and the GRACE era (2002-04 onward):
    ``explained_land`` (area-weighted median over land excluding Greenland and Antarctica of the per-cell
    R^2 of the forced stores), ``explained_greenland``, ``explained_antarctica``, ``explained_hotspots``
    (cells within 300 km of a depletion hot spot); and per GRACE centre ``noise_mm`` (median per-cell RMS of
    GRACE minus smoothed truth over land), ``signal_mm`` (median per-cell SD of smoothed truth) and their ratio.

    Memory is bounded in area: the per-cell statistics read the truth in latitude bands, the GRACE ones in
    blocks of months, each about ``memory_mb`` of float64.
    """

    d = Path(twin_dir)
    months = _times(d / "truth_twsa.nc")
    with netCDF4.Dataset(d / "truth_twsa.nc") as ds:
        lat, lon = ds["lat"][:], ds["lon"][:]
    if grid is None:
        res = float(lat[1] - lat[0])
        grid = Grid(res, (float(lon[0] - res / 2), float(lon[-1] + res / 2), float(lat[0] - res / 2),
                          float(lat[-1] + res / 2)))
    area = grid.cell_area()
    lat2d, lon2d = mesh(grid)
    H, W = grid.shape
    eras = {"full": months >= months[0], "grace_era": months >= np.datetime64("2002-04", "M")}
    r2 = {era: np.full(grid.shape, np.nan) for era in eras}
    land = np.zeros(grid.shape, bool)
    totals = {era: {n: np.zeros((2, int(sel.sum()))) for n in ("greenland", "antarctica")} for era, sel in eras.items()}
    rows = max(1, int(memory_mb * 2**20 // (len(months) * W * 8 * 4)))  # truth, forced and two temporaries
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        truth = _read_rows(d / "truth_twsa.nc", "twsa", r0, r1)
        forced = _read_rows(d / "truth_components.nc", "twsa_forced", r0, r1)
        band_land = np.isfinite(truth).all(axis=0)
        land[r0:r1] = band_land
        masks = {"greenland": greenland_mask(lat2d[r0:r1], lon2d[r0:r1]) & band_land,
                 "antarctica": antarctica_mask(lat2d[r0:r1], lon2d[r0:r1]) & band_land}
        for era, sel in eras.items():
            r2[era][r0:r1] = explained_fraction(truth[sel], forced[sel])
            for name, m in masks.items():  # the region's total mass series (Gt), not cell by cell
                if m.any():
                    w = area[r0:r1] * m
                    totals[era][name][0] += np.nansum(truth[sel] * w, axis=(1, 2))
                    totals[era][name][1] += np.nansum(forced[sel] * w, axis=(1, 2))
        del truth, forced
    grl, ant = greenland_mask(lat2d, lon2d) & land, antarctica_mask(lat2d, lon2d) & land
    other = land & ~grl & ~ant
    near = np.zeros(grid.shape, bool)
    for h in DEFAULT_HOTSPOTS:
        near |= great_circle_km(lat2d, lon2d, h["lat"], h["lon"]) < 300
    near &= land
    out: dict[str, Any] = {}
    for era, sel in eras.items():
        out[era] = {
            "months": int(sel.sum()),
            "explained_land": weighted_median(np.where(other, r2[era], np.nan), area),
            "explained_greenland": weighted_median(np.where(grl, r2[era], np.nan), area),
            "explained_antarctica": weighted_median(np.where(ant, r2[era], np.nan), area),
            "explained_hotspots": weighted_median(np.where(near, r2[era], np.nan), area),
            "explained_land_mean": float(np.nansum(np.where(other, r2[era], 0) * area) / (area * other).sum()),
        }
        for name, m in (("greenland", grl), ("antarctica", ant)):
            if m.any():
                tot, frc = totals[era][name]
                out[era][f"explained_{name}_total"] = float(explained_fraction(tot[:, None, None],
                                                                               frc[:, None, None])[0, 0])
    out["grace"] = _grace_noise(d, grid, months, land, memory_mb)
    return _clean(out)


def _read_rows(path: Path, name: str, r0: int, r1: int) -> np.ndarray:
    """``name`` (time, lat, lon) of ``path`` on latitude rows ``r0 .. r1``, float64."""
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        return np.asarray(ds[name][:, r0:r1, :], dtype=np.float64)


def _grace_noise(d: Path, grid: Grid, months: np.ndarray, land: np.ndarray, memory_mb: float) -> dict[str, Any]:
    """Per centre: median per-cell RMS of (GRACE - smoothed truth) minus its mean, and SD of the smoothed truth,
    accumulated over blocks of GRACE months (sums and sums of squares per cell)."""
    gm = gr.available_months(str(months[0]), str(months[-1]))
    out: dict[str, Any] = {}
    if not len(gm):
        return out
    idx = np.searchsorted(months, gm)
    step = max(1, int(memory_mb * 2**20 // (grid.nlat * grid.nlon * 8 * 4)))
    patterns = {"jpl": "GRCTellus.JPL.*.nc", "csr": "CSR_*.nc", "gsfc": "gsfc.*.nc"}
    acc: dict[str, dict[str, Any]] = {}
    for i0 in range(0, len(gm), step):
        sel = idx[i0:i0 + step]
        with netCDF4.Dataset(d / "truth_twsa.nc") as ds:
            ds.set_auto_mask(False)
            tr = np.asarray(ds["twsa"][int(sel.min()):int(sel.max()) + 1], dtype=np.float64)[sel - sel.min()]
        sm = gr.smooth(tr, grid, 300.0)
        del tr
        for centre in CENTRES:
            files = sorted((d / "grace").glob(patterns[centre]))
            if not files:
                continue
            with netCDF4.Dataset(files[0]) as ds:
                ds.set_auto_mask(False)
                v = ds["lwe_thickness"]
                if v.dimensions[0] == "time":
                    x = np.asarray(v[i0:i0 + len(sel)], dtype=np.float64)
                else:
                    x = np.moveaxis(np.asarray(v[..., i0:i0 + len(sel)], dtype=np.float64), -1, 0)
                clon = np.asarray(ds["lon"][:])
                clat = np.asarray(ds["lat"][:])
            clon = np.where(clon > 180, clon - 360, clon)
            x = x[..., np.argsort(clon)] * 10.0
            cres = float(clat[1] - clat[0])
            cg = gr.centre_grid(grid, cres) if cres != grid.res else grid
            ref = gr.block_mean(sm, grid, cg)
            err = x - ref
            a = acc.setdefault(centre, {"grid": cg, "n": 0, "e": 0.0, "ee": 0.0, "r": 0.0, "rr": 0.0})
            a["n"] += len(sel)
            a["e"] = a["e"] + err.sum(axis=0)
            a["ee"] = a["ee"] + (err**2).sum(axis=0)
            a["r"] = a["r"] + ref.sum(axis=0)
            a["rr"] = a["rr"] + (ref**2).sum(axis=0)
    for centre, a in acc.items():
        cg, n = a["grid"], a["n"]
        cl = gr.block_mean(land.astype(float), grid, cg) > 0.5
        ca = cg.cell_area()
        rms = np.sqrt(np.maximum(a["ee"] / n - (a["e"] / n) ** 2, 0.0))  # RMS of the error minus its mean
        sd = np.sqrt(np.maximum(a["rr"] / n - (a["r"] / n) ** 2, 0.0))
        noise = weighted_median(np.where(cl, rms, np.nan), ca)
        signal = weighted_median(np.where(cl, sd, np.nan), ca)
        out[centre] = {"noise_mm": noise, "signal_mm": signal, "noise_to_signal": noise / signal}
    return out


def _clean(obj: Any) -> Any:
    """Round floats and turn NaN (empty region) into None so the result is strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float):
        return None if not np.isfinite(obj) else round(obj, 4)
    return obj
