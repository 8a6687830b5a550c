"""Small helpers shared by the readers: safe opening, CF time decoding, monthly stamps, units."""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import cftime
import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.io.content import check_content, open_group
from gtws_dl.io.errors import InputFileError, input_error, missing_variable

LOGGER = logging.getLogger(__name__)

STANDARD_CALENDARS = {"standard", "gregorian", "proleptic_gregorian"}


def open_nc(
    path: str | os.PathLike, *, chunks: dict | None = None, variable: str | None = None
) -> xr.Dataset:
    """Open a NetCDF file with times left numeric (decoded by :func:`decode_time`).

    The content is sniffed first (:func:`gtws_dl.io.content.check_content`): a GRIB file, a CDS zip, a gzip, a web page
    or text saved as ``.nc``, or an empty file is refused with the right advice; a broken symbolic
    link names its missing target. Any other failure to open (truncated, HDF error) becomes an
    :class:`InputFileError` naming the file.

    ``variable``: the data variable the caller needs. When the root group lacks it (or holds no data
    variable at all) and the file has groups (NetCDF4 groups, native HDF5 layouts), the one group
    holding it is read (global attributes of the root kept); several or none → refused naming the
    groups found.
    """
    p = os.fspath(path)
    if os.path.islink(p) and not os.path.exists(p):
        raise input_error(
            p,
            None,
            "an existing NetCDF file",
            f"a broken symbolic link to {os.readlink(p)!r} (resolved: {os.path.realpath(p)}, which does not exist)",
            hint="restore the target or point the config at the real file",
        )
    if not os.path.exists(p):
        raise input_error(p, None, "an existing NetCDF file", "no such file")
    if os.path.isdir(p):
        raise input_error(p, None, "a NetCDF file", "a directory", hint="give one file, or a glob")
    check_content(p)
    check_classic_size(p)
    try:
        ds = xr.open_dataset(p, engine="netcdf4", decode_times=False, chunks=chunks, decode_timedelta=False)
    except Exception as exc:  # netCDF4 raises OSError/RuntimeError/ValueError variants
        raise input_error(
            p,
            None,
            "a readable NetCDF file",
            f"it cannot be opened ({type(exc).__name__}: {exc}); the file is truncated or corrupt",
            hint="download it again",
        ) from exc
    need_group = (variable is not None and variable not in ds.variables) or not ds.data_vars
    if need_group:
        return open_group(p, ds, variable, chunks)
    return ds


def probe_read(path: str | os.PathLike, da: xr.DataArray, time_dim: str | None) -> None:
    """Read the first and last slab of ``da`` so that truncated data fail here, naming the file."""
    try:
        if time_dim and time_dim in da.dims and da.sizes[time_dim] > 0:
            da.isel({time_dim: [0, -1]}).values  # noqa: B018 - force the read
        else:
            da.values  # noqa: B018
    except Exception as exc:
        raise input_error(
            path,
            str(da.name),
            "readable data",
            f"reading failed ({type(exc).__name__}: {exc}); the file is truncated or corrupt",
            hint="download it again",
        ) from exc


def require_variable(ds: xr.Dataset, name: str, path, aliases: Iterable[str] = ()) -> str:
    """Return the name under which ``name`` (or one of its aliases) is present, else raise."""
    for cand in (name, *aliases):
        if cand in ds.data_vars:
            return cand
    raise missing_variable(path, name, list(ds.data_vars))


