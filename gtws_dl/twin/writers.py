"""Writers for every file the twin Earth produces, in the layouts of docs/FORMATS.md. All writes are atomic:
``<name>.tmp-<pid>`` in the same folder, then ``os.replace``.

Size: the ERA5 writer (both CDS layouts, month by month), the gridded CF files and the three mascon layouts share
the atomic-write, node-grid and NetCDF metadata pieces; each file family is one class or function.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import netCDF4
import numpy as np

from gtws_dl.grid import Grid

INSTANT = ("t2m", "d2m", "skt", "sp", "u10", "v10", "swvl1", "sd")
ACCUM = ("tp", "e", "pev", "ssrd", "strd")
# name: (GRIB paramId, GRIB shortName, units, long_name, standard_name)
ERA5_META = {
    "t2m": (167, "2t", "K", "2 metre temperature", "unknown"),
    "d2m": (168, "2d", "K", "2 metre dewpoint temperature", "unknown"),
    "skt": (235, "skt", "K", "Skin temperature", "unknown"),
    "sp": (134, "sp", "Pa", "Surface pressure", "surface_air_pressure"),
    "u10": (165, "10u", "m s**-1", "10 metre U wind component", "unknown"),
    "v10": (166, "10v", "m s**-1", "10 metre V wind component", "unknown"),
    "tp": (228, "tp", "m", "Total precipitation", "unknown"),
    "e": (182, "e", "m of water equivalent", "Evaporation", "lwe_thickness_of_water_evaporation_amount"),
    "pev": (228251, "pev", "m", "Potential evaporation", "unknown"),
    "ssrd": (169, "ssrd", "J m**-2", "Surface short-wave (solar) radiation downwards",
             "surface_downwelling_shortwave_flux_in_air"),
    "strd": (175, "strd", "J m**-2", "Surface long-wave (thermal) radiation downwards", "unknown"),
    "swvl1": (39, "swvl1", "m**3 m**-3", "Volumetric soil water layer 1", "unknown"),
    "sd": (141, "sd", "m of water equivalent", "Snow depth", "lwe_thickness_of_surface_snow_amount"),
}
_ZLIB = {"compression": "zlib", "complevel": 1}


def one_chunk_cache(v: netCDF4.Variable) -> None:
    """Give ``v`` an HDF5 chunk cache of one chunk. Written a chunk at a time, a variable with no cache
    (``size=0``) keeps every chunk's buffer until the file closes (HDF5's free list), and one with the default
    cache keeps up to its 64 MB (both ≈ 66 MB for 96 months of 320 × 640 float32, measured); one chunk's room is
    reused."""
    chunks = v.chunking()
    if chunks == "contiguous":
        return
    nbytes = int(np.prod(chunks)) * v.dtype.itemsize
    v.set_var_chunk_cache(size=nbytes + 4096, nelems=1, preemption=1.0)


def tmp_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def write_json(path: Path, obj: dict) -> None:
    tmp = tmp_path(path)
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def _days_since(times: np.ndarray, epoch: str) -> np.ndarray:
    return (np.asarray(times).astype("datetime64[s]") - np.datetime64(epoch, "s")).astype(np.int64) / 86400.0


# ----------------------------------------------------------------------------------------- node grid for ERA5
class NodeGrid:
    """ERA5's node-registered grid covering ``grid``: latitude descending (90 -> -90 globally), longitude
    0..360 (or, for a box crossing 0 deg, the box's own -180..180 values). Fields on cell centres are averaged
    onto the nodes (the mean of the up-to-4 surrounding cells, NaN-aware)."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        lon0, lon1, lat0, lat1 = grid.bounds
        self.wrap = grid.nlon * grid.res >= 360 - 1e-6
        self.lat = lat1 - grid.res * np.arange(grid.nlat + 1)
        nlon = grid.nlon if self.wrap else grid.nlon + 1
        lon = lon0 + grid.res * np.arange(nlon)
        if self.wrap or lon0 >= 0 or lon1 <= 0:
            lon = np.mod(lon, 360.0)
        self.order = np.argsort(lon, kind="stable")
        self.lon = lon[self.order]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(..., nlat, nlon) cell centres -> (..., nlat+1, nlon_nodes) nodes (lat descending)."""
        v = np.asarray(x, dtype=np.float64)
        ok = np.isfinite(v)
        v = np.where(ok, v, 0.0)
        c = ok.astype(np.float64)

        def pair_lat(a: np.ndarray) -> np.ndarray:
            lo = np.concatenate([a[..., :1, :], a], axis=-2)
            hi = np.concatenate([a, a[..., -1:, :]], axis=-2)
            return lo + hi

        def pair_lon(a: np.ndarray) -> np.ndarray:
            if self.wrap:
                return np.roll(a, 1, axis=-1) + a
            lo = np.concatenate([a[..., :1], a], axis=-1)
            hi = np.concatenate([a, a[..., -1:]], axis=-1)
            return lo + hi

        s, n = pair_lon(pair_lat(v)), pair_lon(pair_lat(c))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(n > 0, s / np.maximum(n, 1e-300), np.nan)
        return out[..., ::-1, :][..., self.order].astype(np.float32)


# --------------------------------------------------------------------------------------------------- ERA5
def era5_units(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical twin units -> ERA5 file units (accumulations as daily totals: m, J m-2; e/pev negative).

    Expects tp, e_mm (evaporation, > 0 from the surface), pev_mm (> 0), ssrd/strd W m-2, sd_mm, rest as in file.
    """
    out = {k: fields[k] for k in ("t2m", "d2m", "skt", "sp", "u10", "v10", "swvl1")}
    out["tp"] = fields["tp"] / 1000.0
    out["e"] = -fields["e_mm"] / 1000.0
    out["pev"] = -fields["pev_mm"] / 1000.0
    out["ssrd"] = fields["ssrd"] * 86400.0
    out["strd"] = fields["strd"] * 86400.0
    out["sd"] = fields["sd_mm"] / 1000.0
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


class Era5Writer:
    """Writes ERA5 monthly means month by month in the new (default) or old CDS layout.

    Files (under ``folder``): new layout ``data_stream-moda_stepType-avgua[_YYYY].nc`` (instantaneous) and
    ``data_stream-moda_stepType-avgad[_YYYY].nc`` (accumulated); old layout ``era5_moda[_YYYY].nc`` (all 13
    variables). ``_YYYY`` only when ``per_year``.
    """

    def __init__(self, folder: Path, grid: Grid, layout: str, per_year: bool, era5t_from: np.datetime64,
                 all_times: np.ndarray) -> None:
        self.folder, self.layout, self.per_year = Path(folder), layout, per_year
        self.nodes = NodeGrid(grid)
        self.era5t_from = np.datetime64(era5t_from, "M")
        self.all_times = np.asarray(all_times).astype("datetime64[s]")
        self.written: list[Path] = []
        self._open: dict[str, tuple[netCDF4.Dataset, Path, Path]] = {}
        self._buffer: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        self._pos = 0
        self.folder.mkdir(parents=True, exist_ok=True)

    def add_year(self, times: np.ndarray, fields: dict[str, np.ndarray]) -> None:
        """``times`` month starts; ``fields`` (month, lat, lon) in ERA5 file units on cell centres (see
        :func:`era5_units`)."""
        for i, t in enumerate(np.asarray(times)):
            self.add_month(t, {k: v[i] for k, v in fields.items()})

    def add_month(self, time: np.datetime64, fields: dict[str, np.ndarray]) -> None:
        """The next month: ``time`` its month start, ``fields`` (lat, lon) in ERA5 file units on cell centres.
        The new layout writes it at once; the legacy layout packs each variable over its file's months, so it
        buffers them (a year, or the record when not ``per_year``) until the file's last month."""
        t = np.datetime64(time, "s")
        nodes = {k: self.nodes(v[None]) for k, v in fields.items()}
        year = str(t.astype("datetime64[Y]"))
        in_year = self.all_times[self.all_times.astype("datetime64[Y]") == t.astype("datetime64[Y]")]
        k = int(np.searchsorted(in_year, t))
        last = k == len(in_year) - 1
        if self.layout == "new":
            for step, names in (("avgua", INSTANT), ("avgad", ACCUM)):
                name = f"data_stream-moda_stepType-{step}" + (f"_{year}" if self.per_year else "") + ".nc"
                sub = {n: nodes[n] for n in names}
                if self.per_year:
                    self._write_new(self.folder / name, t[None], sub, k, len(in_year), done=last)
                else:
                    self._write_new(self.folder / name, t[None], sub, self._pos, len(self.all_times))
            self._pos += 1
            return
        self._buffer.append((t[None], nodes))
        if self.per_year and last:
            self._write_old(self.folder / f"era5_moda_{year}.nc", *self._take_buffer())

    def _take_buffer(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        times = np.concatenate([t for t, _ in self._buffer])
        fields = {k: np.concatenate([f[k] for _, f in self._buffer]) for k in self._buffer[0][1]}
        self._buffer.clear()
        return times, fields

    def close(self) -> list[Path]:
        for ds, tmp, final in self._open.values():
            ds.close()
            os.replace(tmp, final)
            self.written.append(final)
        self._open.clear()
        if self._buffer:
            self._write_old(self.folder / "era5_moda.nc", *self._take_buffer())
        return self.written

    def _expver(self, times: np.ndarray) -> np.ndarray:
        return times.astype("datetime64[M]") >= self.era5t_from

    def _write_new(self, path: Path, times: np.ndarray, fields: dict[str, np.ndarray], pos: int, ntime: int,
                   done: bool = False) -> None:
        """Write ``times`` at ``pos`` of the file ``path`` of ``ntime`` months (opened at its first write);
        ``done``: its last months, the file is closed and moved into place."""
        key = str(path)
        if key not in self._open:
            tmp = tmp_path(path)
            ds = netCDF4.Dataset(tmp, "w", format="NETCDF4")
            ds.setncatts({"GRIB_centre": "ecmf", "GRIB_centreDescription": "European Centre for Medium-Range Weather Forecasts",
                          "GRIB_subCentre": 0, "Conventions": "CF-1.7",
                          "institution": "European Centre for Medium-Range Weather Forecasts",
                          "history": "gtws_dl twin Earth: synthetic data in the CDS (2024-09) NetCDF layout"})
            ds.createDimension("valid_time", ntime)
            ds.createDimension("latitude", len(self.nodes.lat))
            ds.createDimension("longitude", len(self.nodes.lon))
            num = ds.createVariable("number", "i8", ())
            num.setncatts({"long_name": "ensemble member numerical id", "units": "1", "standard_name": "realization"})
            num.assignValue(0)
            vt = ds.createVariable("valid_time", "i8", ("valid_time",))
            vt.setncatts({"long_name": "time", "standard_name": "time", "units": "seconds since 1970-01-01",
                          "calendar": "proleptic_gregorian"})
            la = ds.createVariable("latitude", "f8", ("latitude",))
            la.setncatts({"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude",
                          "stored_direction": "decreasing"})
            la[:] = self.nodes.lat
            lo = ds.createVariable("longitude", "f8", ("longitude",))
            lo.setncatts({"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"})
            lo[:] = self.nodes.lon
            ev = ds.createVariable("expver", str, ("valid_time",))
            ev.setncatts({"long_name": "model experiment version"})
            for k in fields:
                pid, short, units, long_name, std = ERA5_META[k]
                v = ds.createVariable(k, "f4", ("valid_time", "latitude", "longitude"), fill_value=np.float32(np.nan),
                                      chunksizes=(1, len(self.nodes.lat), len(self.nodes.lon)), **_ZLIB)
                one_chunk_cache(v)  # a month per chunk, written once
                v.setncatts({"GRIB_paramId": pid, "GRIB_shortName": short, "GRIB_units": units, "units": units,
                             "long_name": long_name, "standard_name": std, "GRIB_missingValue": 3.4028234663852886e38,
                             "coordinates": "number expver"})
            self._open[key] = (ds, tmp, path)
        ds = self._open[key][0]
        sl = slice(pos, pos + len(times))
        ds["valid_time"][sl] = (times - np.datetime64("1970-01-01", "s")).astype(np.int64)
        flags = self._expver(times)
        ev = ds["expver"]
        for i, f in enumerate(flags):
            ev[pos + i] = "0005" if f else "0001"
        for k, v in fields.items():
            ds[k][sl] = v
        if done:
            ds.close()
            tmp, final = self._open.pop(key)[1:]
            os.replace(tmp, final)
            self.written.append(final)

    def _write_old(self, path: Path, times: np.ndarray, fields: dict[str, np.ndarray]) -> None:
        tmp = tmp_path(path)
        flags = self._expver(times)
        mixed = bool(flags.any())
        with netCDF4.Dataset(tmp, "w", format="NETCDF3_64BIT_OFFSET") as ds:
            ds.Conventions = "CF-1.6"
            ds.history = ("gtws_dl twin Earth: synthetic data in the legacy CDS layout "
                          "(grib_to_netcdf-2.25.1: /opt/ecmwf/mars-client/bin/grib_to_netcdf.bin -S param -o out.nc in.grib)")
            ds.createDimension("longitude", len(self.nodes.lon))
            ds.createDimension("latitude", len(self.nodes.lat))
            if mixed:
                ds.createDimension("expver", 2)
            ds.createDimension("time", len(times))
            lo = ds.createVariable("longitude", "f4", ("longitude",))
            lo.setncatts({"units": "degrees_east", "long_name": "longitude"})
            lo[:] = self.nodes.lon
            la = ds.createVariable("latitude", "f4", ("latitude",))
            la.setncatts({"units": "degrees_north", "long_name": "latitude"})
            la[:] = self.nodes.lat
            if mixed:
                ev = ds.createVariable("expver", "i4", ("expver",))
                ev.long_name = "expver"
                ev[:] = [1, 5]
            tv = ds.createVariable("time", "i4", ("time",))
            tv.setncatts({"units": "hours since 1900-01-01 00:00:00.0", "long_name": "time", "calendar": "gregorian"})
            tv[:] = ((times - np.datetime64("1900-01-01", "s")).astype(np.int64) // 3600).astype(np.int32)
            dims = ("time", "expver", "latitude", "longitude") if mixed else ("time", "latitude", "longitude")
            for k in ERA5_META:
                x = fields[k].astype(np.float64)
                fin = np.isfinite(x)
                lo_, hi_ = (float(x[fin].min()), float(x[fin].max())) if fin.any() else (0.0, 0.0)
                scale = (hi_ - lo_) / 65532.0 if hi_ > lo_ else 1.0
                offset = (hi_ + lo_) / 2.0
                packed = np.full(x.shape, -32767, dtype=np.int16)
                packed[fin] = np.clip(np.round((x[fin] - offset) / scale), -32766, 32766).astype(np.int16)
                v = ds.createVariable(k, "i2", dims, fill_value=np.int16(-32767))
                v.set_auto_maskandscale(False)
                v.setncatts({"scale_factor": scale, "add_offset": offset, "missing_value": np.int16(-32767),
                             "units": ERA5_META[k][2], "long_name": ERA5_META[k][3]})
                if mixed:
                    full = np.full((len(times), 2, *x.shape[1:]), -32767, dtype=np.int16)
                    full[~flags, 0] = packed[~flags]
                    full[flags, 1] = packed[flags]
                    v[:] = full
                else:
                    v[:] = packed
        os.replace(tmp, path)
        self.written.append(path)


# ----------------------------------------------------------------------------------------- gridded files
class GridFile:
    """A CF NetCDF4 file of (time, [extra,] lat, lon) float32 variables written slice by slice.

    ``time`` is ``days since 1900-01-01 00:00:00`` (proleptic Gregorian), lat ascending, lon -180..180.
    """

    def __init__(self, path: Path, grid: Grid, times: np.ndarray, variables: dict[str, dict],
                 title: str, extra_dim: tuple[str, Sequence[str]] | None = None) -> None:
        self.path, self.tmp = Path(path), tmp_path(Path(path))
        self.ds = netCDF4.Dataset(self.tmp, "w", format="NETCDF4")
        ds = self.ds
        ds.setncatts({"Conventions": "CF-1.8", "title": title, "source": "gtws_dl twin Earth (synthetic)"})
        ds.createDimension("time", len(times))
        ds.createDimension("lat", grid.nlat)
        ds.createDimension("lon", grid.nlon)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": "days since 1900-01-01 00:00:00", "calendar": "proleptic_gregorian",
                     "standard_name": "time", "axis": "T"})
        t[:] = _days_since(times, "1900-01-01")
        la = ds.createVariable("lat", "f8", ("lat",))
        la.setncatts({"units": "degrees_north", "standard_name": "latitude", "axis": "Y"})
        la[:] = grid.lat
        lo = ds.createVariable("lon", "f8", ("lon",))
        lo.setncatts({"units": "degrees_east", "standard_name": "longitude", "axis": "X"})
        lo[:] = grid.lon
        dims = ("time", "lat", "lon")
        if extra_dim is not None:
            name, labels = extra_dim
            ds.createDimension(name, len(labels))
            c = ds.createVariable(name, str, (name,))
            for i, s in enumerate(labels):
                c[i] = s
            dims = ("time", name, "lat", "lon")
        for name, attrs in variables.items():
            chunks = (1,) * (len(dims) - 2) + (grid.nlat, grid.nlon)
            v = ds.createVariable(name, "f4", dims, fill_value=np.float32(np.nan), chunksizes=chunks, **_ZLIB)
            one_chunk_cache(v)  # each chunk (a month) is written once, whole
            v.setncatts(attrs)

    def write(self, name: str, start: int, data: np.ndarray) -> None:
        self.ds[name][start : start + len(data)] = np.asarray(data, dtype=np.float32)

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.ds[name][start:stop], dtype=np.float32)

    def close(self) -> Path:
        self.ds.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.ds.close()
        finally:
            self.tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- mascons
