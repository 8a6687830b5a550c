"""CF-1.8 NetCDF4 (zlib) TWSA product files with a Zarr copy, written atomically.

Layout: ``twsa(time, lat, lon)`` float32 in mm (NaN = ocean / no value), ``lat``/``lon`` ascending
with ``lat_bnds``/``lon_bnds`` (lon −180..180), ``time`` at mid-month (``days since 1940-01-01``,
standard calendar) with ``time_bnds`` = [month start, next month start), ``land_mask``,
``cell_area`` (m²) and a ``crs`` grid mapping (spherical Earth of :data:`gtws_dl.grid.EARTH_RADIUS_M`).

Standard name: the CF table (v93, checked against compliance-checker's copy) has **no**
``lwe_thickness``; terrestrial water storage is ``land_water_amount`` with canonical units
``kg m-2``. With the default ``units="mm"`` the variable carries no ``standard_name`` (a
``long_name`` and ``comment`` explain it); ``units="kg m-2"`` writes the same numbers
(1 mm = 1 kg m⁻² of water) with ``standard_name = land_water_amount``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl import __version__
from gtws_dl.diskspace import disk_full_is_an_error
from gtws_dl.grid import EARTH_RADIUS_M, Grid
from gtws_dl.lock import remove_stale_temps, remove_tree
from gtws_dl.post.manifest import check_product, set_aside

LOGGER = logging.getLogger(__name__)
TIME_UNITS = "days since 1940-01-01"
REFERENCES = (
    "Yin, J. et al. (2023) GTWS-MLrec: global terrestrial water storage reconstruction by machine learning "
    "from 1940 to present, Earth Syst. Sci. Data 15, 5597-5615, doi:10.5194/essd-15-5597-2023; "
    "Humphrey, V. and Gudmundsson, L. (2019) GRACE-REC: a reconstruction of climate-driven water storage "
    "changes over the last century, Earth Syst. Sci. Data 11, 1153-1170, doi:10.5194/essd-11-1153-2019"
)


def month_bounds(times) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Month start, mid-month and next-month start (datetime64[ns], shape (time,)) of monthly stamps."""
    per = pd.DatetimeIndex(np.asarray(times).ravel()).to_period("M")
    start = per.to_timestamp().to_numpy("datetime64[ns]")
    end = (per + 1).to_timestamp().to_numpy("datetime64[ns]")
    return start, start + (end - start) / 2, end


