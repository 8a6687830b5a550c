"""ERA5 monthly means from the Copernicus CDS, both NetCDF layouts, into one canonical Dataset.

Layouts (details in ``docs/FORMATS.md``):

* **new CDS** (since 2024-09): dims ``valid_time``/``latitude``/``longitude``, ``valid_time`` int64
  seconds since 1970, ``expver`` string coord along ``valid_time`` (``"0001"`` ERA5, ``"0005"``
  ERA5T), scalar ``number``; accumulated and instantaneous variables may arrive in separate
  ``…stepType-avgad.nc`` / ``…stepType-avgua.nc`` files.
* **old CDS** (``grib_to_netcdf``): dims ``time``/``latitude``/``longitude``, ``time`` int32
  hours since 1900-01-01, int16 packed data (``scale_factor``/``add_offset``, fill −32767),
  optionally an ``expver`` *dimension* (1, 5) when ERA5 and ERA5T months are mixed.

Any mixture of files is accepted: one variable or many per file, per-year files or the whole
record, both layouts at once. What the reader does, in order:

1. open every file (a file that cannot be opened or read → :class:`InputFileError` naming it);
2. decode time (standard calendars only) and give each step its month
   (:func:`~gtws_dl.io._common.stamp_months`): from CF time bounds where the file has them, else from the
   stamp — day 1 (T00/T06/T12), 18:00 the day before (ERA5 accumulations, ``1999-12-31T18:00`` → 2000-01),
   mid-month or the month's last day before 18:00 (month-end labels of pandas/xarray); a stamp late on a last
   day (``cdo monmean``'s 23:00 without bounds: this month or the next?), on other days, or two stamps in
   one month are refused;
3. merge ERA5T into ERA5: per month, final ERA5 (``expver`` 1/"0001") wins over ERA5T
   (5/"0005"), which wins over files that do not say; two copies of a month at the same
   precedence must agree (else error); ``expver`` and ``number`` are dropped;
4. check every file is on the same grid as its siblings;
5. convert units once (table :data:`gtws_dl.io.era5_variables.VARIABLES`; unknown spellings are refused);
6. canonical layout: dims ``(time, lat, lon)``, lat ascending, lon −180..180, float32;
7. check the months: no gaps, requested ``start``/``end`` covered, no all-NaN month.

Data stay lazy (dask) except for the checks in 3 and 7, which read the duplicated months and
compute one NaN reduction per variable; the plausibility checks (:mod:`gtws_dl.io.plausibility`) read
every variable once, in blocks, before its units are converted.

Size: one module for both CDS layouts and the ERA5/ERA5T merge, whose steps share the per-file pieces.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cftime
import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.io._common import (
    STAMP_CONVENTIONS,
    check_monthly,
    convert_units,
    covered,
    decode_time,
    months_str,
    open_nc,
    probe_read,
    resolve_files,
    squeeze_singletons,
    stamp_months,
)
from gtws_dl.io.content import single_member
from gtws_dl.io.era5_variables import _ALIAS, VARIABLES
from gtws_dl.io.errors import describe_files, input_error, missing_variable
from gtws_dl.io.plausibility import Policy, as_policy, check_values, summarize_many
from gtws_dl.io.regrid import to_canonical
from gtws_dl.seasonal import month_starts

LOGGER = logging.getLogger(__name__)

_TIME_NAMES = ("valid_time", "time")
_ERA5_CODES = {"1", "0001", "01", "001"}
_ERA5T_CODES = {"5", "0005", "05", "005"}
_RANK_ERA5, _RANK_UNKNOWN, _RANK_ERA5T = 0, 1, 2


@dataclass
class _Piece:
    path: str
    data: xr.DataArray  # (time, latitude, longitude), decoded float, time = month start
    rank: np.ndarray  # per time step, _RANK_*
    lat: np.ndarray
    lon: np.ndarray
    encoding: dict = field(default_factory=dict)  # the file variable's CF encoding (declared fills, packing)


def _expver_rank(values: Iterable) -> np.ndarray:
    out = []
    for v in values:
        s = v.decode() if isinstance(v, bytes) else str(v)
        s = s.strip()
        if s.endswith(".0"):
            s = s[:-2]
        out.append(_RANK_ERA5 if s in _ERA5_CODES else _RANK_ERA5T if s in _ERA5T_CODES else _RANK_UNKNOWN)
    return np.asarray(out, dtype=np.int8)


def _spatial_names(ds: xr.Dataset, path) -> tuple[str, str]:
    lat = next((n for n in ("latitude", "lat") if n in ds.dims), None)
    lon = next((n for n in ("longitude", "lon") if n in ds.dims), None)
    if lat is None or lon is None:
        raise input_error(path, None, "dims latitude and longitude", f"dims {dict(ds.sizes)}")
    return lat, lon


def _read_file(path: Path, lat_chunk: int | None = None) -> tuple[dict[str, _Piece], list[str]]:
    """Pieces (one per recognised variable) of one ERA5 file, and all data-variable names.

    ``lat_chunk``: dask chunks of that many latitude rows (a band read then reads only its chunks); default the
    file's own chunks."""
    chunks = {} if lat_chunk is None else {"latitude": int(lat_chunk), "lat": int(lat_chunk)}
    with warnings.catch_warnings():  # rows of whole-field stored chunks: each read decompresses one field
        warnings.filterwarnings("ignore", message="The specified chunks separate the stored chunks")
        ds = single_member(open_nc(path, chunks=chunks), path)  # ensemble 'number' dim: size 1 squeezed, more refused
    available = [n for n, v in ds.data_vars.items() if v.ndim >= 2]
    tname = next((n for n in _TIME_NAMES if n in ds.variables), None)
    if tname is None:
        raise input_error(
            path,
            "valid_time",
            "a time coordinate 'valid_time' or 'time'",
            f"coordinates {list(ds.coords)}",
            available=available,
        )
    if tname not in ds.dims:
        ds = ds.expand_dims(tname)
        if "expver" in ds.coords and ds["expver"].ndim == 0:
            ds = ds.assign_coords(expver=ds["expver"].expand_dims(tname))
    months = _stamped_months(ds, tname, path)
    lat_n, lon_n = _spatial_names(ds, path)
    lat = np.asarray(ds[lat_n].values, dtype=np.float64)
    lon = np.asarray(ds[lon_n].values, dtype=np.float64)

    has_expver_dim = "expver" in ds.dims
    if not has_expver_dim:
        check_monthly(months, path, tname)
    if "expver" in ds.variables and not has_expver_dim and ds["expver"].dims == (tname,):
        file_rank = _expver_rank(ds["expver"].values)
    else:
        file_rank = np.full(len(months), _RANK_UNKNOWN, dtype=np.int8)

    pieces: dict[str, _Piece] = {}
    for name in available:
        da = ds[name]
        if not {tname, lat_n, lon_n} <= set(da.dims):
            continue
        short = _ALIAS.get(name, name)
        if short not in VARIABLES and set(da.dims) - {tname, lat_n, lon_n, "expver"}:
            continue  # e.g. pressure-level fields; not ours
        da = squeeze_singletons(da, path, short, (tname, lat_n, lon_n, "expver"))
        probe_read(path, da, tname)
        enc = dict(da.encoding)
        drop = [c for c in ("number", "expver") if c in da.coords and c not in da.dims]
        da = da.drop_vars(drop)
        rank = file_rank.copy()
        if has_expver_dim and "expver" in da.dims:
            da, rank = _merge_expver_dim(da, path, tname)
        da = da.assign_coords({tname: months}).rename({tname: "time"})
        da = da.transpose("time", lat_n, lon_n).rename({lat_n: "latitude", lon_n: "longitude"})
        da.name = short
        pieces[short] = _Piece(str(path), da, rank, lat, lon, enc)
    return pieces, available


