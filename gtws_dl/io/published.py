"""Readers for published TWSA reconstructions that users compare gtws-dl with.

* **GTWS-MLrec** (Yin et al. 2023, ESSD 15, 5597; files such as ``JPL-based GTWS-MLrec TWS.nc``):
  variable ``TWSA`` whose dims carry *no coordinate values* (dims ``x``, ``y``, ``z`` in the
  published files, plus an unused ``zz`` dim): ``y`` = latitude from 90 to −90 every 0.25°
  (721 nodes), ``x`` = longitude 0..359.75 (1440), ``z`` = months from 1940-01. The reader
  rebuilds the coordinates, checks the shape, and returns the canonical layout. A 720-row
  variant (cell centres 89.875..−89.875) is accepted too.
* **GRACE-REC** (Humphrey & Gudmundsson 2019; ``GRACE_REC_v03_<JPL|GSFC>_<forcing>_monthly_
  ensemble_mean.nc``): variables ``rec_ensemble_mean`` (deseasonalised reconstruction),
  ``rec_seasonal_cycle`` (GRACE seasonal cycle), ``rec_ensemble_p05``/``p95``; 0.5° with
  ``lat``/``lon``/``time`` coordinates, mid-month stamps (``days since 1901-01-01``).
  ``full=True`` returns ``rec_ensemble_mean + rec_seasonal_cycle``.
* any CF NetCDF TWS field: units mm, cm, m or kg m⁻² converted to mm.
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
    decode_time,
    floor_months,
    open_nc,
    probe_read,
)
from gtws_dl.io.errors import input_error, missing_variable
from gtws_dl.io.regrid import to_canonical

LOGGER = logging.getLogger(__name__)

TWS_UNITS = {
    "mm": (1.0, 0.0),
    "millimeters": (1.0, 0.0),
    "mm water equivalent": (1.0, 0.0),
    "kg m-2": (1.0, 0.0),
    "kg/m2": (1.0, 0.0),
    "kg m-2 (mm)": (1.0, 0.0),
    "cm": (10.0, 0.0),
    "centimeters": (10.0, 0.0),
    "m": (1000.0, 0.0),
    "meters": (1000.0, 0.0),
}
_TWS_NAMES = ("twsa", "TWSA", "tws", "TWS", "lwe_thickness", "tws_anomaly", "rec_ensemble_mean")


def _finish(da: xr.DataArray, path, product: str) -> xr.DataArray:
    da = to_canonical(da).transpose("time", "lat", "lon").astype(np.float32)
    da = da.drop_vars([c for c in da.coords if c not in ("time", "lat", "lon")])
    da.name = "twsa"
    da.attrs = {
        "units": "mm",
        "long_name": "terrestrial water storage anomaly",
        "product": product,
        "source_file": str(path),
        **({"units_in_file": da.attrs["units_in_file"]} if "units_in_file" in da.attrs else {}),
    }
    return da


def open_gtws_mlrec(path: str | os.PathLike, *, start: str = "1940-01", units: str = "mm") -> xr.DataArray:
    """Read a GTWS-MLrec file (variable ``TWSA``, dims without coordinates) into canonical TWSA.

    Parameters
    ----------
    path : path
        e.g. ``JPL-based GTWS-MLrec TWS.nc``.
    start : str
        First month of the record (the published files start in 1940-01).
    units : str
        Units to assume when the variable has no ``units`` attribute (published: mm).
    """
    ds = open_nc(path)
    if "TWSA" not in ds.data_vars:
        raise missing_variable(path, "TWSA", list(ds.data_vars))
    da = ds["TWSA"]
    if da.ndim != 3:
        raise input_error(path, "TWSA", "3 dims (lon, lat, month)", f"dims {dict(da.sizes)}")
    named = {"x": "lon", "y": "lat", "z": "time"}
    ren: dict[str, str] = {}
    if set(da.dims) == set(named):
        ren = dict(named)
    else:  # unnamed/phony dims: recognise by size
        for d, n in da.sizes.items():
            if n == 1440 and "lon" not in ren.values():
                ren[d] = "lon"
            elif n in (720, 721) and "lat" not in ren.values():
                ren[d] = "lat"
            else:
                ren[d] = "time"
    da = da.rename(ren)
    nlat, nlon, nt = da.sizes.get("lat"), da.sizes.get("lon"), da.sizes.get("time")
    if nlon != 1440 or nlat not in (720, 721) or set(da.dims) != {"lat", "lon", "time"}:
        raise input_error(
            path,
            "TWSA",
            "shape lat 721 (90..-90 every 0.25 deg) x lon 1440 (0..359.75) x months",
            f"dims {dict(ds['TWSA'].sizes)}",
        )
    lat = np.linspace(90.0, -90.0, 721) if nlat == 721 else np.linspace(89.875, -89.875, 720)
    lon = np.arange(1440) * 0.25
    time = pd.date_range(pd.Timestamp(start).to_period("M").to_timestamp(), periods=nt, freq="MS")
    probe_read(path, da, "time")
    da = da.drop_vars(list(da.coords)).assign_coords(lat=lat, lon=lon, time=time)
    if "units" not in da.attrs:
        da.attrs["units"] = units
    da = convert_units(da, path, TWS_UNITS, "mm", "TWSA")
    return _finish(da, path, "GTWS-MLrec")


def _open_cf(path, variable: str | None) -> tuple[xr.Dataset, xr.DataArray, str]:
    ds = open_nc(path)
    if variable is None:
        variable = next((n for n in _TWS_NAMES if n in ds.data_vars), None)
        if variable is None:
            cands = [n for n, v in ds.data_vars.items() if v.ndim == 3]
            if len(cands) != 1:
                raise input_error(
                    path,
                    None,
                    f"one TWS variable (one of {list(_TWS_NAMES)})",
                    f"{len(cands)} 3-D candidates",
                    available=list(ds.data_vars),
                )
            variable = cands[0]
    if variable not in ds.data_vars:
        raise missing_variable(path, variable, list(ds.data_vars))
    da = ds[variable]
    if "time" not in da.dims:
        raise input_error(path, variable, "a 'time' dimension", f"dims {da.dims}")
    probe_read(path, da, "time")
    months = floor_months(decode_time(ds["time"], path))
    check_monthly(months, path, variable)
    return ds, da.assign_coords(time=months), variable


def open_tws_field(
    path: str | os.PathLike, variable: str | None = None, *, product: str = "CF TWS field"
) -> xr.DataArray:
    """Any CF NetCDF TWS(A) field (time, lat, lon) → canonical TWSA in mm.

    The variable is ``variable`` or the first of ``twsa``, ``TWSA``, ``tws``, ``lwe_thickness``, …
    (or the only 3-D variable). Units mm, kg m⁻², cm or m are converted to mm; others raise.
    """
    _, da, name = _open_cf(path, variable)
    da = convert_units(da, path, TWS_UNITS, "mm", name)
    return _finish(da, path, product)


def open_grace_rec(
    path: str | os.PathLike, *, full: bool = False, variable: str = "rec_ensemble_mean"
) -> xr.DataArray:
    """GRACE-REC ensemble mean (deseasonalised), or with ``full`` plus ``rec_seasonal_cycle``."""
    ds, da, name = _open_cf(path, variable)
    if "units" not in da.attrs:
        LOGGER.info("%s: %s has no units attribute; assuming mm (GRACE-REC convention)", path, name)
        da.attrs["units"] = "mm"
    da = convert_units(da, path, TWS_UNITS, "mm", name)
    if full:
        if "rec_seasonal_cycle" not in ds.data_vars:
            raise missing_variable(path, "rec_seasonal_cycle", list(ds.data_vars))
        sc = ds["rec_seasonal_cycle"].assign_coords(time=da["time"])
        if "units" not in sc.attrs:
            sc.attrs["units"] = "mm"
        sc = convert_units(sc, path, TWS_UNITS, "mm", "rec_seasonal_cycle")
        attrs = dict(da.attrs)
        da = da + sc
        da.attrs = attrs
    return _finish(da, path, "GRACE-REC" + (" (full signal)" if full else " (deseasonalised)"))
