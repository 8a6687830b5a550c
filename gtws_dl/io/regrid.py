"""Canonical lat/lon layout and first-order conservative regridding between rectilinear grids.

Canonical layout (all readers): dims named ``lat``/``lon``, ``lat`` ascending, ``lon`` in
[-180, 180) ascending (0..360 inputs are rolled, not interpolated).

Conservative remapping
----------------------
For rectilinear grids the overlap area of source cell (j, k) with target cell (i, l) factorises::

    A = R² · [overlap in sin(latitude)]_ij · [overlap in longitude, radians]_kl

so the remapping is two small dense matrices ``Wlat`` (n_tgt_lat × n_src_lat) and ``Wlon``
(n_tgt_lon × n_src_lon), applied as ``Wlat @ x @ Wlon.T`` to every 2-D slab. NaN-aware::

    y = (Wlat @ (x·v) @ Wlon.T) / (Wlat @ v @ Wlon.T),   v = isfinite(x)

and a target cell whose valid covered fraction ``(Wlat @ v @ Wlon.T) / area_target`` is below
``min_valid`` (default 0.5) is NaN. Consequences:

* coarsening (e.g. 0.25° → 2°) conserves the area integral exactly (up to float rounding) when
  the target is fully covered by valid data;
* refining gives a piecewise-constant field (each fine cell takes the value of the coarse cell
  it lies in, or an area-weighted mix where it straddles several) — no new extrema, conservative;
* a constant field stays constant.

Source cell bounds are inferred from the coordinate spacing (midpoints between centres; the end
cells extend by half a spacing) and clipped to ±90°, so node-registered grids such as ERA5
(nodes at ±90) get half-width polar cells. A source that spans the full circle in longitude
wraps around; overlaps are computed with ±360° shifts.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from gtws_dl.grid import Grid

LOGGER = logging.getLogger(__name__)

XrObj = TypeVar("XrObj", xr.DataArray, xr.Dataset)

LAT_NAMES = ("lat", "latitude", "y", "nav_lat")
LON_NAMES = ("lon", "longitude", "x", "nav_lon")


# --------------------------------------------------------------------------- canonical layout
def _find_name(obj: xr.DataArray | xr.Dataset, candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if name in obj.dims:
            return name
    return None


def to_canonical(obj: XrObj) -> XrObj:
    """Rename lat/lon dims, flip latitude to ascending, roll longitude to [-180, 180) ascending.

    Parameters
    ----------
    obj : DataArray or Dataset
        With a latitude dim named one of ``lat``, ``latitude`` and a longitude dim named
        ``lon``/``longitude`` (the renaming of ``x``/``y`` is left to readers that know them).

    Returns
    -------
    Same type, dims ``lat``/``lon`` with float64 coordinate values; data reordered, not
    interpolated. Duplicate longitudes after wrapping (e.g. both 0 and 360) keep the first.
    """
    ren = {}
    for canon, cands in (("lat", ("latitude",)), ("lon", ("longitude",))):
        for c in cands:
            if c in obj.dims and canon not in obj.dims:
                ren[c] = canon
    if ren:
        obj = obj.rename(ren)
    if "lat" in obj.dims:
        lat = np.asarray(obj["lat"].values, dtype=np.float64)
        if lat.size > 1 and not np.all(np.diff(lat) > 0):
            obj = obj.isel(lat=np.argsort(lat, kind="stable"))
        obj = obj.assign_coords(lat=np.asarray(obj["lat"].values, dtype=np.float64))
    if "lon" in obj.dims:
        lon = np.asarray(obj["lon"].values, dtype=np.float64)
        wrapped = ((lon + 180.0) % 360.0) - 180.0
        # 180 maps to -180 so that the result is in [-180, 180)
        order = np.argsort(wrapped, kind="stable")
        obj = obj.isel(lon=order).assign_coords(lon=wrapped[order])
        _, first = np.unique(obj["lon"].values, return_index=True)
        if first.size != obj.sizes["lon"]:
            LOGGER.warning(
                "dropping %d duplicate longitudes after wrapping to -180..180", obj.sizes["lon"] - first.size
            )
            obj = obj.isel(lon=np.sort(first))
    for name, attrs in (
        ("lat", {"units": "degrees_north", "standard_name": "latitude"}),
        ("lon", {"units": "degrees_east", "standard_name": "longitude"}),
    ):
        if name in obj.coords:
            obj[name].attrs = attrs
    return obj


# --------------------------------------------------------------------------- bounds and weights
def infer_bounds(centres: np.ndarray, *, clip: tuple[float, float] | None = None) -> np.ndarray:
    """Cell edges (n, 2) from centres: midpoints inside, half a spacing beyond the ends.

    ``clip=(-90, 90)`` for latitude: node-registered grids then get half-width polar cells.
    """
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        raise ValueError("cannot infer cell bounds from a single coordinate value")
    mid = 0.5 * (c[1:] + c[:-1])
    edges = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    if clip is not None:
        edges = np.clip(edges, *clip)
    return np.stack([edges[:-1], edges[1:]], axis=-1)


def lat_weights(src_bounds: np.ndarray, tgt_bounds: np.ndarray) -> np.ndarray:
    """Overlap of target (rows) and source (columns) latitude bands in sin(latitude), (n_tgt, n_src)."""
    s = np.sin(np.deg2rad(np.sort(src_bounds, axis=1)))
    t = np.sin(np.deg2rad(np.sort(tgt_bounds, axis=1)))
    lo = np.maximum(t[:, None, 0], s[None, :, 0])
    hi = np.minimum(t[:, None, 1], s[None, :, 1])
    return np.clip(hi - lo, 0.0, None)


def lon_weights(src_bounds: np.ndarray, tgt_bounds: np.ndarray, *, periodic: bool) -> np.ndarray:
    """Overlap of target (rows) and source (columns) longitude cells in degrees, (n_tgt, n_src).

    With ``periodic`` the source is also tried shifted by ±360° (wrap-around).
    """
    s = np.sort(src_bounds, axis=1)
    t = np.sort(tgt_bounds, axis=1)
    shifts = (-360.0, 0.0, 360.0) if periodic else (0.0,)
    w = np.zeros((t.shape[0], s.shape[0]))
    for sh in shifts:
        lo = np.maximum(t[:, None, 0], s[None, :, 0] + sh)
        hi = np.minimum(t[:, None, 1], s[None, :, 1] + sh)
        w += np.clip(hi - lo, 0.0, None)
    return w


def _source_bounds(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    latb = infer_bounds(lat, clip=(-90.0, 90.0))
    lonb = infer_bounds(lon)
    span = lonb[-1, 1] - lonb[0, 0]
    periodic = bool(abs(span - 360.0) < 1e-6 * 360 or span > 360.0)
    if periodic and span > 360.0 + 1e-9:
        raise ValueError(f"source longitudes span {span} deg > 360 (duplicate columns?)")
    return latb, lonb, periodic


def _target_description(grid: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lat, lon, lat_bounds, lon_bounds) of a Grid or an xarray object with lat/lon coords."""
    if isinstance(grid, Grid):
        return grid.lat, grid.lon, grid.lat_bounds, grid.lon_bounds
    if isinstance(grid, xr.DataArray | xr.Dataset):
        g = to_canonical(grid)
        lat = np.asarray(g["lat"].values, dtype=np.float64)
        lon = np.asarray(g["lon"].values, dtype=np.float64)
        return lat, lon, infer_bounds(lat, clip=(-90.0, 90.0)), infer_bounds(lon)
    raise TypeError(f"grid must be a gtws_dl.grid.Grid or an xarray object with lat/lon, got {type(grid)}")