def decode_time(var: xr.DataArray, path, *, what: str = "time") -> pd.DatetimeIndex:
    """Decode a CF time coordinate with a standard calendar into a DatetimeIndex (ns).

    Non-standard calendars (360_day, noleap, julian, …) raise :class:`InputFileError`: monthly
    stamps from such calendars cannot be put on the Gregorian monthly axis without resampling.
    """
    units = var.attrs.get("units")
    if units is None:
        raise input_error(
            path, what, "a CF 'units' attribute like 'days since 2002-01-01'", "no units attribute"
        )
    cal = str(var.attrs.get("calendar", "standard")).lower()
    if cal not in STANDARD_CALENDARS:
        raise input_error(
            path,
            what,
            f"a standard calendar {sorted(STANDARD_CALENDARS)}",
            f"calendar {cal!r}",
            hint="convert the file to the Gregorian calendar first",
        )
    units = re.sub(r"(\d)Z\b", r"\1", str(units).strip())  # 'T00:00:00Z' -> 'T00:00:00'
    vals = np.asarray(var.values)
    if vals.size and not np.all(np.isfinite(vals.astype(np.float64))):
        raise input_error(path, what, "finite time values", "missing/NaN time values")
    try:
        dates = cftime.num2date(
            vals, units, calendar=cal, only_use_cftime_datetimes=False, only_use_python_datetimes=True
        )
    except Exception as exc:
        raise input_error(path, what, "CF time units", f"{units!r} ({exc})") from exc
    return pd.DatetimeIndex(np.atleast_1d(dates)).as_unit("ns")


def squeeze_singletons(da: xr.DataArray, path, var: str, keep: Iterable[str]) -> xr.DataArray:
    """``da`` without its size-1 dimensions outside ``keep`` (a ``height`` of 2 m, a ``lev`` or ``band`` of one:
    the same field); an extra dimension with several entries is refused naming it (which entry is meant?)."""
    keep = set(keep)
    extra = {d: n for d, n in da.sizes.items() if d not in keep}
    many = {d: n for d, n in extra.items() if n != 1}
    if many:
        raise input_error(path, var, f"dims {sorted(keep & set(da.dims))} (and size-1 ones)",
                          f"dims {dict(da.sizes)}: {', '.join(f'{d!r} has {n} entries' for d, n in many.items())}",
                          hint="select one entry first, e.g. `ncks -d DIM,0 in.nc out.nc` or "
                               "`ds.isel(DIM=0).to_netcdf(...)`")
    if extra:
        LOGGER.info("%s: variable %r: dropped the size-1 dimension(s) %s", path, var, ", ".join(extra))
        da = da.isel({d: 0 for d in extra}, drop=True)
    return da


#: What :func:`stamp_months` accepts, for messages.
STAMP_CONVENTIONS = ("monthly-mean stamps at a month start (day 1 up to 24:00, or 18:00 the day before), in the "
                     "middle of the month (days 14-17) or on its last day before 18:00, or CF time bounds")
_QUIRK = pd.Timedelta(hours=6)  # ERA5 accumulations stamped 18:00 the day before (docs/FORMATS.md)


def stamp_months(stamps: pd.DatetimeIndex, bounds: tuple[pd.DatetimeIndex, pd.DatetimeIndex] | None = None
                 ) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """(the month each monthly-mean stamp stands for, a mask of the stamps no convention explains).

    With CF time ``bounds`` (lower, upper): the month holding the middle of each interval, which must span
    27-32 days. Without: a stamp on day 1 (up to 24:00, the CDS's T00/T06/T12 variants) or exactly 6 h before a
    month start (ERA5 accumulations, ``1999-12-31T18:00`` = 2000-01) stands for that month; one in the middle of a
    month (days 14-17, the CF habit) or on its last day before 18:00 (month-end labels: pandas ``'ME'``, xarray
    ``resample('M')``) for its own month. A stamp late on the last day (after 18:00, e.g. ``cdo monmean``'s
    23:00 without bounds) could be either month: it is refused (the mask), as are stamps on other days.
    """
    t = pd.DatetimeIndex(stamps).as_unit("ns")
    own = pd.DatetimeIndex(t.to_period("M").to_timestamp()).as_unit("ns")
    if bounds is not None:
        lo, hi = (pd.DatetimeIndex(b).as_unit("ns") for b in bounds)
        mid = lo + (hi - lo) / 2
        span = (hi - lo) / pd.Timedelta(days=1)
        months = pd.DatetimeIndex(mid.to_period("M").to_timestamp()).as_unit("ns")
        return months, ~((span >= 27) & (span <= 32))
    nxt = own + pd.offsets.MonthBegin(1)
    quirk = np.asarray(nxt - t == _QUIRK)
    start = np.asarray(t - own <= pd.Timedelta(days=1))
    middle = np.asarray((t.day >= 14) & (t.day <= 17))
    last_day = np.asarray((t.day == t.days_in_month) & (nxt - t > _QUIRK))
    months = pd.DatetimeIndex(np.where(quirk, nxt, own)).as_unit("ns")
    return months, ~(start | quirk | middle | last_day)


