"""Turn a finished reconstruction (Zarr) into the products users open.

For each centre in the reconstruction:
``gtws_dl_twsa_<centre>.nc`` (+ ``.zarr``) — TWSA in mm, re-referenced to the anomaly baseline;
``gtws_dl_twsa_<centre>_detrended_deseasonalized.nc`` — its residual after removing a linear trend and the mean
seasonal cycle (annual + semi-annual harmonics by default) fitted over ``decompose_period``.
Then ``gtws_dl_regional_series.xlsx`` is (re)written from every product present in the folder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl import __version__
from gtws_dl.conventions import BASELINE, CENTRES
from gtws_dl.grid import Grid
from gtws_dl.post.fields import COEFFICIENTS_VAR, UNFORCED_VAR, ProductFields
from gtws_dl.post.products import read_product, write_twsa_product
from gtws_dl.post.regions import region_masks
from gtws_dl.post.series import regional_series, write_series_xlsx

LOGGER = logging.getLogger(__name__)
DD = "_detrended_deseasonalized"
UNFORCED_ATTRS = {"long_name": "rate of the storage change the forcing cannot explain, added to twsa",
                  "units": "mm yr-1", "grid_mapping": "crs",
                  "comment": "linear trend of GRACE target minus reconstruction over the training months where "
                             "significant (the unforced attribute), 0 elsewhere; NaN over ocean"}
COEFFICIENT_ATTRS = {"long_name": "coefficients of the trend and seasonal cycle removed from twsa",
                     "units": "mm", "grid_mapping": "crs",
                     "comment": "per cell, twsa(t) = residual + const + tau (t - t_ref) + sum_h cos_h cos(2 pi h t) "
                                "+ sin_h sin(2 pi h t), t in decimal years (mid-month), fitted over "
                                "decomposition_fit_period; tau in mm yr-1, the others mm; coefficients in the "
                                "order of coefficient_names"}


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
    f = ProductFields(recon_path, cube_dir, train_period=train_period, products=products, baseline=baseline)
    land, area, times, prelim, period = f.land, f.area, f.times, f.preliminary, f.fit_period
    sources = _period_sources(f.cube_manifest)
    written: dict[str, Path] = {}
    H, W = land.shape
    rows = band_rows(len(times), W, float(products.get("memory_gb") or 4.0))
    if rows < H:
        LOGGER.info("products computed in latitude bands of %d rows (products.memory_gb)", rows)
    zarr_copy = bool(products.get("zarr_copy", True))
    with dask.config.set(num_workers=BANDS_AT_ONCE):  # the bands band_rows budgets for, on any machine
        for centre in f.centres:
            twsa = banded(lambda r0, r1, c=centre: f.anomaly(c, r0, r1), (len(times), H, W), rows)
            # predictive spread (heteroscedastic head and/or deep ensemble), mm; unaffected by the re-referencing
            twsa_std = (banded(lambda r0, r1, c=centre: f.read(c, r0, r1, "twsa_std"), (len(times), H, W), rows)
                        if "twsa_std" in f.ds else None)
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
                "unforced": f.unforced_attr(centre),
                "unforced_onset": f.onset,  # grace_trend's taper (the report evaluates every choice with it)
                "preliminary_months": preliminary_months(times, prelim),
                "config": _short_config(config),
            }
            if f.external is not None and centre in f.grace:  # the inputs of unforced=external (the report reads them)
                attrs.update(f.external.attrs(), unforced_external_until=f.external_from_month(centre))
            extra = {}
            if centre in f.grace:  # the unforced rate added: the monthly update reuses it, users map it
                rate = banded(lambda r0, r1, c=centre: _rate_band(f, c, r0, r1), (H, W), rows)
                extra[UNFORCED_VAR] = (("lat", "lon"), rate, UNFORCED_ATTRS)
            p = write_twsa_product(out_dir / product_name(centre), twsa, grid=grid, times=times, land_mask=land,
                                   cell_area=area, attrs=attrs, twsa_std=twsa_std, preliminary=prelim,
                                   zarr_copy=zarr_copy, extra=extra)
            written[centre] = p
            resid, coef = banded_parts(lambda r0, r1, c=centre: f.residual_and_coefficients(c, r0, r1),
                                      ((len(times), H, W), np.float32), ((len(f.coefficient_names), H, W), np.float64),
                                      rows=rows)
            dd_attrs = {**attrs, "title": attrs["title"] + ", detrended and deseasonalized",
                        "processing": "linear trend and mean seasonal cycle (annual + semi-annual harmonics) removed "
                                      f"per cell, fitted over {period[0]} to {period[1]} (fixed: months published "
                                      "later are residuals of the same fit)",
                        "decomposition_fit_period": f"{period[0]} to {period[1]}"}
            fit_attrs = {**COEFFICIENT_ATTRS, "coefficient_names": " ".join(f.coefficient_names),
                         "t_ref": f.t_ref, "comment": COEFFICIENT_ATTRS["comment"] + f"; t_ref = {f.t_ref:.6f}"}
            written[centre + DD] = write_twsa_product(
                out_dir / product_name(centre, True), resid, grid=grid, times=times, land_mask=land, cell_area=area,
                attrs=dd_attrs, preliminary=prelim, zarr_copy=zarr_copy,
                extra={COEFFICIENTS_VAR: (("coefficient", "lat", "lon"), coef, fit_attrs)})
            LOGGER.info("wrote %s and its detrended+deseasonalized twin", p)
    written["xlsx"] = write_regional_workbook(out_dir, grid=grid, land=land, cell_area=area)
    return written


# Bytes per cell-month of the products' working set: one band's float64 decomposition (the anomaly as
# float64, its trend, seasonal cycle and residual, their temporaries) measured at 72-80 B per cell-month on the
# global 0.25 deg twin (72 months, 2026-12-03, peak RSS of publication at products.memory_gb=1 and 4), times the
# bands computed at once (BANDS_AT_ONCE: dask's threads while the products are written, whatever the core count).
BANDS_AT_ONCE = 2
BAND_BYTES_PER_CELL_MONTH = 80 * BANDS_AT_ONCE


def band_rows(n_months: int, n_lon: int, memory_gb: float) -> int:
    """Latitude rows per band of the products, so that the bands computed at once (two, each ~80 B per
    cell-month, :data:`BAND_BYTES_PER_CELL_MONTH`) stay within ``memory_gb``."""
    return max(1, int(memory_gb * 2**30 // (n_months * n_lon * BAND_BYTES_PER_CELL_MONTH)))


def banded(fn, shape: tuple[int, ...], rows: int, dtype=np.float32):
    """A lazy (..., lat, lon) dask array whose latitude bands of ``rows`` are ``fn(r0, r1)``: computed when
    written, band by band, so a whole field is never in memory."""
    return banded_parts(lambda r0, r1: (fn(r0, r1),), (shape, dtype), rows=rows)[0]


def banded_parts(fn, *specs, rows: int):
    """Lazy dask arrays, one per ``(shape, dtype)`` of ``specs`` ((..., lat, lon) each), whose latitude bands are
    the parts of ``fn(r0, r1)`` (a tuple): the parts of a band come from one task, so written together (one
    ``to_netcdf``) they are computed once."""
    import dask
    import dask.array as dsa

    H, W = specs[0][0][-2:]
    out: list[list] = [[] for _ in specs]
    for r0 in range(0, H, rows):
        r1 = min(H, r0 + rows)
        task = dask.delayed(fn, pure=False, nout=len(specs))(r0, r1)  # unique keys: lambdas may tokenize alike
        for k, (shape, dtype) in enumerate(specs):
            out[k].append(dsa.from_delayed(task[k], (*shape[:-2], r1 - r0, W), dtype=dtype))
    return [dsa.concatenate(p, axis=-2) if len(p) > 1 else p[0] for p in out]


def _rate_band(f: ProductFields, centre: str, r0: int, r1: int) -> np.ndarray:
    """(rows, lon) float32 mm/yr: the band's unforced rate, NaN over the ocean."""
    rate = np.asarray(f.rate(centre, r0, r1), np.float32).copy()
    rate[~f.land[r0:r1]] = np.nan
    return rate


