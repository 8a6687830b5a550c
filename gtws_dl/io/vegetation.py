"""Vegetation predictors (LAI, SIF) and land-cover fractions, plus filling before their record.

Layouts (``docs/FORMATS.md``): ``lai.nc`` variable ``LAI`` (time, lat, lon) m² m⁻²;
``sif.nc`` variable ``SIF`` mW m⁻² nm⁻¹ sr⁻¹; ``landcover.nc`` variable ``land_cover_fraction``
(time, class, lat, lon), annual. Coordinates may be ``lat``/``latitude`` ascending or descending,
``lon`` 0..360 or −180..180; time CF-encoded with a standard calendar, stamped anywhere in the
month (monthly) or year (annual).

Filling (``fill_before_record``): the ERA5 predictors start in 1940, LAI in 1982, SIF in 2001.
Before a record starts (and in its gaps, and after it ends) a predictor takes its monthly
climatology from the first ``clim_years`` (default 10) years of its record, and an availability
flag (1 observed, 0 filled) tells the model which is which.

Land cover is annual; :func:`landcover_to_monthly` holds each year's fractions for its 12 months,
uses the first year's fractions before the record and the last year's after it.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.io._common import (
    check_monthly,
    convert_units,
    covered,
    decode_time,
    floor_months,
    open_nc,
    probe_read,
    require_variable,
    squeeze_singletons,
)
from gtws_dl.io.errors import input_error
from gtws_dl.io.plausibility import Policy, check_array
from gtws_dl.io.regrid import to_canonical

LOGGER = logging.getLogger(__name__)

# the readers' arrays are lazy, read in chunks of this many months and at most this many bytes (float32): at global
# 0.25 deg one LAI field over 1940-2024 is 4.2 GB, land cover with its classes several times that
CHUNK_MONTHS = 12
CHUNK_BYTES = 32 * 2**20

LAI_UNITS = {"m2 m-2": (1.0, 0.0), "m2/m2": (1.0, 0.0), "1": (1.0, 0.0), "m2.m-2": (1.0, 0.0)}
SIF_UNITS = {
    "mW m-2 nm-1 sr-1": (1.0, 0.0),
    "mW/m2/nm/sr": (1.0, 0.0),
    "mW m-2 sr-1 nm-1": (1.0, 0.0),
    "W m-2 um-1 sr-1": (1.0, 0.0),
}  # 1 W m-2 µm-1 sr-1 = 1 mW m-2 nm-1 sr-1
FRACTION_UNITS = {
    "1": (1.0, 0.0),
    "fraction": (1.0, 0.0),
    "": (1.0, 0.0),
    "%": (0.01, 0.0),
    "percent": (0.01, 0.0),
}


def _open_gridded(
    path, var: str, units: dict, canonical: str, *, annual: bool = False, plausibility: Policy | list | None = None
) -> xr.DataArray:
    ds = open_nc(path)
    name = require_variable(ds, var, path)
    da = ds[name]
    tname = "time"
    if tname not in da.dims:
        raise input_error(path, var, "a 'time' dimension", f"dims {da.dims}")
    da = squeeze_singletons(da, path, var, (tname, "lat", "lon", "latitude", "longitude", "class"))
    probe_read(path, da, tname)
    stamps = decode_time(ds[tname], path)
    if annual:
        labels = pd.DatetimeIndex(stamps.to_period("Y").to_timestamp()).as_unit("ns")
        dup = labels[labels.duplicated()]
        if len(dup):
            raise input_error(
                path, var, "annual data (one time step per year)", f"several steps in {sorted(set(dup.year))}"
            )
    else:
        labels = floor_months(stamps)
        check_monthly(labels, path, var)
    # lazy (dask): the checks stream the file in blocks of months, a cube band reads its months and rows only
    da = da.chunk(_chunks(da, tname))
    check_array(da, tname, path=path, variable=var, table=units, canonical=canonical, policy=plausibility)
    da = convert_units(da, path, units, canonical, var)
    da = to_canonical(da.assign_coords(time=labels))
    if "lat" not in da.dims or "lon" not in da.dims:
        raise input_error(path, var, "dims lat and lon", f"dims {da.dims}")
    da = da.drop_vars([c for c in da.coords if c not in da.dims and c != "class"])
    da = da.sortby("time").astype(np.float32)
    da.name = var
    da.attrs = {"units": canonical, "source_file": str(path)}
    return da


def _chunks(da: xr.DataArray, tname: str) -> dict[str, int]:
    """Dask chunks of a file's variable within :data:`CHUNK_BYTES` (float32): latitude rows as few as that allows
    but never fewer than the file stores per chunk (each read decompresses whole stored chunks), then up to
    :data:`CHUNK_MONTHS` time steps."""
    lat = next((d for d in ("lat", "latitude") if d in da.dims), None)
    if lat is None:
        return {tname: CHUNK_MONTHS}
    other = int(np.prod([n for d, n in da.sizes.items() if d not in (tname, lat)]))
    stored = da.encoding.get("chunksizes")
    stored_rows = int(stored[da.dims.index(lat)]) if stored and len(stored) == da.ndim else 1
    rows = max(stored_rows, CHUNK_BYTES // (CHUNK_MONTHS * max(1, other) * 4))
    rows = int(min(da.sizes[lat], rows))
    steps = int(max(1, min(CHUNK_MONTHS, CHUNK_BYTES // (rows * max(1, other) * 4))))
    return {tname: steps, lat: rows}


def open_lai(path: str | os.PathLike, *, plausibility: Policy | list | None = None) -> xr.DataArray:
    """Leaf area index ``LAI`` (time, lat, lon), m² m⁻², month-start time, canonical grid.

    Values are checked by :mod:`gtws_dl.io.plausibility` (undeclared fill sentinels, range -1..15);
    ``plausibility=["LAI"]`` only logs the findings.
    """
    return _open_gridded(path, "LAI", LAI_UNITS, "m2 m-2", plausibility=plausibility).transpose("time", "lat", "lon")


def open_sif(path: str | os.PathLike, *, plausibility: Policy | list | None = None) -> xr.DataArray:
    """Solar-induced fluorescence ``SIF`` (time, lat, lon), mW m⁻² nm⁻¹ sr⁻¹, canonical grid.

    Values are checked by :mod:`gtws_dl.io.plausibility` (undeclared fill sentinels, range -2..5);
    ``plausibility=["SIF"]`` only logs the findings.
    """
    return _open_gridded(path, "SIF", SIF_UNITS, "mW m-2 nm-1 sr-1", plausibility=plausibility).transpose(
        "time", "lat", "lon"
    )


def open_landcover(path: str | os.PathLike, *, plausibility: Policy | list | None = None) -> xr.DataArray:
    """Land-cover fractions ``land_cover_fraction`` (time, class, lat, lon), 0..1, annual.

    ``time`` is Jan 1 of each year; ``class`` holds the class names. Percent inputs are /100.
    """
    da = _open_gridded(path, "land_cover_fraction", FRACTION_UNITS, "1", annual=True, plausibility=plausibility)
    if "class" not in da.dims:
        raise input_error(path, "land_cover_fraction", "a 'class' dimension", f"dims {da.dims}")
    if "class" in da.coords:
        da = da.assign_coords(
            {"class": [str(c.decode() if isinstance(c, bytes) else c) for c in da["class"].values]}
        )
    return da.transpose("time", "class", "lat", "lon")


def _as_index(time_index) -> pd.DatetimeIndex:
    if isinstance(time_index, xr.DataArray):
        time_index = time_index.values
    idx = pd.DatetimeIndex(time_index)
    return floor_months(idx)


def fill_before_record(
    da: xr.DataArray, time_index, *, clim_years: int = 10
) -> tuple[xr.DataArray, xr.DataArray]:
    """Extend a monthly predictor to ``time_index``, filling unobserved months by climatology.

    Parameters
    ----------
    da : DataArray (time, ...)
        Monthly predictor, month-start stamps (e.g. from :func:`open_lai`).
    time_index : DatetimeIndex or DataArray
        Target monthly axis (month starts), e.g. 1940-01 .. 2024-12.
    clim_years : int
        Length of the climatology period, from the first month of the record.

    Returns
    -------
    filled : DataArray (time, ...)
        On ``time_index``; months before the record, in gaps (absent or all-NaN months) and
        after the record take the calendar-month mean of the first ``clim_years`` years.
    available : DataArray (time,)
        float32 1 where the month was observed, 0 where it was filled.

    Notes
    -----
    NaN cells inside an observed month (e.g. ocean) are left as they are.
    """
    target = _as_index(time_index)
    src_times = pd.DatetimeIndex(da["time"].values)
    spatial = [d for d in da.dims if d != "time"]
    observed_month = ~da.isnull().all(spatial).values if spatial else ~da.isnull().values
    if not observed_month.any():
        raise input_error(
            da.attrs.get("source_file", "<DataArray>"),
            str(da.name),
            "at least one observed month",
            "all months NaN",
        )
    t_obs = src_times[observed_month]
    end = t_obs[0] + pd.DateOffset(years=clim_years)
    base = da.isel(time=np.flatnonzero(observed_month & (src_times < end)))  # the climatology's months only
    clim = base.groupby("time.month").mean("time", skipna=True)
    missing_months = sorted(set(range(1, 13)) - set(clim["month"].values.tolist()))
    if missing_months:
        raise input_error(
            da.attrs.get("source_file", "<DataArray>"),
            str(da.name),
            f"every calendar month in the first {clim_years} years ({covered(t_obs)})",
            f"no data for calendar months {missing_months}",
        )
    avail_mask = np.isin(target.values, t_obs.values)
    # observed months as they are, the others the calendar month's climatology (12 fields in memory); lazy
    clim_values = clim.transpose("month", *spatial).sel(month=np.arange(1, 13)).astype(da.dtype).load()
    on_target = xr.DataArray(target.month.values - 1, dims="time", coords={"time": target})
    rows = {d: da.chunksizes[d] for d in spatial} if da.chunks else {}  # the fill chunked like the record
    fill = clim_values.chunk({"month": 1, **rows}).isel(month=on_target).drop_vars("month", errors="ignore")
    seen = xr.DataArray(avail_mask, dims="time", coords={"time": target})
    filled = da.transpose("time", *spatial).reindex(time=target).where(seen, fill).astype(da.dtype)
    filled.attrs = {
        **da.attrs,
        "filled_with": f"monthly climatology of {base['time'].values[0]!s:.7} "
        f"+ {clim_years} years where not observed",
    }
    filled.name = da.name
    available = xr.DataArray(
        avail_mask.astype(np.float32),
        dims="time",
        coords={"time": target},
        name=f"{da.name}_available",
        attrs={"units": "1", "long_name": "1 observed, 0 filled"},
    )
    before = int((target < src_times.min()).sum())
    LOGGER.info(
        "%s: %d of %d months filled by climatology (%d before the record)",
        da.name,
        int((~avail_mask).sum()),
        len(target),
        before,
    )
    return filled, available


def landcover_to_monthly(lc: xr.DataArray, time_index) -> xr.DataArray:
    """Annual land cover → monthly by holding each year; first/last year outside the record."""
    target = _as_index(time_index)
    years = pd.DatetimeIndex(lc["time"].values).year
    first, last = years.min(), years.max()
    pick = np.clip(target.year, first, last)
    pos = {y: i for i, y in enumerate(years)}
    idx = []
    for y in pick:
        # gaps between years hold the most recent earlier year
        yy = y
        while yy not in pos:
            yy -= 1
        idx.append(pos[yy])
    out = lc.isel(time=np.asarray(idx)).assign_coords(time=target)  # lazy: the years picked when read
    out.attrs = {
        **lc.attrs,
        "monthly_from_annual": "each year held for its 12 months; "
        f"before {first} the {first} values, after {last} the {last} values",
    }
    return out