def _attr_value(v: object) -> str | int | float:
    if isinstance(v, (str, int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
        return ", ".join(v)
    try:
        return json.dumps(v, default=str, sort_keys=True)
    except TypeError:
        return str(v)


def _as_array(x):
    """(time, lat, lon) values of a DataArray or array: dask-backed inputs stay lazy, others become float32."""
    data = x.transpose("time", ...).data if isinstance(x, xr.DataArray) else x
    return data.astype(np.float32) if is_dask(data) else np.asarray(data, np.float32)


def _mask(data, land: np.ndarray):
    """``data`` with NaN outside ``land`` (float32), lazily for a dask array."""
    if is_dask(data):
        import dask.array as dsa

        return dsa.where(land[None], data, np.nan).astype(np.float32)
    return np.where(land[None], data, np.nan).astype(np.float32)


def is_dask(x) -> bool:
    import dask

    return dask.is_dask_collection(x)


def build_product(
    twsa: np.ndarray | xr.DataArray,
    *,
    grid: Grid,
    times,
    land_mask: np.ndarray,
    cell_area: np.ndarray,
    attrs: Mapping[str, object],
    twsa_std: np.ndarray | xr.DataArray | None = None,
    units: Literal["mm", "kg m-2"] = "mm",
    preliminary: np.ndarray | None = None,
    extra: Mapping[str, tuple] | None = None,
) -> xr.Dataset:
    """The product as an in-memory Dataset with CF attributes (see :func:`write_twsa_product`)."""
    if units not in ("mm", "kg m-2"):
        raise ValueError(f"units must be 'mm' or 'kg m-2', got {units!r}")
    data = _as_array(twsa)  # numpy, or a dask array computed band by band when written
    nt = len(np.asarray(times).ravel())
    if data.shape != (nt,) + grid.shape:
        raise ValueError(f"twsa has shape {data.shape}, expected (time, nlat, nlon) = {(nt,) + grid.shape}")
    land = np.asarray(land_mask).astype(bool)
    area = np.asarray(cell_area, float)
    for what, a in (("land_mask", land), ("cell_area", area)):
        if a.shape != grid.shape:
            raise ValueError(f"{what} has shape {a.shape}, expected the grid shape {grid.shape}")
    start, mid, end = month_bounds(times)
    data = _mask(data, land)
    cf = {"standard_name": "land_water_amount"} if units == "kg m-2" else {}
    var_attrs = {
        **cf,
        "long_name": "terrestrial water storage anomaly (liquid water equivalent thickness)",
        "units": units,
        "cell_methods": "time: mean",
        "cell_measures": "area: cell_area",
        "grid_mapping": "crs",
        "comment": "1 mm of liquid water equivalent = 1 kg m-2; anomaly relative to the baseline in the "
        "global attribute anomaly_baseline (if given); NaN over ocean",
    }
    ds = xr.Dataset(
        {
            "twsa": (("time", "lat", "lon"), data, var_attrs),
            "time_bnds": (("time", "nv"), np.stack([start, end], axis=1)),
            "lat_bnds": (("lat", "nv"), grid.lat_bounds, {"units": "degrees_north"}),
            "lon_bnds": (("lon", "nv"), grid.lon_bounds, {"units": "degrees_east"}),
            "land_mask": (
                ("lat", "lon"),
                land.astype(np.int8),
                {
                    "standard_name": "land_binary_mask",
                    "long_name": "land mask (land fraction >= 0.5)",
                    "units": "1",
                    "flag_values": np.array([0, 1], np.int8),
                    "flag_meanings": "water land",
                    "grid_mapping": "crs",
                },
            ),
            "cell_area": (
                ("lat", "lon"),
                area,
                {
                    "standard_name": "cell_area",
                    "long_name": "area of the grid cell on a sphere",
                    "units": "m2",
                    "grid_mapping": "crs",
                },
            ),
            "crs": (
                (),
                np.int32(0),
                {
                    "grid_mapping_name": "latitude_longitude",
                    "earth_radius": EARTH_RADIUS_M,
                    "long_name": "spherical Earth used for the cell areas",
                },
            ),
        },  # fmt: skip
        coords={
            "time": (
                "time",
                mid,
                {
                    "standard_name": "time",
                    "long_name": "time (mid-month)",
                    "axis": "T",
                    "bounds": "time_bnds",
                },
            ),
            "lat": (
                "lat",
                grid.lat,
                {
                    "standard_name": "latitude",
                    "long_name": "latitude",
                    "units": "degrees_north",
                    "axis": "Y",
                    "bounds": "lat_bnds",
                },
            ),
            "lon": (
                "lon",
                grid.lon,
                {
                    "standard_name": "longitude",
                    "long_name": "longitude",
                    "units": "degrees_east",
                    "axis": "X",
                    "bounds": "lon_bnds",
                },
            ),
        },  # fmt: skip
    )
    if twsa_std is not None:
        std = _as_array(twsa_std)
        if std.shape != data.shape:
            raise ValueError(f"twsa_std has shape {std.shape}, expected the shape of twsa {data.shape}")
        std_attrs = {"long_name": "uncertainty (standard deviation) of the terrestrial water storage anomaly",
                     "units": units, "cell_methods": "time: mean", "cell_measures": "area: cell_area",
                     "grid_mapping": "crs"}  # fmt: skip
        if units == "kg m-2":
            std_attrs["standard_name"] = "land_water_amount standard_error"
        ds["twsa_std"] = (
            ("time", "lat", "lon"),
            _mask(std, land),
            std_attrs,
        )
    ancillary = ["twsa_std"] if twsa_std is not None else []
    if preliminary is not None:
        flags = np.asarray(preliminary, dtype=np.int8).ravel()
        if flags.shape != (nt,):
            raise ValueError(f"preliminary has shape {flags.shape}, expected (time,) = ({nt},)")
        ds["preliminary"] = ("time", flags, {
            "long_name": "month driven by preliminary forcing (ERA5T)",
            "flag_values": np.array([0, 1], np.int8),
            "flag_meanings": "final_era5 preliminary_era5t",
            "comment": "1: the month's forcing is ERA5T, replaced by final ERA5 about 2-3 months later; "
                       "`gtws-dl update` then recomputes the month and clears its flag"})
        ancillary.append("preliminary")
    if ancillary:
        ds["twsa"].attrs["ancillary_variables"] = " ".join(ancillary)
    for name, (dims, values, var_attrs) in (extra or {}).items():
        if name in ds.variables:
            raise ValueError(f"extra variable {name!r} would replace the product's own")
        ds[name] = (dims, values, dict(var_attrs))
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    glob: dict[str, object] = {
        "title": "gtws-dl reconstruction of monthly terrestrial water storage anomalies",
        "institution": "gtws-dl",
        "source": f"gtws-dl {__version__} deep-learning reconstruction from reanalysis and vegetation predictors",
        "history": f"{now} created by gtws_dl.post.products.write_twsa_product (gtws-dl {__version__})",
        "references": REFERENCES,
        "license": "CC-BY-4.0",
        "date_created": now,
        "geospatial_lat_min": float(grid.bounds[2]), "geospatial_lat_max": float(grid.bounds[3]),
        "geospatial_lon_min": float(grid.bounds[0]), "geospatial_lon_max": float(grid.bounds[1]),
    }  # fmt: skip
    glob.update({k: _attr_value(v) for k, v in attrs.items() if v is not None})
    glob["Conventions"] = "CF-1.8"
    ds.attrs = {k: _attr_value(v) for k, v in glob.items()}
    return ds


def _encoding(ds: xr.Dataset, *, netcdf: bool) -> dict[str, dict]:
    enc: dict[str, dict] = {}
    time_enc = {"units": TIME_UNITS, "calendar": "standard", "dtype": "float64"}
    for name in ds.variables:
        enc[name] = {"_FillValue": None}
    enc["time"].update(time_enc)
    enc["time_bnds"].update(time_enc)
    own = {"twsa", "twsa_std", "cell_area", "lat_bnds", "lon_bnds", "time_bnds"}
    for name in (n for n in ds.data_vars if n not in own and np.issubdtype(ds[n].dtype, np.floating)):
        enc[name]["_FillValue"] = ds[name].dtype.type(np.nan)  # extra fields (fits): NaN over ocean, declared
    nlat, nlon = ds.sizes["lat"], ds.sizes["lon"]
    for name in ("twsa", "twsa_std"):
        if name in ds:
            # computed in latitude bands (dask): chunks of one band, so each band writes whole chunks
            rows = int(ds[name].data.chunks[1][0]) if is_dask(ds[name].data) else nlat
            e: dict[str, object] = {"_FillValue": np.float32(np.nan), "dtype": "float32"}
            if netcdf:
                e.update(zlib=True, complevel=4, shuffle=True, chunksizes=(1, rows, nlon))
            else:
                e["chunks"] = (min(12, ds.sizes["time"]), rows, nlon)
            enc[name] = e
    return enc


def write_twsa_product(
    path: str | Path,
    twsa: np.ndarray | xr.DataArray,
    *,
    grid: Grid,
    times,
    land_mask: np.ndarray,
    cell_area: np.ndarray,
    attrs: Mapping[str, object],
    twsa_std: np.ndarray | xr.DataArray | None = None,
    zarr_copy: bool = True,
    units: Literal["mm", "kg m-2"] = "mm",
    preliminary: np.ndarray | None = None,
    extra: Mapping[str, tuple] | None = None,
) -> Path:
    """Write a CF-1.8 NetCDF4 TWSA product (and ``<path minus .nc>.zarr``), atomically.

    Parameters
    ----------
    path : output ``.nc`` file.
    twsa : (time, nlat, nlon) TWSA in mm; cells outside ``land_mask`` are written as NaN.
    grid : the product grid.
    times : (time,) monthly stamps (any day in the month; month start canonical).
    land_mask : bool (nlat, nlon).  cell_area : (nlat, nlon) m².
    attrs : global attributes added (and overriding the defaults): code version, config,
        training period, target centre, anomaly baseline, predictors ... Non-scalar values are JSON.
    twsa_std : optional (time, nlat, nlon) uncertainty in mm, written as ``twsa_std``.
    zarr_copy : also write the Zarr store (format 3, not consolidated).
    units : ``"mm"`` (default, no standard_name) or ``"kg m-2"`` (standard_name land_water_amount).
    preliminary : optional (time,) 0/1 flags of months driven by preliminary (ERA5T) forcing, written as the
        CF flag variable ``preliminary``.
    extra : more variables ``{name: (dims, values, attrs)}`` (e.g. the fit a detrended product removed); values
        may be dask arrays (computed as written).

    Returns
    -------
    Path of the NetCDF file.
    """
    path = Path(path)
    ds = build_product(twsa, grid=grid, times=times, land_mask=land_mask, cell_area=cell_area, attrs=attrs,
                       twsa_std=twsa_std, units=units, preliminary=preliminary, extra=extra)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(path.parent, path.name)
    _clean_stale(path.parent, zarr_path(path).name)
    set_aside(path.parent)  # the folder's manifest no longer vouches for it until the publication ends
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with disk_full_is_an_error(path, what="product", config_key="paths.products_dir"):
        try:
            # time unlimited: a monthly update appends in place of a rewrite (gtws_dl.post.append)
            ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=_encoding(ds, netcdf=True),
                         unlimited_dims=["time"])
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        LOGGER.info("wrote %s", path)
        if zarr_copy:
            _write_zarr_atomic(ds, zarr_path(path))
    return path


def zarr_path(nc_path: str | Path) -> Path:
    """``x.nc`` -> ``x.zarr`` (same directory)."""
    p = Path(nc_path)
    return p.with_suffix(".zarr") if p.suffix == ".nc" else p.with_name(p.name + ".zarr")


def _write_zarr_atomic(ds: xr.Dataset, target: Path) -> None:
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        ds.to_zarr(tmp, mode="w", consolidated=False, encoding=_encoding(ds, netcdf=False))
        if target.exists():  # a directory cannot be os.replace'd over a non-empty one
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        remove_tree(tmp)  # after a failure zarr may still be writing chunks into it
        shutil.rmtree(old, ignore_errors=True)
    LOGGER.info("wrote %s", target)


def _clean_stale(directory: Path, name: str) -> None:
    """Remove ``<name>.tmp-<pid>``/``.old-<pid>`` left by a killed writer (its pid no longer runs)."""
    remove_stale_temps(directory, prefix=f"{name}.")



def read_product(path: str | Path, *, verify: bool | None = None, **kwargs) -> xr.Dataset:
    """Open a product (``.nc`` file or ``.zarr`` store) with xarray (lazy), checked against its folder's manifest.

    verify : None (default) checks size and sha256 against ``manifest.json`` when the folder has one; True also
        refuses a folder without a manifest (an unfinished publication); False skips the check (used while
        publishing, before the manifest is written).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"product {path} does not exist")
    if verify is not False:
        check_product(path, require=bool(verify))
    if path.is_dir() or path.suffix == ".zarr":
        return xr.open_zarr(path, consolidated=False, **kwargs)
    return xr.open_dataset(path, engine="netcdf4", **kwargs)