def _merge_expver_dim(da: xr.DataArray, path, tname: str) -> tuple[xr.DataArray, np.ndarray]:
    """Old layout with an ``expver`` dim: per month take ERA5 (1) if it has data, else ERA5T (5).

    Each month normally has data under one ``expver`` only (the other is fill); if both hold
    data, ERA5 wins. Returns the merged (time, lat, lon) array and the per-month rank.
    """
    codes = _expver_rank(da["expver"].values)
    spatial = [d for d in da.dims if d not in (tname, "expver")]
    has = np.asarray(da.notnull().any(spatial).transpose(tname, "expver").values, dtype=bool)
    if has.shape[1] == 0:  # pragma: no cover - expver dim of length 0
        raise input_error(path, str(da.name), "expver values 1 and/or 5", "an empty expver dimension")
    merged = None
    taken = np.zeros(da.sizes[tname], dtype=bool)
    rank = np.full(da.sizes[tname], _RANK_UNKNOWN, dtype=np.int8)
    for i in np.argsort(codes, kind="stable"):  # ERA5 first, then unknown, then ERA5T
        fill = has[:, i] & ~taken
        part = da.isel(expver=int(i), drop=True)
        mask = xr.DataArray(fill, dims=[tname])
        merged = part.where(mask) if merged is None else merged.where(~mask, part)
        rank[fill] = codes[i]
        taken |= fill
    months = _stamped_months(da.to_dataset(name="v"), tname, path)
    check_monthly(months, path, tname)
    return merged, rank


