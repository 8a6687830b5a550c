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


def _read(path: Path, name: str) -> np.ndarray:
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        return np.asarray(ds[name][:], dtype=np.float64)


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


def variance_budget(twin_dir: str | Path, grid: Grid | None = None) -> dict[str, Any]:
    """Variance budget of the twin truth and the GRACE noise-to-signal ratio.

    Returns a dict with, for the full period and the GRACE era (2002-04 onward):
    ``explained_land`` (area-weighted median over land excluding Greenland and Antarctica of the per-cell
    R^2 of the forced stores), ``explained_greenland``, ``explained_antarctica``, ``explained_hotspots``
    (cells within 300 km of a depletion hot spot); and per GRACE centre ``noise_mm`` (median per-cell RMS of
    GRACE minus smoothed truth over land), ``signal_mm`` (median per-cell SD of smoothed truth) and their ratio.
    """

    d = Path(twin_dir)
    truth = _read(d / "truth_twsa.nc", "twsa")
    forced = _read(d / "truth_components.nc", "twsa_forced")
    months = _times(d / "truth_twsa.nc")
    with netCDF4.Dataset(d / "truth_twsa.nc") as ds:
        lat, lon = ds["lat"][:], ds["lon"][:]
    if grid is None:
        res = float(lat[1] - lat[0])
        grid = Grid(res, (float(lon[0] - res / 2), float(lon[-1] + res / 2), float(lat[0] - res / 2),
                          float(lat[-1] + res / 2)))
    area = grid.cell_area()
    lat2d, lon2d = mesh(grid)
    land = np.isfinite(truth).all(axis=0)
    grl, ant = greenland_mask(lat2d, lon2d) & land, antarctica_mask(lat2d, lon2d) & land
    other = land & ~grl & ~ant
    near = np.zeros(grid.shape, bool)
    for h in DEFAULT_HOTSPOTS:
        near |= great_circle_km(lat2d, lon2d, h["lat"], h["lon"]) < 300
    near &= land
    out: dict[str, Any] = {}
    eras = {"full": months >= months[0], "grace_era": months >= np.datetime64("2002-04", "M")}
    for era, sel in eras.items():
        r2 = explained_fraction(truth[sel], forced[sel])
        out[era] = {
            "months": int(sel.sum()),
            "explained_land": weighted_median(np.where(other, r2, np.nan), area),
            "explained_greenland": weighted_median(np.where(grl, r2, np.nan), area),
            "explained_antarctica": weighted_median(np.where(ant, r2, np.nan), area),
            "explained_hotspots": weighted_median(np.where(near, r2, np.nan), area),
            "explained_land_mean": float(np.nansum(np.where(other, r2, 0) * area) / (area * other).sum()),
        }
        for name, m in (("greenland", grl), ("antarctica", ant)):
            if m.any():  # the region's total mass series (Gt), not cell by cell
                w = area * m
                tot = np.nansum(truth[sel] * w, axis=(1, 2))[:, None, None]
                frc = np.nansum(forced[sel] * w, axis=(1, 2))[:, None, None]
                out[era][f"explained_{name}_total"] = float(explained_fraction(tot, frc)[0, 0])
    # GRACE noise vs signal, on each centre's grid
    gm = gr.available_months(str(months[0]), str(months[-1]))
    out["grace"] = {}
    if len(gm):
        idx = np.searchsorted(months, gm)
        sm = gr.smooth(truth[idx], grid, 300.0)
        for centre in CENTRES:
            files = sorted((d / "grace").glob({"jpl": "GRCTellus.JPL.*.nc", "csr": "CSR_*.nc", "gsfc": "gsfc.*.nc"}[centre]))
            if not files:
                continue
            with netCDF4.Dataset(files[0]) as ds:
                ds.set_auto_mask(False)
                v = ds["lwe_thickness"]
                x = np.asarray(v[:], dtype=np.float64)
                if v.dimensions[0] != "time":
                    x = np.moveaxis(x, -1, 0)
                clon = np.asarray(ds["lon"][:])
                clat = np.asarray(ds["lat"][:])
            clon = np.where(clon > 180, clon - 360, clon)
            x = x[..., np.argsort(clon)] * 10.0
            cres = float(clat[1] - clat[0])
            cg = gr.centre_grid(grid, cres) if cres != grid.res else grid
            ref = gr.block_mean(sm, grid, cg)
            err = x - ref
            err -= err.mean(axis=0)
            cl = gr.block_mean(land.astype(float), grid, cg) > 0.5
            ca = cg.cell_area()
            noise = weighted_median(np.where(cl, np.sqrt((err**2).mean(axis=0)), np.nan), ca)
            signal = weighted_median(np.where(cl, ref.std(axis=0), np.nan), ca)
            out["grace"][centre] = {"noise_mm": noise, "signal_mm": signal, "noise_to_signal": noise / signal}
    return _clean(out)


def _clean(obj: Any) -> Any:
    """Round floats and turn NaN (empty region) into None so the result is strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float):
        return None if not np.isfinite(obj) else round(obj, 4)
    return obj
