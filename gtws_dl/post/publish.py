"""Turn a finished reconstruction (Zarr) into the products users open.

For each centre in the reconstruction:
``gtws_dl_twsa_<centre>.nc`` (+ ``.zarr``) — TWSA in mm, re-referenced to the anomaly baseline;
``gtws_dl_twsa_<centre>_detrended_deseasonalized.nc`` — its residual after removing a linear trend and the mean
seasonal cycle (annual + semi-annual harmonics by default) fitted over ``decompose_period``.
Then ``gtws_dl_regional_series.xlsx`` is (re)written from every product present in the folder.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl import __version__
from gtws_dl.conventions import BASELINE, CENTRES
from gtws_dl.cube.store import _read_manifest_text, cube_member
from gtws_dl.grid import Grid
from gtws_dl.post.products import read_product, write_twsa_product
from gtws_dl.post.regions import region_masks
from gtws_dl.post.series import regional_series, write_series_xlsx
from gtws_dl.post.unforced import (
    DEFAULT_ONSET,
    DEFAULT_Z,
    check_mode,
    describe,
    residual_trend,
    unforced_field,
)
from gtws_dl.recon_store import open_finished
from gtws_dl.seasonal import decimal_year, detrend_deseasonalize

LOGGER = logging.getLogger(__name__)
DD = "_detrended_deseasonalized"


def product_name(centre: str, detrended: bool = False) -> str:
    return f"gtws_dl_twsa_{centre}{DD if detrended else ''}.nc"


def publish(recon_path: str | Path, products_dir: str | Path, *, grid: Grid, cube_dir: str | Path,
            channels: Sequence[str], window: int = 0, train_period: Sequence[str] | None = None,
            val_period: Sequence[str] | None = None, stats_period: Sequence[str] | None = None,
            config: Mapping | None = None, products: Mapping | None = None,
            baseline: tuple[str, str] = BASELINE) -> dict[str, Path]:
    """Write the NetCDF/Zarr products of every centre in ``recon_path`` and refresh the Excel series.

    Provenance written into every product's attributes: the model's predictor ``channels``, its input
    ``window`` in months (0: a model without one, such as the baselines), and the (first, last) months of its
    ``train_period``, ``val_period`` and the cube's normalisation ``stats_period`` (None: not applicable).
    """
    products = dict(products or {})
    out_dir = Path(products_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = open_finished(recon_path)
    static = xr.open_zarr(cube_member(cube_dir, "predictors.zarr"), consolidated=False)
    land = static["land_mask"].values.astype(bool)
    area = static["cell_area"].values
    times = pd.DatetimeIndex(ds["time"].values)
    t_years = decimal_year(times)
    in_base = (times >= pd.Timestamp(baseline[0])) & (times <= pd.Timestamp(baseline[1]) + pd.offsets.MonthEnd(0))
    period = products.get("decompose_period")
    sources = _period_sources(cube_dir)
    written: dict[str, Path] = {}
    H, W = land.shape
    rows = band_rows(len(times), W, float(products.get("memory_gb") or 4.0))
    if rows < H:
        LOGGER.info("products computed in latitude bands of %d rows (products.memory_gb)", rows)
    fit = {"fit_period": tuple(period) if period else None, "n_harmonics": int(products.get("n_harmonics", 2))}
    mode = check_mode(str(products.get("unforced") or "off"))
    onset = float(products.get("unforced_onset") or DEFAULT_ONSET)
    z = float(products.get("unforced_z") or DEFAULT_Z)
    grace = _grace_targets(cube_dir, times) if mode != "off" and train_period else {}
    trend_fit = tuple(decimal_year(pd.DatetimeIndex(list(train_period)))) if train_period else None
    for centre in [str(c) for c in ds["target"].values]:
        def rows_of(name: str, centre=centre):
            """``fn(r0, r1)``: (time, rows, lon) float32 of the store's variable ``name`` for this centre."""
            da = ds[name].sel(target=centre)
            return lambda r0, r1: np.asarray(da[:, r0:r1].values, dtype=np.float32)

        read_twsa, target_rows = rows_of("twsa"), grace.get(centre)

        def anomaly(r0: int, r1: int, read=read_twsa, target=target_rows) -> np.ndarray:
            """(time, rows, lon) mm, plus the unforced residual trend, re-referenced to the baseline: the exact
            anomaly reference of GRACE products."""
            twsa = read(r0, r1)
            if target is not None:  # storage change the forcing cannot explain (gtws_dl.post.unforced)
                slope = residual_trend(np.asarray(target[:, r0:r1], np.float32), twsa, t_years, trend_fit,
                                       z=z)
                twsa = twsa + unforced_field(slope, t_years, trend_fit[0], mode, onset)
            if in_base.any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # ocean cells are all-NaN
                    twsa = twsa - np.nanmean(twsa[in_base], axis=0, keepdims=True)
            return twsa

        def residual(r0: int, r1: int, anomaly=anomaly) -> np.ndarray:
            resid = detrend_deseasonalize(anomaly(r0, r1), t_years, **fit)
            resid[:, ~land[r0:r1]] = np.nan
            return resid.astype(np.float32)

        twsa = banded(anomaly, (len(times), H, W), rows)
        # predictive spread (heteroscedastic head and/or deep ensemble), mm; unaffected by the re-referencing
        twsa_std = banded(rows_of("twsa_std"), (len(times), H, W), rows) if "twsa_std" in ds else None
        attrs = {
            "title": f"gtws-dl reconstructed terrestrial water storage anomaly ({centre.upper()} mascon-trained)",
            "gtws_dl_version": __version__,
            "target_centre": centre,
            "anomaly_baseline": f"{baseline[0]} to {baseline[1]}",
            "time_coverage_start": f"{times[0]:%Y-%m}",  # the record (ACDD), chosen from the data or data.start/end
            "time_coverage_end": f"{times[-1]:%Y-%m}",
            "training_period": " to ".join(train_period or []),
            "validation_period": " to ".join(val_period or []),
            "normalisation_period": " to ".join(stats_period or []),
            "predictors": ", ".join(channels),
            "model_window_months": int(window),
            "period_sources": sources,
            "unforced": describe(mode if centre in grace else "off", onset, train_period, z),
            "config": _short_config(config),
        }
        p = write_twsa_product(out_dir / product_name(centre), twsa, grid=grid, times=times, land_mask=land,
                               cell_area=area, attrs=attrs, twsa_std=twsa_std,
                               zarr_copy=bool(products.get("zarr_copy", True)))
        written[centre] = p
        resid = banded(residual, (len(times), H, W), rows)
        dd_attrs = {**attrs, "title": attrs["title"] + ", detrended and deseasonalized",
                    "processing": "linear trend and mean seasonal cycle (annual + semi-annual harmonics) removed "
                                  f"per cell, fitted over {period or 'the whole record'}"}
        written[centre + DD] = write_twsa_product(
            out_dir / product_name(centre, True), resid, grid=grid, times=times, land_mask=land, cell_area=area,
            attrs=dd_attrs, zarr_copy=bool(products.get("zarr_copy", True)))
        LOGGER.info("wrote %s and its detrended+deseasonalized twin", p)
    written["xlsx"] = write_regional_workbook(out_dir, grid=grid, land=land, cell_area=area)
    return written