def _stamped_months(ds: xr.Dataset, tname: str, path) -> pd.DatetimeIndex:
    """The month of each time step (:func:`~gtws_dl.io._common.stamp_months`: CF bounds first, else the stamp
    conventions of ERA5 and of the tools that write monthly means); a stamp no convention explains is refused."""
    time = ds[tname]
    stamps = decode_time(time, path, what=tname)
    bname = time.attrs.get("bounds")
    bounds = None
    if bname in ds.variables and ds[bname].ndim == 2 and ds[bname].shape[-1] == 2:
        b = ds[bname]
        attrs = {**time.attrs, **{k: v for k, v in b.attrs.items() if k in ("units", "calendar")}}
        bounds = tuple(decode_time(xr.DataArray(np.asarray(b.values)[:, k], attrs=attrs), path, what=bname)
                       for k in (0, 1))
    months, bad = stamp_months(stamps, bounds)
    if bad.any():
        shown = stamps[bad][:3].strftime("%Y-%m-%dT%H:%M").tolist()
        late = bounds is None and bool(np.any(stamps[bad].day == stamps[bad].days_in_month))
        hint = ("a stamp late on a month's last day (e.g. 23:00, as `cdo monmean` writes) may stand for that month or "
                "the next: add CF time bounds (`cdo settbounds,1mon`) or re-stamp each month to its first day"
                if late else "this does not look like the monthly-means data set "
                "'reanalysis-era5-single-levels-monthly-means'")
        found = (f"time bounds spanning other than one month, at {shown}" if bounds is not None
                 else f"stamps such as {shown}")
        raise input_error(path, tname, STAMP_CONVENTIONS, found, hint=hint)
    return months


def _grid_key(p: _Piece) -> tuple[np.ndarray, np.ndarray]:
    """The piece's nodes whatever their storage order: latitudes ascending, longitudes wrapped to [0, 360)."""
    return np.sort(p.lat), np.sort(np.mod(p.lon, 360.0))


def _same_storage(a: _Piece, b: _Piece) -> bool:
    return (a.lat.shape == b.lat.shape and a.lon.shape == b.lon.shape and np.array_equal(a.lat, b.lat)
            and np.array_equal(a.lon, b.lon))


def _sampled_months(a: xr.DataArray, b: xr.DataArray, *, every: int = 6, block: int = 12):
    """(a, b) float64 arrays of every ``every``-th month, ``block`` months at a time (memory: one block)."""
    idx = np.arange(0, a.sizes["time"], every)
    for i in range(0, idx.size, block):
        sel = {"time": idx[i : i + block]}
        yield (np.asarray(a.isel(sel).values, np.float64), np.asarray(b.isel(sel).values, np.float64))


DEWPOINT_EXCESS_K = 1.0  # a monthly-mean dew point may exceed the air temperature by packing noise, no more
DEWPOINT_MAX_FRACTION = 0.05  # of the sampled values (months, nodes) where it does