def months_str(times: Iterable) -> str:
    ts = pd.DatetimeIndex(list(times))
    if len(ts) > 12:
        return (
            f"{len(ts)} months: "
            + ", ".join(ts[:6].strftime("%Y-%m"))
            + ", ..., "
            + ", ".join(ts[-3:].strftime("%Y-%m"))
        )
    return ", ".join(ts.strftime("%Y-%m"))


def covered(times: pd.DatetimeIndex) -> str:
    if len(times) == 0:
        return "no months"
    return f"{times.min():%Y-%m} .. {times.max():%Y-%m} ({len(times)} months)"


def norm_units(u: str | None) -> str:
    """Spelling-insensitive form of a unit string: no '**'/'^', single spaces, '/'-free where simple."""
    if u is None:
        return ""
    s = str(u).strip().replace("**", "").replace("^", "")
    s = re.sub(r"\s+", " ", s)
    return s


def convert_units(
    da: xr.DataArray, path, table: dict[str, tuple[float, float]], canonical: str, variable: str
) -> xr.DataArray:
    """Apply ``x * factor + offset`` for the accepted spelling in ``table``; unknown units raise.

    ``table`` maps normalised unit spellings (see :func:`norm_units`) to ``(factor, offset)``.
    """
    found = da.attrs.get("units")
    key = norm_units(found)
    if key not in table:
        raise input_error(
            path, variable, f"units one of {sorted(table)} (converted to {canonical!r})", f"{found!r}"
        )
    factor, offset = table[key]
    attrs = dict(da.attrs)
    if factor != 1.0 or offset != 0.0:
        da = da * factor + offset if offset else da * factor
    attrs["units"] = canonical
    if norm_units(found) != norm_units(canonical):
        attrs["units_in_file"] = str(found)
    da.attrs = attrs
    return da


