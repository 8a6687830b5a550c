"""Readers of external estimates of the storage change the forcing cannot explain (``products.unforced=external``).

Two inputs, either or both (:mod:`gtws_dl.post.unforced` puts them on the product grid before GRACE):

* **regional mass series**, CSV: a ``time`` column (``YYYY-MM``, a date, or a decimal year such as IMBIE's
  ``1992.0417``) and one column per region holding its cumulative mass anomaly in **Gt** (any reference: only
  changes are used), e.g. IMBIE's Greenland and Antarctica series. A column is named by its region,
  ``greenland``, ``Greenland (Gt)`` or ``greenland_gt``; other units in the header (mm, SLE, kg) are refused.
* **a gridded storage field**, NetCDF ``(time, lat, lon)`` on any rectilinear grid: cumulative storage anomaly in
  mm, cm or m of water (``kg m-2`` = mm), e.g. groundwater depletion or glacier mass change; NaN = no estimate.
  Time steps may be months or years.

Both return decimal years (:func:`gtws_dl.seasonal.decimal_year`: mid-month of each stamp's month), so they
interpolate onto a product's months.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.io._common import convert_units, decode_time, open_nc, resolve_one
from gtws_dl.io.errors import InputFileError, input_error
from gtws_dl.io.regrid import to_canonical
from gtws_dl.seasonal import decimal_year

TIME_COLUMNS = ("time", "date", "year", "decimal_year")
MAX_ABS_GT = 1e5  # Gt: a century of today's ice-sheet loss is ~3e4 Gt; beyond this the column is not Gt
MAX_ABS_MM = 1e5  # mm (100 m of water): beyond this the field is not a storage anomaly in the units it says
FIELD_UNITS = {"mm": (1.0, 0.0), "mm water equivalent": (1.0, 0.0), "mm of water equivalent": (1.0, 0.0),
               "kg m-2": (1.0, 0.0), "kg/m2": (1.0, 0.0), "cm": (10.0, 0.0), "cm water equivalent": (10.0, 0.0),
               "m": (1000.0, 0.0), "m of water equivalent": (1000.0, 0.0), "m water equivalent": (1000.0, 0.0)}
FIELD_NAMES = ("unforced_storage", "lwe_thickness", "tws", "twsa", "depletion", "storage")


def _column(name: str, path: Path) -> str:
    """The region key of a CSV column header (``Greenland (Gt)`` -> ``greenland``); other units refused."""
    s = str(name).strip().lower()
    unit = None
    m = re.fullmatch(r"(.*?)\s*[\(\[]\s*([^)\]]*)\s*[\)\]]", s)
    if m:
        s, unit = m.group(1), m.group(2).strip()
    else:
        m = re.fullmatch(r"(.*?)[_ ](gt|mm|cm|sle|kg|km3)", s)
        if m:
            s, unit = m.group(1), m.group(2)
    if unit is not None and unit not in ("gt", "gigatonnes", "gigatonne", "gigatons"):
        raise input_error(path, str(name), "a cumulative mass anomaly in Gt (header 'region', 'region (Gt)' or "
                          "'region_gt')", f"units {unit!r} in the header",
                          hint="convert to Gt (1 mm of global sea level = 361.8 Gt)")
    return re.sub(r"[\s\-]+", "_", s.strip())


def read_mass_series(source: str | Path) -> pd.DataFrame:
    """Regional cumulative mass anomalies: a DataFrame (decimal year index ascending, one float64 column per
    region key, Gt). Raises :class:`InputFileError` naming the file and column for a file that is not such a CSV."""
    path = resolve_one(source, what="unforced mass series (products.unforced_series)")
    try:
        df = pd.read_csv(path, comment="#", skipinitialspace=True)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise input_error(path, None, "a CSV text file (time, then one column per region in Gt)",
                          f"unreadable as CSV ({type(exc).__name__}: {str(exc)[:80]})") from exc
    lower = {str(c).strip().lower(): c for c in df.columns}
    tcol = next((lower[c] for c in TIME_COLUMNS if c in lower), None)
    if tcol is None:
        raise input_error(path, None, f"a time column (one of {list(TIME_COLUMNS)})",
                          f"columns {[str(c) for c in df.columns]}")
    regions = [c for c in df.columns if c != tcol]
    if not regions or df.empty:
        raise input_error(path, None, "a time column, one or more region columns (Gt) and rows",
                          f"columns {[str(c) for c in df.columns]}, {len(df)} rows")
    t = _decimal_years(df[tcol], path, str(tcol))
    out = {}
    for c in regions:
        key = _column(c, path)
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise input_error(path, str(c), "a number (Gt) in every row", f"{df[c].iloc[i]!r} in row {i + 2}",
                              hint="fill the gap or drop the row")
        if np.abs(v).max() > MAX_ABS_GT:
            raise input_error(path, str(c), f"a cumulative mass anomaly in Gt (|value| <= {MAX_ABS_GT:g})",
                              f"{np.abs(v).max():.4g}", hint="is the column in kg or tonnes? convert to Gt")
        if key in out:
            raise input_error(path, str(c), "one column per region", f"a second column for {key!r}")
        out[key] = v
    series = pd.DataFrame(out, index=pd.Index(t, name="decimal_year"))
    if series.index.has_duplicates:
        dup = series.index[series.index.duplicated()][0]
        raise input_error(path, str(tcol), "one row per time", f"time {dup:.4f} twice")
    return series.sort_index()


def _decimal_years(col: pd.Series, path: Path, name: str) -> np.ndarray:
    """Decimal years of a CSV time column: numbers are decimal years (1800-2200), text is parsed as dates."""
    num = pd.to_numeric(col, errors="coerce")
    if num.notna().all():
        t = num.to_numpy(float)
        if t.min() < 1800 or t.max() > 2200:
            raise input_error(path, name, "decimal years between 1800 and 2200 (or dates)",
                              f"{t.min():g} .. {t.max():g}")
        return t
    try:
        stamps = pd.to_datetime(col.astype(str), format="mixed")
    except (ValueError, TypeError) as exc:
        raise input_error(path, name, "dates (YYYY-MM or YYYY-MM-DD) or decimal years",
                          f"{col.iloc[0]!r} ({str(exc)[:60]})") from exc
    return decimal_year(stamps)


def open_storage_field(source: str | Path, variable: str | None = None) -> xr.DataArray:
    """The gridded storage anomaly, lazy, canonical ``(time, lat, lon)`` (lat ascending, lon −180..180) in mm
    float32, with a ``t_years`` coordinate on ``time`` (decimal years, increasing). ``variable``: its name in the
    file (else the one (time, lat, lon) variable, or one of :data:`FIELD_NAMES`)."""
    path = resolve_one(source, what="unforced storage field (products.unforced_field)")
    ds = open_nc(path, chunks={}, variable=variable)
    ds = to_canonical(ds)
    cand = [v for v in ds.data_vars if {"lat", "lon"} <= set(ds[v].dims) and len(ds[v].dims) == 3]
    if variable is not None:
        if variable not in ds.data_vars:
            raise input_error(path, variable, "the variable products.unforced_field_variable names",
                              f"variables {list(ds.data_vars)}")
        name = variable
    elif len(cand) == 1:
        name = cand[0]
    else:
        named = [v for v in FIELD_NAMES if v in cand]
        if not named:
            raise input_error(path, None, "one (time, lat, lon) storage variable",
                              f"{cand or list(ds.data_vars)}", hint="name it with products.unforced_field_variable")
        name = named[0]
    da = ds[name]
    tdim = next((d for d in da.dims if d not in ("lat", "lon")), None)
    if tdim is None or tdim not in ds.variables:
        raise input_error(path, name, "a time dimension with a CF time coordinate", f"dims {da.dims}")
    times = decode_time(ds[tdim], path, what=tdim)
    t = decimal_year(times) if _monthly_or_coarser(times) else None
    if t is None or not np.all(np.diff(t) > 0):
        raise input_error(path, tdim, "increasing time steps of a month or more", f"{len(times)} stamps "
                          f"{times[0]:%Y-%m-%d} .. {times[-1]:%Y-%m-%d}, not one per month or year, or out of order")
    unit = str(da.attrs.get("units", "")).lower()
    if re.search(r"(yr|year|a-1|/a\b|day|d-1|month|s-1|/s\b)", unit):
        raise input_error(path, name, "a storage anomaly (mm, cm or m of water)", f"a rate, units {unit!r}",
                          hint="integrate the rate over time into a cumulative storage change first, with losses "
                               "negative (a depletion rate is often stored positive)")
    da = convert_units(da, path, FIELD_UNITS, "mm", name)
    if da.sizes["lat"] < 2 or da.sizes["lon"] < 2:
        raise input_error(path, name, "a grid of at least 2 x 2 cells", f"{da.sizes['lat']} x {da.sizes['lon']}")
    da = da.rename({tdim: "time"}).transpose("time", "lat", "lon").astype(np.float32)
    da = da.assign_coords(time=np.arange(len(t)), t_years=("time", t))
    da.attrs["source_file"] = str(path)
    return da


def _monthly_or_coarser(times: pd.DatetimeIndex) -> bool:
    """At most one stamp per calendar month (monthly or annual series)."""
    return bool(len(times)) and not times.to_period("M").has_duplicates


def read_field_rows(da: xr.DataArray, lat_range: tuple[float, float], margin: float) -> xr.DataArray | None:
    """The rows of :func:`open_storage_field`'s field within ``lat_range`` ± ``margin`` degrees (at least two, so
    that their bounds are defined; None when the field lies wholly outside), loaded, checked for plausible
    magnitude (a storage anomaly in mm)."""
    lat = da["lat"].values
    i0 = int(np.searchsorted(lat, lat_range[0] - margin, side="left"))
    i1 = int(np.searchsorted(lat, lat_range[1] + margin, side="right"))
    if i1 <= 0 or i0 >= lat.size:
        return None
    if i1 - i0 < 2:  # the field's edge: take its two outermost rows
        i0 = max(0, min(i0, lat.size - 2))
        i1 = i0 + 2
    sub = da.isel(lat=slice(i0, i1)).load()
    vals = sub.values
    big = np.nanmax(np.abs(vals)) if np.isfinite(vals).any() else 0.0
    if big > MAX_ABS_MM:
        raise InputFileError(f"{da.attrs.get('source_file')}: variable {da.name!r}: expected a storage anomaly "
                             f"(|value| <= {MAX_ABS_MM:g} mm after its units); found {big:.4g} mm — are its units "
                             "right (an area-integrated mass, or micrometres)?",
                             paths=[str(da.attrs.get("source_file"))], variable=str(da.name))
    return sub
