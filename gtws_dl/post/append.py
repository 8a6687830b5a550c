"""Write an update's months into the products already published, in place of a rewrite (the monthly update).

The months from ``first`` on (the ERA5T months now final, and the new months) are computed with the same code as
a publication (:class:`~gtws_dl.post.fields.ProductFields`, the recorded fit period) and written into each
product — NetCDF (its ``time`` is unlimited), its Zarr copy and the workbook's rows — leaving every other month's
bytes as they are. Each NetCDF is modified as a copy renamed over the original, each Zarr chunk is replaced by
rename (zarr ≥ 3.1), so the hard-link snapshots of :mod:`gtws_dl.journal` keep the previous products intact.

A folder that cannot be appended to (a product missing, written before products had an unlimited time axis,
on other months, or fitted over another period) returns None: the caller publishes it whole.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import zarr
from xarray.coding.times import encode_cf_datetime

from gtws_dl.conventions import BASELINE
from gtws_dl.grid import Grid
from gtws_dl.post.fields import COEFFICIENTS_VAR, UNFORCED_VAR, ProductFields
from gtws_dl.post.products import TIME_UNITS, month_bounds, zarr_path
from gtws_dl.post.publish import DD, band_rows, preliminary_months, product_name, write_regional_workbook
from gtws_dl.zarr_time import extend_time

LOGGER = logging.getLogger(__name__)


def append_products(recon_path: str | Path, products_dir: str | Path, *, first: int, grid: Grid,
                    cube_dir: str | Path, train_period: Sequence[str] | None, products: Mapping | None,
                    baseline: tuple[str, str] = BASELINE) -> dict[str, Path] | None:
    """Write months ``first ..`` of the reconstruction into the products of ``products_dir``; returns the paths
    written, or None (nothing written) when the folder must be published whole."""
    out = Path(products_dir)
    f = ProductFields(recon_path, cube_dir, train_period=train_period, products=products, baseline=baseline)
    f.frozen = {c: (out / product_name(c), out / product_name(c, True)) for c in f.centres}  # their fits reused
    targets = [(c, dd) for c in f.centres for dd in (False, True)]
    for c, dd in targets:
        why = _cannot_append(out / product_name(c, dd), f, first, c, dd)
        if why:
            LOGGER.info("products of %s published whole: %s", out, why)
            return None
    H, W = f.land.shape
    rows = band_rows(len(f.times), W, float((products or {}).get("memory_gb") or 4.0))
    bands = [(r0, min(H, r0 + rows)) for r0 in range(0, H, rows)]
    written: dict[str, Path] = {}
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    note = (f"{stamp} months {f.times[first]:%Y-%m}..{f.times[-1]:%Y-%m} written by gtws-dl update "
            "(earlier months unchanged)")
    for c, dd in targets:
        def values(r0: int, r1: int, c=c, dd=dd) -> np.ndarray:
            v = f.residual(c, r0, r1, since=first) if dd else f.anomaly(c, r0, r1, since=first)
            v[:, ~f.land[r0:r1]] = np.nan
            return v.astype(np.float32)

        path = out / product_name(c, dd)
        _append_product(path, f, first, bands, values, c, note)
        written[c + (DD if dd else "")] = path
    written["xlsx"] = write_regional_workbook(out, grid=grid, land=f.land, cell_area=f.area, since=first)
    LOGGER.info("appended months %s..%s to %d products in %s", f"{f.times[first]:%Y-%m}", f"{f.times[-1]:%Y-%m}",
                len(targets), out)
    return written


def _cannot_append(path: Path, f: ProductFields, first: int, centre: str, dd: bool) -> str | None:
    """Why the product ``path`` cannot take the months ``first ..`` in place (None: it can)."""
    if not path.exists():
        return f"{path.name} does not exist"
    with netCDF4.Dataset(path) as nc:
        if "time" not in nc.dimensions or not nc.dimensions["time"].isunlimited():
            return f"{path.name} has a fixed time axis (written before products were appendable)"
        n_old = len(nc.dimensions["time"])
        if n_old < first or n_old > len(f.times):
            return f"{path.name} holds {n_old} months, the update starts at month {first}"
        have = np.asarray(nc["time"][:], dtype=np.float64)
        if not np.array_equal(have, _encode(month_bounds(f.times[:n_old])[1])):
            return f"{path.name} holds other months than the reconstruction"
        if dd and getattr(nc, "decomposition_fit_period", None) != " to ".join(f.fit_period):
            return f"{path.name} was fitted over {getattr(nc, 'decomposition_fit_period', '?')}, not {f.fit_period}"
        if dd and COEFFICIENTS_VAR not in nc.variables:
            return f"{path.name} does not keep its fit ({COEFFICIENTS_VAR}: published before products kept it)"
        if dd and abs(float(getattr(nc[COEFFICIENTS_VAR], "t_ref", np.nan)) - f.t_ref) > 1e-9:
            return f"{path.name}'s fit has another reference time than the fit period's"
        unforced = f.unforced_attr(centre)
        if getattr(nc, "unforced", unforced) != unforced:
            return f"{path.name} was published with unforced = {nc.unforced!r}, not {unforced!r}"
        if not dd and centre in f.grace and UNFORCED_VAR not in nc.variables:
            return f"{path.name} does not keep its unforced rate ({UNFORCED_VAR}: published before products kept it)"
    return None


def _encode(stamps) -> np.ndarray:
    num, _, _ = encode_cf_datetime(np.asarray(stamps), TIME_UNITS, "standard", dtype=np.dtype("float64"))
    return np.asarray(num, dtype=np.float64)


def _attrs(f: ProductFields, note: str, history: str) -> dict[str, str]:
    return {"time_coverage_end": f"{f.times[-1]:%Y-%m}",
            "preliminary_months": preliminary_months(f.times, f.preliminary),
            "date_modified": note[:20], "history": f"{history}\n{note}" if history else note}


def _append_product(path: Path, f: ProductFields, first: int, bands, values, centre: str, note: str) -> None:
    """Months ``first ..`` into a copy of the NetCDF product (renamed over it) and into its Zarr copy (chunks
    replaced by rename); each band's values are computed once for both."""
    start, mid, end = month_bounds(f.times)
    n = len(f.times)
    bnds = np.stack([_encode(start[first:]), _encode(end[first:])], axis=1)
    store = zarr_path(path)
    g = None
    if store.exists():
        extend_time(store, pd.DatetimeIndex(mid))
        g = zarr.open_group(store, mode="r+")
        g["time_bnds"][first:n] = bnds
        g["preliminary"][:] = f.preliminary
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    shutil.copyfile(path, tmp)  # a new file: the snapshot's link keeps the old bytes
    try:
        with netCDF4.Dataset(tmp, "a") as nc:
            nc["time"][first:n] = _encode(mid[first:])
            nc["time_bnds"][first:n, :] = bnds
            nc["preliminary"][:n] = f.preliminary
            for r0, r1 in bands:
                v = values(r0, r1)
                nc["twsa"][first:n, r0:r1, :] = v
                if g is not None:
                    g["twsa"][first:n, r0:r1] = v
                if "twsa_std" in nc.variables:
                    std = f.read(centre, r0, r1, "twsa_std", since=first)
                    std[:, ~f.land[r0:r1]] = np.nan
                    nc["twsa_std"][first:n, r0:r1, :] = std
                    if g is not None and "twsa_std" in g:
                        g["twsa_std"][first:n, r0:r1] = std
            nc.setncatts(_attrs(f, note, getattr(nc, "history", "")))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if g is not None:
        g.attrs.update(_attrs(f, note, str(g.attrs.get("history", ""))))