def _check_dewpoint(t2m: xr.DataArray, d2m: xr.DataArray, files: dict[str, list[str]], policy: Policy) -> None:
    """The dew point cannot exceed the air temperature: ``d2m > t2m + 1 K`` in over 5 % of the values (every
    sixth month) means the two are swapped or mislabelled. Waived by ``data.plausibility.skip=[d2m]``."""
    n = above = 0
    d_sum = t_sum = 0.0
    for t, d in _sampled_months(t2m, d2m):
        ok = np.isfinite(t) & np.isfinite(d)
        n += int(ok.sum())
        above += int((d[ok] > t[ok] + DEWPOINT_EXCESS_K).sum())
        t_sum, d_sum = t_sum + float(t[ok].sum()), d_sum + float(d[ok].sum())
    frac = above / n if n else 0.0
    if frac <= DEWPOINT_MAX_FRACTION:
        return
    err = input_error(
        sorted({*files["t2m"], *files["d2m"]}), "d2m",
        f"a dew point at most the 2 m temperature (d2m <= t2m + {DEWPOINT_EXCESS_K:g} K in at least "
        f"{1 - DEWPOINT_MAX_FRACTION:.0%} of the values)",
        f"d2m above t2m in {frac:.0%} of the values (mean d2m {d_sum / n:.1f} K, t2m {t_sum / n:.1f} K)",
        hint="the two variables are swapped or mislabelled in the files; to read them anyway: "
             "data.plausibility.skip=[d2m]")
    policy.waive(err, "d2m", sorted({*files["t2m"], *files["d2m"]}))


#: Over most of the globe, precipitation balances evaporation (ERA5 1940-2024: global means within a few percent);
#: the check runs where the files span at least this much of it (a regional box may be an ocean desert).
BALANCE_MIN_SPAN = (90.0, 180.0)  # degrees of latitude, longitude
BALANCE_RANGE = (0.5, 2.0)  # area-weighted mean tp / mean (-e)


def _check_water_balance(tp: xr.DataArray, e: xr.DataArray, files: dict[str, list[str]], policy: Policy) -> None:
    """On a large domain, area-weighted mean ``tp`` / mean ``-e`` (every sixth month) must lie in
    :data:`BALANCE_RANGE`: outside, one of them is in other units under the right label (e.g. tp as the mean of
    hourly accumulations, 24x too small). Waived by ``data.plausibility.skip=[tp]``."""
    lat, lon = np.asarray(tp["lat"].values), np.asarray(tp["lon"].values)
    d_lon = float(np.median(np.diff(np.sort(lon)))) if lon.size > 1 else 360.0
    if np.ptp(lat) < BALANCE_MIN_SPAN[0] or d_lon * lon.size < BALANCE_MIN_SPAN[1]:  # (a dateline-crossing box)
        return
    w = np.cos(np.deg2rad(lat))[None, :, None]
    wsum = sum_p = sum_e = 0.0
    for p, ev in _sampled_months(tp, e):
        ok = np.isfinite(p) & np.isfinite(ev)
        ww = np.broadcast_to(w, p.shape)[ok]
        wsum, sum_p, sum_e = wsum + float(ww.sum()), sum_p + float((p[ok] * ww).sum()), sum_e - float((ev[ok] * ww).sum())
    mean_p, mean_e = (sum_p / wsum, sum_e / wsum) if wsum else (0.0, 0.0)
    ratio = mean_p / mean_e if mean_e > 0 else np.inf
    if BALANCE_RANGE[0] <= ratio <= BALANCE_RANGE[1]:
        return
    err = input_error(
        sorted({*files["tp"], *files["e"]}), "tp",
        f"area-mean precipitation within {BALANCE_RANGE[0]:g}-{BALANCE_RANGE[1]:g}x the area-mean evaporation "
        "(over a domain this large they balance)",
        f"mean tp {mean_p:.3g} mm/day against mean -e {mean_e:.3g} mm/day ({ratio:.3g}x)",
        hint="one of them is in other units than its label says (e.g. the mean of hourly accumulations, 24x too "
             "small, from 'monthly_averaged_reanalysis_by_hour_of_day'); to read them anyway: "
             "data.plausibility.skip=[tp]")
    policy.waive(err, "tp", sorted({*files["tp"], *files["e"]}))