# the real products' global attributes (io.mascon.check_centre checks a file against the centre it is given as)
MASCON_TITLES = {
    "jpl": "JPL GRACE and GRACE-FO MASCON RL06.3Mv04 CRI",
    "csr": "CSR GRACE and GRACE-FO MASCON RL0603",
    "gsfc": "GSFC GRACE and GRACE-FO RL06 v2.0 mascons (OBP, ICE6G-D)",
}
MASCON_INSTITUTIONS = {
    "jpl": "NASA/JPL",
    "csr": "The University of Texas - Center for Space Research (CSR)",
    "gsfc": "NASA Goddard Space Flight Center",
}
MASCON_NAMES = {
    "jpl": "GRCTellus.JPL.{a}_{b}.GLO.RL06.3M.MSCNv04CRI.nc",
    "csr": "CSR_GRACE_GRACE-FO_RL0603_Mascons_all-corrections.nc",
    "gsfc": "gsfc.glb_.{a}_{b}_rl06v2.0_obp-ice6gd_halfdegree.nc",
}


class MasconWriter:
    """One centre's mascon file, written a block of GRACE months at a time, its 2004–2009 mean removed at
    :meth:`close` (as the centres distribute them: ``time_mean_removed``). Memory is a block of months, not
    the record: the raw months go to the file, the baseline's per-cell sum (float64, month by month in order, as
    ``mean(axis=0, dtype=float64)`` adds them) is kept, and :meth:`close` rewrites the file's months less it.

    JPL: float64, ``_FillValue`` -99999, lon 0..360, global attribute ``months_missing``. CSR: float32, lon 0..360.
    GSFC: float32, lon -180..180, stored (lat, lon, time) when ``time_last``. Chunks: a month per chunk, or with
    ``time_last`` the whole grid × 12 months. The file appears under its name only when closed.
    """

    def __init__(self, folder: Path, centre: str, grid: Grid, months: np.ndarray, time: np.ndarray,
                 bounds: np.ndarray, missing: Sequence[str], in_base: np.ndarray | None, *, time_last: bool = False):
        a, b = str(months[0]).replace("-", ""), str(months[-1]).replace("-", "")
        self.path = Path(folder) / MASCON_NAMES[centre].format(a=a, b=b)
        self._tmp = tmp_path(self.path)
        self.dtype = np.dtype("f8" if centre == "jpl" else "f4")
        self.fill = -99999.0 if centre == "jpl" else np.float32(np.nan)
        self.time_last = time_last
        self.in_base = np.zeros(len(months), bool) if in_base is None else np.asarray(in_base, bool)
        lon = grid.lon.copy()
        self._order = self._inverse = None  # the file's longitudes from the grid's, and back
        if centre in ("jpl", "csr"):
            lon = np.mod(lon, 360.0)
            self._order = np.argsort(lon, kind="stable")
            self._inverse = np.argsort(self._order)
            lon = lon[self._order]
        self._sum = np.zeros(grid.shape, np.float64)
        self._written = 0
        self.ds = ds = netCDF4.Dataset(self._tmp, "w", format="NETCDF4")
        ds.setncatts({"Conventions": "CF-1.6", "title": MASCON_TITLES[centre],
                      "institution": MASCON_INSTITUTIONS[centre],
                      "time_mean_removed": "2004.000 to 2009.999", "source": "gtws_dl twin Earth (synthetic)",
                      "time_coverage_start": str(months[0]), "time_coverage_end": str(months[-1])})
        if centre == "jpl":
            ds.months_missing = ";".join(missing)
        ds.createDimension("lat", grid.nlat)
        ds.createDimension("lon", grid.nlon)
        ds.createDimension("time", len(months))
        ds.createDimension("bounds", 2)
        la = ds.createVariable("lat", "f8", ("lat",))
        la.setncatts({"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"})
        la[:] = grid.lat
        lo = ds.createVariable("lon", "f8", ("lon",))
        lo.setncatts({"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"})
        lo[:] = lon
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts({"units": TIME_UNITS_MASCON, "calendar": "gregorian", "standard_name": "time",
                     "long_name": "time", "bounds": "time_bounds"})
        t[:] = time
        tb = ds.createVariable("time_bounds", "f8", ("time", "bounds"))
        tb.setncatts({"units": TIME_UNITS_MASCON, "long_name": "time bounds"})
        tb[:] = bounds
        dims = ("lat", "lon", "time") if time_last else ("time", "lat", "lon")
        chunks = (grid.nlat, grid.nlon, min(12, len(months))) if time_last else (1, grid.nlat, grid.nlon)
        self.v = v = ds.createVariable("lwe_thickness", self.dtype, dims, fill_value=self.fill, chunksizes=chunks,
                                       **_ZLIB)
        one_chunk_cache(v)
        v.set_auto_mask(False)  # :meth:`close` reads the raw months back (finite, as written)
        v.setncatts({"units": "cm", "long_name": "Liquid_Water_Equivalent_Thickness",
                     "standard_name": "Liquid_Water_Equivalent_Thickness", "grid_mapping": "WGS84"})

    def _put(self, g0: int, blk: np.ndarray) -> None:
        blk = np.where(np.isfinite(blk), blk, self.fill).astype(self.dtype)
        if self._order is not None:
            blk = blk[..., self._order]
        if self.time_last:
            self.v[:, :, g0:g0 + len(blk)] = np.moveaxis(blk, 0, -1)
        else:
            self.v[g0:g0 + len(blk)] = blk

    def _get(self, g0: int, g1: int) -> np.ndarray:
        blk = np.asarray(self.v[:, :, g0:g1] if self.time_last else self.v[g0:g1])
        if self.time_last:
            blk = np.moveaxis(blk, -1, 0)
        if self._inverse is not None:
            blk = blk[..., self._inverse]
        return blk

    def write(self, g0: int, lwe_cm: np.ndarray) -> None:
        """GRACE months ``g0 ..`` (n, lat, lon) cm on the writer's grid (lat asc, lon -180..180), in order."""
        if g0 != self._written:
            raise ValueError(f"{self.path.name}: months must come in order (got month {g0}, expected {self._written})")
        blk = np.asarray(lwe_cm).astype(self.dtype)
        for j in np.flatnonzero(self.in_base[g0:g0 + len(blk)]):
            self._sum += blk[j]
        self._put(g0, blk)
        self._written = g0 + len(blk)

    def close(self) -> Path:
        """Remove the baseline mean from every month (none when no month is in it), close the file and give it its
        name."""
        n = int(self.in_base.sum())
        if n:
            mean = (self._sum / n).astype(self.dtype)
            for g0 in range(0, self._written, 12):  # a year of months at a time
                g1 = min(self._written, g0 + 12)
                self._put(g0, self._get(g0, g1) - mean)
        self.ds.close()
        os.replace(self._tmp, self.path)
        return self.path


def write_mascon(folder: Path, centre: str, grid: Grid, months: np.ndarray, time: np.ndarray, bounds: np.ndarray,
                 lwe_cm: np.ndarray, missing: Sequence[str], *, time_last: bool = False) -> Path:
    """One centre's mascon file holding ``lwe_cm`` (time, lat, lon) cm as given (no mean removed), in the
    centre's layout (:class:`MasconWriter`)."""
    w = MasconWriter(folder, centre, grid, months, time, bounds, missing, None, time_last=time_last)
    for g0 in range(0, len(months), 12):
        w.write(g0, lwe_cm[g0:g0 + 12])
    return w.close()


TIME_UNITS_MASCON = "days since 2002-01-01T00:00:00Z"
