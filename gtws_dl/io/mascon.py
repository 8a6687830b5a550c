"""GRACE/GRACE-FO mascon grids (JPL RL06.x CRI, CSR RL06.x, GSFC RL06 v2) → monthly TWSA in mm.

Month assignment
----------------
Each solution has a mid-span stamp (``days since 2002-01-01T00:00:00Z``) and usually
``time_bounds`` (its span). A solution is assigned to the calendar month that holds most days
of its span (ties: the month holding the mid-span stamp); without bounds, to the month holding
the stamp. If several solutions land in one month the reader keeps, deterministically,

1. the one whose span lies most inside that month (largest fraction of its span in the month);
2. among exact ties (e.g. the same solution twice) their mean;

and logs a warning naming the months and stamps. Months without a solution stay absent —
never interpolated.

Re-referencing
--------------
``baseline=("2004-01", "2009-12")`` subtracts, per cell, the mean over the months present in
that window (the products' own baseline is 2004.000–2009.999, but after CRI/land masking or a
different month selection the mean is not exactly zero, and the GTWS-MLrec-style targets are
anomalies against exactly this window). ``baseline=None`` keeps the file's reference.

Size: one reader of one product family — identity (which centre), month assignment and resolution, the
whole-file value checks streamed in time blocks, and reads by latitude band (``lat=``, memory one band) share the
file's layout handling, so they stay together.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.conventions import BASELINE, CENTRES
from gtws_dl.io._common import convert_units, covered, decode_time, open_nc, probe_read, squeeze_singletons
from gtws_dl.io.errors import input_error, missing_variable
from gtws_dl.io.plausibility import Policy, check_array
from gtws_dl.io.regrid import to_canonical

LOGGER = logging.getLogger(__name__)

DUPLICATE_ATOL_MM = 1e-3  # two copies of a month's solution must agree to this (float32 of cm values)
#: Below this fraction of the baseline window's months a file's re-reference is logged as partial (real releases
#: miss a few months of 2004-2009); the cube builder refuses centres whose baseline months differ this much.
BASELINE_MIN_FRACTION = 0.75
CHECK_BLOCK = 12  # solutions read at once by the whole-file value checks

_LWE_UNITS = {
    "cm": (10.0, 0.0),
    "centimeters": (10.0, 0.0),
    "centimetres": (10.0, 0.0),
    "mm": (1.0, 0.0),
    "millimeters": (1.0, 0.0),
    "m": (1000.0, 0.0),
    "meters": (1000.0, 0.0),
    "kg m-2": (1.0, 0.0),
    "kg/m2": (1.0, 0.0),
}


# ------------------------------------------------------------------------------------------- identity
# Which centre a file says it is from: markers in its global attributes and the real products' file names.
_CENTRE_MARKERS = {
    "jpl": r"(?<![A-Za-z])JPL(?![A-Za-z])|Jet\s+Propulsion\s+Laboratory",
    "csr": r"(?<![A-Za-z])(UT)?CSR(?![A-Za-z])|Center\s+for\s+Space\s+Research",
    "gsfc": r"(?<![A-Za-z])GSFC(?![A-Za-z])|Goddard",
    "gfz": r"(?<![A-Za-z])GFZ(?![A-Za-z])|GeoForschungsZentrum|German\s+Research\s+Centre\s+for\s+Geosciences",
    "itsg": r"(?<![A-Za-z])ITSG(?![A-Za-z])|Graz\s+University",
}
_IDENTITY_ATTRS = ("title", "institution", "creator_institution", "source", "product_version", "product_name")
_FILE_NAMES = {  # the real products' file-name conventions
    "jpl": r"^GRCTellus\.JPL\.",  # GRCTellus.JPL.200204_202412.GLO.RL06.3M.MSCNv04CRI.nc
    "csr": r"^(CSR_GRACE|GRCTellus\.CSR\.)",  # CSR_GRACE_GRACE-FO_RL0603_Mascons_all-corrections.nc
    "gsfc": r"^gsfc\.glb",  # gsfc.glb_.200204_202412_rl06v2.0_obp-ice6gd_halfdegree.nc
    "gfz": r"^GRCTellus\.GFZ\.",
}
_LABEL = {"jpl": "JPL", "csr": "CSR", "gsfc": "GSFC", "gfz": "GFZ", "itsg": "ITSG"}


def centres_named(text: str) -> set[str]:
    """Centres (``jpl``, ``csr``, ``gsfc``, ``gfz``, ``itsg``) a metadata string names."""
    return {c for c, rx in _CENTRE_MARKERS.items() if re.search(rx, text, flags=re.IGNORECASE)}


def centre_of_name(name: str) -> str | None:
    """The centre whose product file-name convention ``name`` (a base name) follows, else None."""
    return next((c for c, rx in _FILE_NAMES.items() if re.search(rx, name, flags=re.IGNORECASE)), None)


def check_centre(ds: xr.Dataset, path, centre: str) -> None:
    """Refuse a mascon file whose own metadata (or file name) says it is another centre's product.

    The global attributes ``title``, ``institution``, ``creator_institution``, ``source``,
    ``product_version``, ``product_name`` are searched for centre names; when they name ``centre`` the
    file is accepted, when they name only other centres it is refused. Without a centre in the
    metadata the file name decides (the real products' conventions); a file that names no centre at
    all is accepted with a warning (files from other sources exist).
    """
    attrs = {k: str(ds.attrs[k]) for k in _IDENTITY_ATTRS if k in ds.attrs}
    named: dict[str, set[str]] = {k: centres_named(v) for k, v in attrs.items()}
    meta = set().union(*named.values()) if named else set()
    by_name = centre_of_name(Path(path).name) or centre_of_name(Path(str(ds.attrs.get("filename", ""))).name)
    key = f"data.grace.{centre}"
    shown = ", ".join(f"{k}={v[:80]!r}" for k, v in attrs.items() if named[k]) or "no centre in its attributes"
    if meta and centre not in meta:
        others = sorted(meta)
        fix = (f"; give it as data.grace.{others[0]} instead" if len(others) == 1 and others[0] in CENTRES else "")
        raise input_error(
            path,
            None,
            f"the {_LABEL[centre]} mascon product (given as {key})",
            f"a {'/'.join(_LABEL[c] for c in others)} file according to its metadata ({shown})",
            hint=f"point {key} at the {_LABEL[centre]} file{fix}",
        )
    if not meta and by_name is not None and by_name != centre:
        fix = f"; give it as data.grace.{by_name} instead" if by_name in CENTRES else ""
        raise input_error(
            path,
            None,
            f"the {_LABEL[centre]} mascon product (given as {key})",
            f"a {_LABEL[by_name]} file according to its name ({Path(path).name}; its attributes name no centre)",
            hint=f"point {key} at the {_LABEL[centre]} file{fix}",
        )
    if meta and by_name is not None and by_name != centre:
        LOGGER.warning("%s: its metadata names %s (%s) but its name follows the %s convention; read as %s",
                       path, _LABEL[centre], shown, _LABEL[by_name], _LABEL[centre])
    if not meta and by_name is None:
        LOGGER.warning("%s: neither its metadata nor its file name names a GRACE centre; read as %s (%s) as "
                       "given — check that it is the %s product", path, _LABEL[centre], key, _LABEL[centre])


def _canonical_field(ds: xr.Dataset, name: str, path) -> xr.DataArray:
    """Variable ``name`` with dims renamed/canonicalised (lat ascending, lon −180..180)."""
    da = ds[name]
    ren = {d: c for d, c in (("latitude", "lat"), ("longitude", "lon")) if d in da.dims}
    da = da.rename(ren)
    if "lat" not in da.dims or "lon" not in da.dims:
        raise input_error(path, name, "dims lat and lon", f"dims {da.dims}")
    return to_canonical(da)


def _bounds(ds: xr.Dataset, tname: str, path) -> pd.DatetimeIndex | None:
    bname = ds[tname].attrs.get("bounds")
    for cand in (bname, "time_bounds", "time_bnds"):
        if cand and cand in ds.variables:
            b = ds[cand]
            if b.ndim != 2 or tname not in b.dims:
                raise input_error(path, cand, f"shape ({tname}, 2)", f"dims {b.dims}")
            b = b.transpose(tname, ...)
            units_src = b if "units" in b.attrs else ds[tname]
            flat = xr.DataArray(np.asarray(b.values).ravel(), attrs=units_src.attrs)
            return decode_time(flat, path, what=cand)
    return None


def assign_months(
    mid: pd.DatetimeIndex, bounds: pd.DatetimeIndex | None
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Calendar month of each solution and the fraction of its span inside that month.

    Parameters
    ----------
    mid : DatetimeIndex (n,)
        Mid-span stamps.
    bounds : DatetimeIndex (2n,) or None
        Flattened ``(start, end)`` pairs.
    """
    months = pd.DatetimeIndex(mid).to_period("M").to_timestamp()
    frac = np.ones(len(mid))
    if bounds is None:
        return pd.DatetimeIndex(months).as_unit("ns"), frac
    b = np.asarray(pd.DatetimeIndex(bounds).as_unit("ns").asi8, dtype=np.int64).reshape(-1, 2)
    out = []
    for k in range(len(mid)):
        t0, t1 = pd.Timestamp(b[k, 0]), pd.Timestamp(b[k, 1])
        if t1 < t0:
            t0, t1 = t1, t0
        span = (t1 - t0).total_seconds()
        if span <= 0:
            out.append(months[k])
            continue
        best, best_ov = None, -1.0
        for m in pd.period_range(t0, t1, freq="M"):
            ms, me = m.to_timestamp(), (m + 1).to_timestamp()
            ov = (min(t1, me) - max(t0, ms)).total_seconds()
            tie_break = ms == months[k]  # prefer the month holding the stamp on a tie
            if ov > best_ov + 1e-6 or (abs(ov - best_ov) <= 1e-6 and tie_break):
                best, best_ov = ms, ov
        out.append(best)
        frac[k] = best_ov / span
    return pd.DatetimeIndex(out).as_unit("ns"), frac


def _resolve(
    da: xr.DataArray, months: pd.DatetimeIndex, frac: np.ndarray, mid: pd.DatetimeIndex, path, *, log: bool = True
) -> xr.DataArray:
    """One field per month (see module docstring); logs every resolution (``log``)."""
    groups: dict[pd.Timestamp, list[int]] = defaultdict(list)
    for k, m in enumerate(months):
        groups[m].append(k)
    fields, stamps = [], []
    for m in sorted(groups):
        idx = groups[m]
        if len(idx) == 1:
            fields.append(da.isel(time=idx[0], drop=True))
        else:
            best = max(frac[i] for i in idx)
            winners = [i for i in idx if abs(frac[i] - best) < 1e-9]
            if len(winners) == 1:
                fields.append(da.isel(time=winners[0], drop=True))
                how = f"kept the solution stamped {mid[winners[0]]:%Y-%m-%d} ({best:.0%} of its span)"
            else:
                copies = np.asarray(da.isel(time=winners).values, dtype=np.float64)
                differ = float(np.nanmax(np.abs(copies - copies[:1]), initial=0.0))
                if differ > DUPLICATE_ATOL_MM or (np.isnan(copies) != np.isnan(copies[:1])).any():
                    raise input_error(
                        path, "lwe_thickness", "one solution per month, or copies of it that agree",
                        f"{len(winners)} solutions for {m:%Y-%m} (stamps "
                        f"{', '.join(f'{mid[i]:%Y-%m-%d}' for i in winners)}) that differ by up to {differ:.4g} mm",
                        hint="the file holds two releases or an appended copy; keep one solution per month")
                fields.append(da.isel(time=winners[0], drop=True))
                how = f"kept one of the {len(winners)} identical, equally placed copies"
            (LOGGER.warning if log else LOGGER.debug)(
                "%s: %d solutions fall in %s (stamps %s); %s",
                path,
                len(idx),
                f"{m:%Y-%m}",
                ", ".join(f"{mid[i]:%Y-%m-%d}" for i in idx),
                how,
            )
        stamps.append(m)
    out = xr.concat(fields, dim="time", coords="minimal", compat="override")
    return out.assign_coords(time=pd.DatetimeIndex(stamps).as_unit("ns"))


def _check_constant_months(da: xr.DataArray, months: pd.DatetimeIndex, path) -> None:
    """Refuse a solution whose finite values are all equal (e.g. 0 where the month is missing): a placeholder, not
    a solution; after re-referencing it would pass for a real month of minus the baseline mean.

    ``da``: the variable as read (file layout, lazy), read in blocks of :data:`CHECK_BLOCK` solutions;
    ``months``: the month of each solution (:func:`assign_months`)."""
    axis = da.dims.index("time")
    n_t = da.sizes["time"]
    const, first = np.zeros(n_t, dtype=bool), {}
    for i0 in range(0, n_t, CHECK_BLOCK):
        v = np.moveaxis(np.asarray(da.isel(time=slice(i0, i0 + CHECK_BLOCK)).values), axis, 0)
        v = v.reshape(v.shape[0], -1)
        n = np.count_nonzero(~np.isnan(v), axis=1)
        lo, hi = np.fmin.reduce(v, axis=1), np.fmax.reduce(v, axis=1)  # fmin/fmax skip NaN
        c = (n > 1) & (lo == hi)
        const[i0:i0 + len(c)] = c
        first.update({i0 + k: float(lo[k]) for k in np.flatnonzero(c)})
    if const.any():
        times = sorted(set(pd.DatetimeIndex(months)[const]))
        raise input_error(
            path, "lwe_thickness", "a field of varying values in every month (missing months as NaN or absent)",
            f"{len(times)} month(s) of one value everywhere: {', '.join(f'{t:%Y-%m}' for t in times[:6])} "
            f"({first[min(first)]:g} {da.attrs.get('units', '')})",
            hint="a missing month must be NaN (or left out), not a constant; fix the file or drop those months")


def _aux_field(src: str | os.PathLike | xr.DataArray, var: str, ref: xr.DataArray, what: str, *,
               crop: bool = False) -> xr.DataArray:
    """Gain factors / land mask from a file path or DataArray, checked against the mascon grid ``ref``;
    ``crop``: ``ref`` is a latitude band of the file, the field is cut to its rows first."""
    if isinstance(src, xr.DataArray):
        da, path = to_canonical(src), "<DataArray>"
    else:
        path = src
        ds = open_nc(src)
        if var not in ds.data_vars:
            raise missing_variable(src, var, list(ds.data_vars))
        da = _canonical_field(ds, var, src)
        da = da.squeeze(drop=True)
    if da.dims != ("lat", "lon"):
        da = da.transpose("lat", "lon", ...)
        if da.ndim != 2:
            raise input_error(path, var, "a (lat, lon) field", f"dims {da.dims}")
    if crop and ref.sizes["lat"]:
        lat = np.asarray(ref["lat"].values, dtype=np.float64)
        da = da.sel(lat=slice(lat[0] - 1e-4, lat[-1] + 1e-4))
    ok = (
        da.sizes["lat"] == ref.sizes["lat"]
        and da.sizes["lon"] == ref.sizes["lon"]
        and np.allclose(da["lat"], ref["lat"], atol=1e-4)
        and np.allclose(da["lon"], ref["lon"], atol=1e-4)
    )
    if not ok:
        raise input_error(
            path,
            var,
            f"the mascon grid ({ref.sizes['lat']}x{ref.sizes['lon']}) for the {what}",
            f"a {da.sizes['lat']}x{da.sizes['lon']} grid",
        )
    return da.assign_coords(lat=ref["lat"], lon=ref["lon"]).astype(np.float64)


def _open_lwe(path: str | os.PathLike, centre: str, *, checks: bool = True) -> tuple[xr.Dataset, xr.DataArray]:
    """(dataset, ``lwe_thickness`` lazily, file layout) of a mascon file; with ``checks`` its identity (centre)
    and a probe read of the first and last solution."""
    centre = centre.lower()
    if centre not in CENTRES:
        raise ValueError(f"centre must be one of {CENTRES}, got {centre!r}")
    ds = open_nc(path, variable="lwe_thickness")
    if "lwe_thickness" not in ds.data_vars:
        raise missing_variable(path, "lwe_thickness", list(ds.data_vars))
    if checks:
        check_centre(ds, path, centre)
    da = ds["lwe_thickness"]
    if "time" not in da.dims:
        raise input_error(path, "lwe_thickness", "a 'time' dimension", f"dims {da.dims}")
    da = squeeze_singletons(da, path, "lwe_thickness", ("time", "lat", "lon", "latitude", "longitude", "mascon"))
    if not {"lat", "latitude"} & set(da.dims) or not {"lon", "longitude"} & set(da.dims):
        raise input_error(path, "lwe_thickness", "dims lat and lon", f"dims {da.dims}")  # layout before values
    if checks:
        probe_read(path, da, "time")
    return ds, da


def _lat_dim(da: xr.DataArray, path) -> str:
    for name in ("lat", "latitude"):
        if name in da.dims:
            return name
    raise input_error(path, str(da.name), "dims lat and lon", f"dims {da.dims}")


def mascon_grid(path: str | os.PathLike, centre: str) -> tuple[np.ndarray, int, int]:
    """``(latitudes ascending (degrees north), longitudes, solutions)`` of a mascon file, from its metadata only:
    what :func:`open_mascon`'s ``lat`` windows select from and a band reader sizes its bands with. The layout
    is checked; identity and values are left to :func:`open_mascon`."""
    _, da = _open_lwe(path, centre, checks=False)
    name = _lat_dim(da, path)
    lat = np.sort(np.asarray(da[name].values, dtype=np.float64))
    return lat, da.size // max(1, da.sizes["time"] * lat.size), int(da.sizes["time"])


def open_mascon(
    path: str | os.PathLike,
    centre: str,
    *,
    gain_factor: str | os.PathLike | xr.DataArray | None = None,
    land_mask: str | os.PathLike | xr.DataArray | None = None,
    baseline: tuple[str, str] | None = BASELINE,
    window: tuple[str, str] | None = None,
    plausibility: Policy | list[str] | None = None,
    lat: tuple[float, float] | None = None,
    checks: bool = True,
) -> xr.DataArray:
    """Read one mascon file into monthly TWSA (mm) on its native grid, canonical layout.

    Parameters
    ----------
    path : path
        The centre's NetCDF (e.g. ``GRCTellus.JPL.200204_202412.GLO.RL06.3M.MSCNv04CRI.nc``).
    centre : {"jpl", "csr", "gsfc"}
        Recorded in the attributes (layouts are detected, not assumed).
    gain_factor : path or DataArray, optional
        JPL CLM4 gain factors (variable ``scale_factor``, lat × lon), multiplied in.
    land_mask : path or DataArray, optional
        Variable ``land_mask`` (1 land, 0 ocean); ocean cells become NaN.
    baseline : (first month, last month) or None
        Re-reference to the per-cell mean over the months present in this window.
    window : (first month, last month), optional
        Keep only these months; a window with no month in the file raises.
    plausibility : Policy or list of names, optional
        ``["lwe_thickness"]`` (or ``["all"]``) only logs what :mod:`gtws_dl.io.plausibility` finds (undeclared
        fill sentinels such as -99999, |TWSA| > 10 m, a 5-95 % spread outside 5..2000 mm, e.g. metres labelled
        ``cm``); otherwise it is refused. Checked on the values as read, before any conversion.
    lat : (south, north) degrees, optional
        Read only the rows whose latitudes lie in this window (both ends included): memory follows the band,
        not the globe. Every step is per cell, so the rows equal those of the whole file's result.
    checks : bool
        The whole-file checks (identity, plausibility, constant months; streamed in time blocks, whatever
        ``lat``) and their log lines. A reader of many bands runs them with the first band only.

    Returns
    -------
    xr.DataArray
        ``twsa`` float32 mm, dims ``(time, lat, lon)``, ``time`` month start (only months the
        file holds), lat ascending, lon −180..180; attrs ``units``, ``centre``, ``source_file``.
    """
    centre = centre.lower()
    ds, da = _open_lwe(path, centre, checks=checks)
    product = {k: " ".join(str(ds.attrs[k]).split())[:200] for k in (*_IDENTITY_ATTRS, "version", "date_created")
               if k in ds.attrs}  # the release, as its file names it (recorded in the cube manifest's targets)
    tname = "time"
    mid = decode_time(ds[tname], path)
    bnds = _bounds(ds, tname, path)
    months, frac = assign_months(mid, bnds)
    if checks:  # on the values as read (file units, layout), in time blocks: memory one block, not the record
        check_array(da, tname, path=path, variable="lwe_thickness", table=_LWE_UNITS, canonical="mm",
                    policy=plausibility)  # fmt: skip
        _check_constant_months(da, months, path)
    if lat is not None:  # the file's rows in the window (a contiguous run: latitudes are monotonic)
        name = _lat_dim(da, path)
        v = np.asarray(da[name].values, dtype=np.float64)
        keep = np.flatnonzero((v >= lat[0]) & (v <= lat[1]))
        if keep.size == 0:
            raise ValueError(f"{path}: no latitude row in {lat[0]:g}..{lat[1]:g} (file rows {v.min():g}..{v.max():g})")
        da = da.isel({name: slice(int(keep.min()), int(keep.max()) + 1)})
    da = da.load()
    da = convert_units(da, path, _LWE_UNITS, "mm", "lwe_thickness")
    da = _canonical_field(da.to_dataset(name="lwe_thickness"), "lwe_thickness", path)
    if lat is not None:
        da = da.sel(lat=slice(lat[0], lat[1]))
    da = da.transpose("time", "lat", "lon").astype(np.float64)  # GSFC may store (lat, lon, time)
    da = da.drop_vars([c for c in da.coords if c not in ("time", "lat", "lon")])
    da = _resolve(da.assign_coords(time=np.arange(da.sizes["time"])), months, frac, mid, path, log=checks)

    if window is not None:
        w0, w1 = (pd.Timestamp(w).to_period("M").to_timestamp() for w in window)
        times = pd.DatetimeIndex(da["time"].values)
        sel = da.sel(time=slice(w0, w1))
        if sel.sizes["time"] == 0:
            raise input_error(
                path,
                "lwe_thickness",
                f"months in the requested window {w0:%Y-%m} .. {w1:%Y-%m}",
                f"none; the file covers {covered(times)}",
            )
        da = sel

    if gain_factor is not None:
        da = da * _aux_field(gain_factor, "scale_factor", da.isel(time=0), "gain factors", crop=lat is not None)
    if land_mask is not None:
        lm = _aux_field(land_mask, "land_mask", da.isel(time=0), "land mask", crop=lat is not None)
        da = da.where(lm > 0.5)

    if baseline is not None:
        b0, b1 = (pd.Timestamp(b).to_period("M").to_timestamp() for b in baseline)
        base = da.sel(time=slice(b0, b1))
        if base.sizes["time"] == 0:
            raise input_error(
                path,
                "lwe_thickness",
                f"months in the baseline {b0:%Y-%m} .. {b1:%Y-%m}",
                f"none; the file covers {covered(pd.DatetimeIndex(da['time'].values))}",
            )
        used = pd.DatetimeIndex(base["time"].values)
        window = len(pd.date_range(b0, b1, freq="MS"))
        if checks and len(used) < BASELINE_MIN_FRACTION * window:
            LOGGER.warning("%s: re-referenced to %s only, %d of the %d months of the baseline %s..%s", path,
                           covered(used), len(used), window, f"{b0:%Y-%m}", f"{b1:%Y-%m}")
        da = da - base.mean("time", skipna=True)

    da = da.astype(np.float32)
    da.name = "twsa"
    da.attrs = {
        "units": "mm",
        "long_name": "terrestrial water storage anomaly (liquid water equivalent thickness)",
        "centre": centre,
        "source_file": str(path),
        "baseline": "file reference" if baseline is None else f"{baseline[0]}..{baseline[1]}",
        "baseline_months": [] if baseline is None else [f"{m:%Y-%m}" for m in used],
        "product": product,
        "gain_factor": "none"
        if gain_factor is None
        else str(gain_factor if not isinstance(gain_factor, xr.DataArray) else "DataArray"),
    }
    da["time"].attrs = {"standard_name": "time", "long_name": "month (first day)"}
    return da