def _check_grids(pieces: list[_Piece], variable_of: dict[int, str]) -> None:
    """Every piece on the same nodes; the order they are stored in (latitude up or down, longitudes from 0 or
    from -180) may differ between files: :func:`_combine` puts each piece in canonical order first."""
    ref = pieces[0]
    ref_lat, ref_lon = _grid_key(ref)
    for pc in pieces[1:]:
        lat, lon = _grid_key(pc)
        same = (
            lat.shape == ref_lat.shape
            and lon.shape == ref_lon.shape
            and np.allclose(lat, ref_lat, atol=1e-4)
            and np.allclose(lon, ref_lon, atol=1e-4)
        )
        if not same:

            def desc(p: _Piece) -> str:
                return (
                    f"{p.lat.size}x{p.lon.size} lat {p.lat[0]:g}..{p.lat[-1]:g} "
                    f"lon {p.lon[0]:g}..{p.lon[-1]:g}"
                )

            raise input_error(
                [pc.path, ref.path],
                variable_of[id(pc)],
                f"the same grid as its sibling {ref.path} ({desc(ref)})",
                f"{desc(pc)} in {pc.path}",
                hint="download all files with the same grid/area settings",
            )


def _combine(var: str, pieces: list[_Piece]) -> tuple[xr.DataArray, np.ndarray]:
    """Concatenate pieces along time; resolve duplicate months (ERA5 > unknown > ERA5T). Returns the data and
    the rank (ERA5, unknown, ERA5T) of the version kept for each month."""
    mixed = any(not _same_storage(p, pieces[0]) for p in pieces[1:])
    da = xr.concat(
        [to_canonical(p.data) if mixed else p.data for p in pieces],  # concat overrides coordinates: same order
        dim="time",
        coords="minimal",
        compat="override",
        join="override",
        combine_attrs="override",
    )
    times = pd.DatetimeIndex(da["time"].values)
    rank = np.concatenate([p.rank for p in pieces])
    src = np.concatenate([[i] * p.data.sizes["time"] for i, p in enumerate(pieces)])
    order = np.lexsort((np.arange(len(times)), rank, times.asi8))
    keep: list[int] = []
    i = 0
    t_sorted = times.asi8[order]
    while i < len(order):
        j = i
        while j + 1 < len(order) and t_sorted[j + 1] == t_sorted[i]:
            j += 1
        group = order[i : j + 1]
        best = group[0]
        keep.append(best)
        if len(group) > 1:
            same_rank = [g for g in group[1:] if rank[g] == rank[best]]
            a = None
            for g in same_rank:
                if a is None:
                    a = np.asarray(da.isel(time=best).values, dtype=np.float64)
                b = np.asarray(da.isel(time=g).values, dtype=np.float64)
                if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True):
                    files = [pieces[src[best]].path, pieces[src[g]].path]
                    raise input_error(
                        files,
                        var,
                        "at most one version of each month (or identical copies)",
                        f"duplicate time stamp {times[best]:%Y-%m} with conflicting data in "
                        f"{describe_files(sorted(set(files)))}",
                        hint="remove the duplicate download",
                    )
            dropped = [g for g in group[1:] if rank[g] != rank[best]]
            if dropped:
                LOGGER.info(
                    "%s %s: ERA5 preferred over ERA5T/unlabelled copy from %s",
                    var,
                    f"{times[best]:%Y-%m}",
                    pieces[src[dropped[0]]].path,
                )
        i = j + 1
    keep_arr = np.asarray(keep)  # in time order
    if len(keep_arr) == da.sizes["time"] and (np.diff(keep_arr) == 1).all():
        return da, rank  # already sorted without duplicates: keep the dask graph simple
    return da.isel(time=keep_arr), rank[keep_arr]