def _grace_targets(cube_dir: str | Path, times: pd.DatetimeIndex) -> dict:
    """The cube's GRACE targets {centre: lazy (time, lat, lon) mm on ``times``} (empty if the cube has none)."""
    try:
        targ = xr.open_zarr(cube_member(cube_dir, "targets.zarr"), consolidated=False)
    except (OSError, KeyError, ValueError):
        return {}
    if "twsa" not in targ or not pd.DatetimeIndex(targ["time"].values).equals(times):
        LOGGER.warning("%s: no GRACE targets on the reconstruction's months; products.unforced not applied", cube_dir)
        return {}
    return {str(c): targ["twsa"].sel(target=c).data for c in targ["target"].values}


def band_rows(n_months: int, n_lon: int, memory_gb: float) -> int:
    """Latitude rows per band of the products: a band's float64 working set (about 8 copies of months x rows x
    lon: the anomaly, the fit and its residual, for two bands written at once) within ``memory_gb``."""
    return max(1, int(memory_gb * 2**30 // (n_months * n_lon * 8 * 8)))


def banded(fn, shape: tuple[int, int, int], rows: int):
    """A lazy (time, lat, lon) float32 dask array whose latitude bands of ``rows`` are ``fn(r0, r1)``: computed
    when written, band by band, so a whole field is never in memory."""
    import dask
    import dask.array as dsa

    nt, H, W = shape
    parts = [dsa.from_delayed(dask.delayed(fn, pure=True)(r0, min(H, r0 + rows)), (nt, min(H, r0 + rows) - r0, W),
                              dtype=np.float32) for r0 in range(0, H, rows)]
    return dsa.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def write_regional_workbook(products_dir: str | Path, *, grid: Grid, land: np.ndarray,
                            cell_area: np.ndarray) -> Path:
    """``gtws_dl_regional_series.xlsx``: one sheet per product found in ``products_dir``."""
    products_dir = Path(products_dir)
    masks = region_masks(grid, land)
    sheets: dict[str, pd.DataFrame] = {}
    for detrended in (False, True):
        for centre in CENTRES:
            path = products_dir / product_name(centre, detrended)
            if not path.exists():
                continue
            da = read_product(path, verify=False)["twsa"]  # lazy; the manifest is written after publish()
            months = max(1, min(120, 2**24 // max(1, land.size)))  # ~128 MB of float64 per read, whatever the area
            sheets[centre + (DD if detrended else "")] = regional_series(
                da, cell_area, masks, times=pd.DatetimeIndex(da["time"].values), chunk=months)
    readme = {
        "product": "gtws-dl regional terrestrial water storage anomaly series",
        "version": __version__,
        "units": "<region>_mm: area-weighted mean over the region's land cells, mm water equivalent; "
                 "<region>_Gt: mass anomaly, Gt (1 mm over 1 m2 = 1 kg)",
        "method": "area weights from the spherical cell area; land cells = land fraction >= 0.5 (GLOBE 30'' mask)",
        "regions": ", ".join(masks),
        "sheets": ", ".join(sheets),
        "license": "CC-BY-4.0",
    }
    return write_series_xlsx(sheets, products_dir / "gtws_dl_regional_series.xlsx", readme=readme)


def _period_sources(cube_dir: str | Path) -> str:
    """``record: data, stats: data, ...``: where the cube's periods came from (``manifest["periods"]``), "" for a
    cube without them."""
    try:
        text = _read_manifest_text(cube_dir)
        periods = (json.loads(text) if text else {}).get("periods") or {}
    except (OSError, ValueError):
        return ""
    return ", ".join(f"{name}: {p.get('from', '?')}" for name, p in periods.items()
                     if not name.startswith(("grace_", "era5")))


def _short_config(config: Mapping | None) -> str:
    if not config:
        return ""
    keep = {k: config.get(k) for k in ("grid", "target", "ckpt_path", "data") if k in config}
    return repr(keep)[:4000]