def _remap(x: np.ndarray, wlat: np.ndarray, wlon: np.ndarray) -> np.ndarray:
    """``wlat @ x @ wlon.T`` over the last two axes, as two large GEMMs (x: (..., ny, nx))."""
    lead, (ny, nx) = x.shape[:-2], x.shape[-2:]
    n = int(np.prod(lead, dtype=np.int64))
    y = (x.reshape(n * ny, nx) @ wlon.T).reshape(n, ny, -1)  # lon first: (n, ny, mx)
    mx = y.shape[-1]
    y = wlat @ y.transpose(1, 0, 2).reshape(ny, n * mx)  # lat: (my, n * mx)
    return y.reshape(-1, n, mx).transpose(1, 0, 2).reshape(*lead, -1, mx)


def _apply(
    x: np.ndarray, wlat: np.ndarray, wlon: np.ndarray, tgt_area: np.ndarray, min_valid: float
) -> np.ndarray:
    """Remap the last two axes (lat, lon) of ``x``; leading axes are batched."""
    out_dtype = np.result_type(x.dtype, np.float32)
    xf = np.asarray(x, dtype=np.float64)
    valid = np.isfinite(xf)
    if valid.all():  # common case: the valid-area denominator is the same for every field
        num = _remap(xf, wlat, wlon)
        den = np.broadcast_to(_remap(np.ones(x.shape[-2:]), wlat, wlon), num.shape)
    else:
        num = _remap(np.where(valid, xf, 0.0), wlat, wlon)
        den = _remap(valid.astype(np.float64), wlat, wlon)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = num / den
        frac = den / tgt_area
    y[~(frac >= min_valid - 1e-12)] = np.nan
    y[den <= 0] = np.nan
    return y.astype(out_dtype)