def open_era5(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    variables: Sequence[str] | None = None,
    *,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    check_nan: bool = True,
    plausibility: Policy | Iterable[str] | None = None,
    lat_chunk: int | None = None,
) -> xr.Dataset:
    """Read ERA5 monthly means (either CDS NetCDF layout) into the canonical Dataset.

    Parameters
    ----------
    source : path, glob or list of them
        A directory (every ``*.nc`` inside), a glob pattern, a file, or a list of these.
    variables : list of str, optional
        ERA5 short names (:data:`VARIABLES`); default every recognised variable found.
    start, end : str or Timestamp, optional
        First/last month to return (``"1940-01"``); each must be covered by every variable.
    check_nan : bool
        Refuse months that are NaN everywhere (costs one pass over the data).
    plausibility : Policy or list of short names, optional
        Variables whose plausibility findings (:mod:`gtws_dl.io.plausibility`: undeclared fill sentinels,
        values outside :attr:`Era5Variable.bounds`, unit label contradicting the magnitude) are only logged
        (``data.plausibility.skip``); every other variable's are refused. One pass over the data, in blocks.
    lat_chunk : int, optional
        Latitude rows per dask chunk, so that reading a band of rows (:mod:`gtws_dl.cube.build`) holds only
        that band's chunks, not whole fields; default one chunk per stored chunk of each file.

    Returns
    -------
    xr.Dataset
        One float32 variable per short name, dims ``(time, lat, lon)``, ``time`` month start,
        ``lat`` ascending, ``lon`` −180..180, ``units`` canonical (see :data:`VARIABLES`);
        ``attrs['source_files']`` lists the files read, separated by ``"; "``.

    Raises
    ------
    InputFileError
        Unreadable file, missing variable, unknown units, grid differing between files,
        non-monthly stamps or non-standard calendar, conflicting duplicate months, gaps,
        ``start``/``end`` not covered, all-NaN months, implausible values.
    """
    policy = as_policy(plausibility)
    paths = resolve_files(source, what="ERA5 (data.era5_dir)")
    by_var: dict[str, list[_Piece]] = defaultdict(list)
    available: set[str] = set()
    for p in paths:
        pieces, names = _read_file(p, lat_chunk)
        available.update(names)
        for short, pc in pieces.items():
            by_var[short].append(pc)
    if variables is None:
        wanted = [v for v in VARIABLES if v in by_var]
        if not wanted:
            raise input_error(
                paths, None, f"at least one ERA5 variable of {list(VARIABLES)}", "none", available=available
            )
    else:
        wanted = [_ALIAS.get(v, v) for v in variables]
        for v in wanted:
            if v not in VARIABLES:
                raise input_error(paths, v, f"an ERA5 short name of {list(VARIABLES)}", f"{v!r}")
            if v not in by_var:
                raise missing_variable(paths, v, available)

    all_pieces = [pc for v in wanted for pc in by_var[v]]
    var_of = {id(pc): v for v in wanted for pc in by_var[v]}
    _check_grids(all_pieces, var_of)

    t0, t1 = (None if v is None else month_starts([pd.Timestamp(v)])[0] for v in (start, end))
    out: dict[str, xr.DataArray] = {}
    ranges: dict[str, pd.DatetimeIndex] = {}
    era5t: set[str] = set()  # months whose kept version of some variable is ERA5T (preliminary)
    for v in wanted:
        spec = VARIABLES[v]
        pieces = by_var[v]
        files = sorted({pc.path for pc in pieces})
        da, rank = _combine(v, pieces)
        units_in_file = da.attrs.get("units")
        check_values(
            summarize_many([(pc.data, pc.path, pc.encoding) for pc in pieces], "time"),
            paths=files, variable=v, units=da.attrs.get("units"), table=spec.accepted, canonical=spec.units,
            bounds=spec.bounds, policy=policy,
        )  # fmt: skip
        da = convert_units(da, files, spec.accepted, spec.units, v)
        times = pd.DatetimeIndex(da["time"].values)
        full = pd.date_range(times.min(), times.max(), freq="MS")
        gaps = full.difference(times)
        if len(gaps):
            raise input_error(
                files,
                v,
                "a gap-free monthly record",
                f"missing months {months_str(gaps)} within {covered(times)}",
            )
        if (t0 is not None and t0 < times.min()) or (t1 is not None and t1 > times.max()):
            want = f"{t0:%Y-%m}" if t0 is not None else "record start"
            want += f" .. {t1:%Y-%m}" if t1 is not None else " .. record end"
            raise input_error(
                files, v, f"a record covering the requested period {want}", f"it covers {covered(times)}"
            )
        in_range = np.ones(len(times), dtype=bool)
        if t0 is not None:
            in_range &= np.asarray(times >= t0)
        if t1 is not None:
            in_range &= np.asarray(times <= t1)
        da = da.sel(time=slice(t0, t1))
        ranges[v] = pd.DatetimeIndex(da["time"].values)
        prelim = ranges[v][rank[in_range] == _RANK_ERA5T]
        era5t.update(f"{m:%Y-%m}" for m in prelim)
        da = to_canonical(da).transpose("time", "lat", "lon").astype(np.float32)
        da.attrs = {
            "units": spec.units,
            "long_name": spec.long_name,
            "era5_short_name": v,
            "units_in_file": str(da.attrs.get("units_in_file", units_in_file)),
        }
        da.encoding = {}
        out[v] = da

    first = ranges[wanted[0]]
    for v in wanted[1:]:
        if not ranges[v].equals(first):
            raise input_error(
                sorted({pc.path for pc in by_var[v]}),
                v,
                f"the same months as {wanted[0]!r} ({covered(first)})",
                f"{covered(ranges[v])}",
                hint="pass start= and end= to select a common period",
            )

    if "tp" in out and "e" in out:
        _check_water_balance(out["tp"], out["e"], {v: sorted({pc.path for pc in by_var[v]}) for v in ("tp", "e")},
                             policy)
    if "t2m" in out and "d2m" in out:
        _check_dewpoint(out["t2m"], out["d2m"], {v: sorted({pc.path for pc in by_var[v]}) for v in ("t2m", "d2m")},
                        policy)

    if check_nan:
        for v, da in out.items():
            allnan = da.isnull().all(("lat", "lon")).compute().values
            if allnan.any():
                files = sorted({pc.path for pc in by_var[v]})
                bad = pd.DatetimeIndex(da["time"].values[allnan])
                raise input_error(
                    files,
                    v,
                    "data in every month",
                    f"all-NaN months {months_str(bad)}",
                    hint="the download is incomplete; fetch those months again",
                )

    ds = xr.Dataset(out)
    ds["time"].attrs = {"standard_name": "time", "long_name": "month (first day)"}
    ds.attrs = {
        "source": "ERA5 monthly averaged reanalysis (Copernicus CDS)",
        "source_files": "; ".join(str(p) for p in paths),
        "era5t_months": sorted(era5t),  # YYYY-MM of the preliminary (ERA5T, expver 5) months
    }
    return ds