def write_regional_workbook(products_dir: str | Path, *, grid: Grid, land: np.ndarray,
                            cell_area: np.ndarray, since: int | None = None) -> Path:
    """``gtws_dl_regional_series.xlsx``: one sheet per product found in ``products_dir``.

    ``since``: only the rows of months ``since ..`` are computed; earlier rows are kept from the workbook
    already there (the monthly update), sheet by sheet where it holds them."""
    products_dir = Path(products_dir)
    xlsx = products_dir / "gtws_dl_regional_series.xlsx"
    masks = region_masks(grid, land)
    old = pd.read_excel(xlsx, sheet_name=None, engine="calamine") if since is not None and xlsx.exists() else {}
    sheets: dict[str, pd.DataFrame] = {}
    for detrended in (False, True):
        for centre in CENTRES:
            path = products_dir / product_name(centre, detrended)
            if not path.exists():
                continue
            name = centre + (DD if detrended else "")
            da = read_product(path, verify=False)["twsa"]  # lazy; the manifest is written after publish()
            months = max(1, min(120, 2**24 // max(1, land.size)))  # ~128 MB of float64 per read, whatever the area
            keep = old.get(name)
            k = since if keep is not None and since is not None and len(keep) >= since else 0
            new = regional_series(da.isel(time=slice(k, None)), cell_area, masks,
                                  times=pd.DatetimeIndex(da["time"].values[k:]), chunk=months)
            sheets[name] = (pd.concat([keep.iloc[:k][list(new.columns)], new.reset_index(drop=True)],
                                      ignore_index=True) if k else new)
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
    return write_series_xlsx(sheets, xlsx, readme=readme)


def preliminary_months(times: pd.DatetimeIndex, preliminary: np.ndarray) -> str:
    """``"2024-10, 2024-11"``: the flagged months (the products' ``preliminary_months`` attribute)."""
    return ", ".join(m for m, f in zip(times.strftime("%Y-%m"), preliminary, strict=True) if f)


def recorded_fit_period(products_dir: str | Path) -> tuple[str, str] | None:
    """The decomposition fit period of the detrended products already in ``products_dir`` (their
    ``decomposition_fit_period``, else their whole record), None when there is none."""
    for centre in CENTRES:
        path = Path(products_dir) / product_name(centre, True)
        if not path.exists():
            continue
        with xr.open_dataset(path, engine="netcdf4") as ds:
            text = ds.attrs.get("decomposition_fit_period")
            if text:
                a, b = (p.strip() for p in str(text).split(" to "))
                return a, b
            return str(ds.attrs.get("time_coverage_start")), str(ds.attrs.get("time_coverage_end"))
    return None


def _period_sources(manifest: Mapping) -> str:
    """``record: data, stats: data, ...``: where the cube's periods came from (``manifest["periods"]``), "" for a
    cube without them."""
    periods = manifest.get("periods") or {}
    return ", ".join(f"{name}: {p.get('from', '?')}" for name, p in periods.items()
                     if not name.startswith(("grace_", "era5")))


def _short_config(config: Mapping | None) -> str:
    if not config:
        return ""
    keep = {k: config.get(k) for k in ("grid", "target", "ckpt_path", "data") if k in config}
    return repr(keep)[:4000]