def floor_months(stamps: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Month containing each stamp (for mid-month product stamps)."""
    return pd.DatetimeIndex(stamps.to_period("M").to_timestamp()).as_unit("ns")


def check_monthly(times: pd.DatetimeIndex, path, variable: str) -> None:
    """Refuse sub-monthly data: two stamps in one calendar month."""
    dup = times[times.duplicated()]
    if len(dup):
        raise input_error(
            path,
            variable,
            "monthly data (one time step per month)",
            f"several time steps in {months_str(dup.unique())}",
            hint="aggregate to monthly means first",
        )


def raise_if(cond: bool, err: InputFileError) -> None:
    if cond:
        raise err


# --------------------------------------------------------------------------- classic-format size
_NC_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}


def _classic_expected_size(buf: bytes) -> int | None:
    """Minimum byte size of a NetCDF classic/64-bit-offset/CDF5 file from its header, or None.

    netCDF-c reads past the end of a truncated *classic* file without an error (returning fill
    values), so readers compare the real size with this. Returns None for NetCDF4/HDF5 or an
    unparsable header (those fail loudly on read instead).
    """
    import struct

    if len(buf) < 8 or buf[:3] != b"CDF" or buf[3] not in (1, 2, 5):
        return None
    version = buf[3]
    off_fmt, off_n = (">q", 8) if version in (2, 5) else (">i", 4)
    cnt_fmt, cnt_n = (">q", 8) if version == 5 else (">i", 4)
    pos = 4

    def rd(fmt: str, n: int) -> int:
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)[0]
        pos += n
        return v

    def name() -> str:
        nonlocal pos
        n = rd(cnt_fmt, cnt_n)
        s = buf[pos : pos + n].decode("utf-8", "replace")
        pos += (n + 3) // 4 * 4
        return s

    def atts() -> None:
        nonlocal pos
        tag, n = rd(">i", 4), rd(cnt_fmt, cnt_n)
        if tag not in (0, 12):
            raise ValueError("bad attribute list")
        for _ in range(n):
            name()
            typ, cnt = rd(">i", 4), rd(cnt_fmt, cnt_n)
            pos += (cnt * _NC_SIZES[typ] + 3) // 4 * 4

    try:
        numrecs = rd(cnt_fmt, cnt_n)
        _, ndims = rd(">i", 4), rd(cnt_fmt, cnt_n)
        dims = []
        for _ in range(ndims):
            name()
            dims.append(rd(cnt_fmt, cnt_n))
        atts()
        _, nvars = rd(">i", 4), rd(cnt_fmt, cnt_n)
        rec_vars, size = [], pos
        for _ in range(nvars):
            name()
            nd = rd(cnt_fmt, cnt_n)
            ids = [rd(cnt_fmt, cnt_n) for _ in range(nd)]
            atts()
            typ = rd(">i", 4)
            vsize = rd(cnt_fmt, cnt_n) if version == 5 else rd(">i", 4)
            begin = rd(off_fmt, off_n)
            is_rec = bool(ids) and dims[ids[0]] == 0
            n_el = int(np.prod([dims[i] for i in ids[1:]] if is_rec else [dims[i] for i in ids]))
            raw = n_el * _NC_SIZES[typ]
            if is_rec:
                rec_vars.append((begin, vsize, raw))
            else:
                size = max(size, begin + raw)
        if rec_vars and numrecs > 0:
            recsize = sum(v for _, v, _ in rec_vars) if len(rec_vars) > 1 else rec_vars[0][2]
            size = max(size, max(b + (numrecs - 1) * recsize + r for b, _, r in rec_vars))
        return size
    except (struct.error, KeyError, ValueError, IndexError):
        return None


def check_classic_size(path) -> None:
    """Raise :class:`InputFileError` if a classic-format NetCDF is shorter than its header says."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
        actual = os.path.getsize(path)
    except OSError:
        return  # open_nc reports it
    need = _classic_expected_size(head)
    if need is not None and actual < need:
        raise input_error(
            path,
            None,
            f"a complete NetCDF file of at least {need} bytes (from its header)",
            f"{actual} bytes; the file is truncated or corrupt",
            hint="download it again",
        )


def resolve_files(source: str | os.PathLike | Iterable[str | os.PathLike], *, what: str) -> list[Path]:
    """Files named by a path, a directory (its ``*.nc``), a glob, or a list of these; at least one must exist.

    ``what`` names the input and its config key for the message, e.g. ``"GRACE csr (data.grace.csr)"``.
    """
    if not isinstance(source, str | os.PathLike):
        paths = [p for item in source for p in resolve_files(item, what=what)]
        if not paths:
            raise InputFileError(f"{what}: an empty list of files; give at least one path, folder or glob")
        return paths
    s = str(source)
    if os.path.isdir(s):
        paths = sorted(Path(s).glob("*.nc"))
        if not paths:
            raise input_error(s, None, "a directory holding *.nc files", "no *.nc file in it",
                              hint=f"{what}: check the path in the data config")
        return paths
    paths = sorted(Path(p) for p in glob.glob(s))
    if not paths:
        raise InputFileError(f"{what}: no file matches {s!r}; check the path in the data config")
    return paths


def resolve_one(source: str | os.PathLike | Iterable[str | os.PathLike], *, what: str) -> Path:
    """The single file named by a path, folder, glob or list (see :func:`resolve_files`).

    More than one match is refused, listing the matches: a single-file input (a mascon centre, LAI,
    SIF, land cover) must not silently take the first of several releases or centres.
    """
    paths = resolve_files(source, what=what)
    if len(paths) > 1:
        shown = ", ".join(str(p) for p in paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
        key = what[what.find("(") + 1 : what.rfind(")")] if "(" in what else "the config key"
        src = source if isinstance(source, str | os.PathLike) else [str(s) for s in source]
        raise InputFileError(
            f"{what}: expected one file; found {len(paths)} files matching {str(src)!r}: {shown}. "
            f"Set {key} to the path of the one file to use (not a folder or a glob matching several)",
            paths=paths, expected="one file", found=f"{len(paths)} files",
        )
    return paths[0]