def file_months(path: str | os.PathLike) -> pd.DatetimeIndex:
    """The months (month starts) one ERA5 file holds, from its time coordinate only (no field is read); used
    to pick the files an update needs. Refuses what :func:`open_era5` would refuse about the file's content."""
    import netCDF4  # noqa: PLC0415 - the fast path: the time variable alone (~2 ms a file)

    try:
        with netCDF4.Dataset(path) as nc:
            var = next(nc.variables[n] for n in _TIME_NAMES if n in nc.variables)
            if getattr(var, "bounds", None) is None:
                stamps = cftime.num2date(var[:], var.units, getattr(var, "calendar", "standard"),
                                         only_use_cftime_datetimes=False, only_use_python_datetimes=True)
                months, bad = stamp_months(pd.DatetimeIndex(np.asarray(stamps, dtype="datetime64[ns]")))
                if not bad.any():
                    return months.unique()
    except Exception:  # noqa: BLE001 - anything unusual: the reader's own checks name the fault
        pass
    with open_nc(path) as ds:
        tname = next((n for n in _TIME_NAMES if n in ds.variables), None)
        if tname is None:
            raise input_error(path, "valid_time", "a time coordinate 'valid_time' or 'time'",
                              f"coordinates {list(ds.coords)}")
        return _stamped_months(ds, tname, path).unique()
