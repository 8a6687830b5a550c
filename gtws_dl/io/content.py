"""What a file holds, before and beyond "is it NetCDF": content sniffing, groups, ensemble members.

* :func:`check_content` — a GRIB file, an unextracted CDS zip, a gzip, a web page or text saved as ``.nc``,
  or an empty file is refused with the advice that fits it (not "truncated or corrupt, download it again");
* :func:`open_group` — NetCDF4 groups / native HDF5 layouts: the one group holding the variable is read,
  else the groups found are named;
* :func:`single_member` — an ensemble ``number`` dimension: size 1 squeezed, more refused.

:func:`gtws_dl.io._common.open_nc` (the one NetCDF opener) runs the first two.
"""

from __future__ import annotations

import logging

import netCDF4
import numpy as np
import xarray as xr

from gtws_dl.io.errors import input_error

LOGGER = logging.getLogger(__name__)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NOT_NC = ", which cannot be opened as NetCDF"
_WEB_HINT = "a web page or text saved as .nc (e.g. an Earthdata login page): log in and download again"


def sniff_content(path) -> str:
    """What a file holds, from its first bytes: ``netcdf3``, ``hdf5``, ``grib``, ``zip``, ``gzip``,
    ``html``, ``text``, ``empty`` or ``unknown``."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        return "empty"
    if head[:3] == b"CDF" and head[3:4] in (b"\x01", b"\x02", b"\x05"):
        return "netcdf3"
    if any(head[o : o + 8] == _HDF5_MAGIC for o in (0, 512, 1024, 2048)):  # HDF5 user-block offsets
        return "hdf5"
    if b"GRIB" in head[:128]:  # GRIB edition 1/2 (optionally after a WMO bulletin header)
        return "grib"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    low = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if low.startswith((b"<!doctype", b"<html", b"<?xml")) or b"<html" in low[:1024]:
        return "html"
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    if printable >= 0.95 * len(head):
        return "text"
    return "unknown"


def check_content(path) -> None:
    """Refuse a file that is not NetCDF/HDF5 (GRIB, zip, gzip, web page/text, empty) with the right advice."""
    try:
        kind = sniff_content(path)
    except OSError:
        return  # the open reports it
    if kind in ("netcdf3", "hdf5", "unknown"):
        return
    expected = "a NetCDF file (NetCDF3 or NetCDF4/HDF5)"
    if kind == "empty":
        raise input_error(path, None, expected, "an empty file (0 bytes)",
                          hint="an interrupted download or copy: download it again")
    if kind == "grib":
        raise input_error(path, None, expected, f"a GRIB file{_NOT_NC}",
                          hint="request NetCDF from the CDS (data_format: netcdf) or convert with "
                          "cfgrib/grib_to_netcdf")
    if kind == "zip":
        raise input_error(path, None, expected, f"a ZIP archive{_NOT_NC}",
                          hint="an unextracted CDS zip: unzip it and point data.era5_dir at the .nc files inside")
    if kind == "gzip":
        raise input_error(path, None, expected, f"a gzip-compressed file{_NOT_NC}",
                          hint="decompress it (gunzip) and point the config at the .nc file inside")
    with open(path, "rb") as fh:
        first = fh.read(200).decode("utf-8", "replace").strip().splitlines()
    line = first[0][:80] if first else ""
    what = "a web page (HTML)" if kind == "html" else "text"
    raise input_error(path, None, expected, f"{what} starting {line!r}{_NOT_NC}", hint=_WEB_HINT)


def groups_of(path: str) -> dict[str, list[str]]:
    """``{group path: [variable names]}`` of every sub-group (the root excluded)."""
    out: dict[str, list[str]] = {}
    try:
        with netCDF4.Dataset(path) as nc:
            stack = list(nc.groups.values())
            while stack:
                g = stack.pop(0)
                out[g.path] = list(g.variables)
                stack.extend(g.groups.values())
    except Exception:  # pragma: no cover - the root opened, so this is unexpected
        return {}
    return out


def open_group(path: str, root: xr.Dataset, variable: str | None, chunks) -> xr.Dataset:
    """The one group holding ``variable`` (or holding variables, if None); root dataset when there are no groups."""
    groups = groups_of(path)
    if not groups:
        return root  # a flat file: the caller reports the missing variable
    found = {g: v for g, v in groups.items() if (variable in v if variable else v)}
    if len(found) != 1:
        listing = "; ".join(f"{g}: {sorted(v)}" for g, v in groups.items())
        want = f"variable {variable!r}" if variable else "data variables"
        found_txt = (
            f"{want} in {len(found)} groups, not at the root" if found
            else f"no {want} at the root ({sorted(root.data_vars)}) nor in any group"
        )
        raise input_error(
            path,
            variable,
            "the data at the file's root or in exactly one group",
            f"{found_txt}; groups: {listing}",
            hint="extract the group holding the data (e.g. `ncks -G : -g <group> in.nc out.nc`) and point the "
            "config at that file; for GSFC use the gridded gsfc.glb_*_halfdegree.nc, not the native .h5",
        )
    group = next(iter(found))
    try:
        ds = xr.open_dataset(path, engine="netcdf4", group=group, decode_times=False, chunks=chunks,
                             decode_timedelta=False)
    except Exception as exc:
        raise input_error(path, variable, f"a readable group {group}",
                          f"it cannot be opened ({type(exc).__name__}: {exc})", hint="download it again") from exc
    inherited = {k: root[k] for k in root.variables if k in ds.dims and k not in ds.variables}
    ds = ds.assign_coords(inherited)
    ds.attrs = {**root.attrs, **ds.attrs}
    LOGGER.info("%s: reading group %s (the root holds no %s)", path, group, variable or "data variables")
    root.close()
    return ds


def single_member(ds: xr.Dataset, path) -> xr.Dataset:
    """Squeeze an ensemble ``number`` dimension of size 1 (like ERA5's scalar ``number``); refuse more.

    The CDS ensemble product (``product_type: monthly_averaged_ensemble_members``) carries ``number`` =
    0..9; averaging or picking a member silently would change the predictors.
    """
    if "number" not in ds.dims:
        return ds
    n = ds.sizes["number"]
    if n > 1:
        members = np.asarray(ds["number"].values).tolist() if "number" in ds.variables else list(range(n))
        raise input_error(
            path,
            None,
            "one realisation per month (ERA5 reanalysis, scalar or size-1 'number')",
            f"an ensemble dimension 'number' of size {n} (members {members[:10]})",
            hint="request a single member (the reanalysis, product_type: monthly_averaged_reanalysis) from "
            "the CDS or average the members into the ensemble mean first (e.g. `cdo ensmean`/xarray .mean('number'))",
        )
    return ds.isel(number=0)