def regridder_weights(
    src_lat: np.ndarray, src_lon: np.ndarray, grid: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Wlat, Wlon, target_area) for remapping a canonical source grid onto ``grid``.

    ``target_area`` is in the same (sin-lat × degree) metric as the weights, shape (nlat, nlon).
    """
    latb, lonb, periodic = _source_bounds(src_lat, src_lon)
    _, _, tlatb, tlonb = _target_description(grid)
    wlat = lat_weights(latb, tlatb)
    wlon = lon_weights(lonb, tlonb, periodic=periodic)
    tband = np.abs(np.sin(np.deg2rad(tlatb[:, 1])) - np.sin(np.deg2rad(tlatb[:, 0])))
    twidth = np.abs(tlonb[:, 1] - tlonb[:, 0])
    return wlat, wlon, np.outer(tband, twidth)


def _regrid_da(da: xr.DataArray, wlat, wlon, tarea, tlat, tlon, min_valid: float) -> xr.DataArray:
    other = [d for d in da.dims if d not in ("lat", "lon")]
    da = da.transpose(*other, "lat", "lon")
    if da.chunks is not None:
        da = da.chunk({"lat": -1, "lon": -1})
    out = xr.apply_ufunc(
        _apply,
        da,
        input_core_dims=[["lat", "lon"]],
        output_core_dims=[["lat", "lon"]],
        exclude_dims={"lat", "lon"},
        kwargs={"wlat": wlat, "wlon": wlon, "tgt_area": tarea, "min_valid": min_valid},
        dask="parallelized",
        output_dtypes=[np.result_type(da.dtype, np.float32)],
        dask_gufunc_kwargs={"output_sizes": {"lat": tlat.size, "lon": tlon.size}},
        keep_attrs=True,
    )
    return out.assign_coords(lat=tlat, lon=tlon)


def regrid_conservative(obj: XrObj, grid: Any, *, min_valid: float = 0.5) -> XrObj:
    """First-order conservative, NaN-aware remapping onto ``grid``.

    Parameters
    ----------
    obj : DataArray or Dataset
        Fields with dims ``lat``/``lon`` (or ``latitude``/``longitude``), any order of latitude,
        longitude in 0..360 or -180..180; other dims (time, channel, …) are kept. Dask-backed
        arrays chunked along non-spatial dims stay lazy (one block per time slab).
    grid : Grid or xarray object
        Target grid (cell centres; an xarray object's bounds are inferred like the source's).
    min_valid : float
        Minimum fraction (0..1) of a target cell's area that must be covered by valid (finite)
        source data; below it the target is NaN.

    Returns
    -------
    Same type on the target grid (lat ascending, lon -180..180), float32 for float32 input.
    Data variables without both lat and lon are passed through unchanged.
    """
    if not 0.0 <= min_valid <= 1.0:
        raise ValueError(f"min_valid must be in [0, 1], got {min_valid}")
    src = to_canonical(obj)
    if "lat" not in src.dims or "lon" not in src.dims:
        raise ValueError(f"regrid_conservative needs lat and lon dims, got {tuple(src.dims)}")
    tlat, tlon, _, _ = _target_description(grid)
    wlat, wlon, tarea = regridder_weights(src["lat"].values, src["lon"].values, grid)
    if isinstance(src, xr.DataArray):
        return _regrid_da(src, wlat, wlon, tarea, tlat, tlon, min_valid)
    out = {}
    for name, da in src.data_vars.items():
        if "lat" in da.dims and "lon" in da.dims:
            out[name] = _regrid_da(da, wlat, wlon, tarea, tlat, tlon, min_valid)
        else:
            out[name] = da
    keep = {k: v for k, v in src.coords.items() if "lat" not in v.dims and "lon" not in v.dims}
    ds = xr.Dataset(out, coords=keep, attrs=src.attrs)
    return ds.assign_coords(lat=tlat, lon=tlon)
