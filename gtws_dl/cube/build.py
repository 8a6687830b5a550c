"""Build the predictor cube and the target cube (Zarr v3) from reader outputs.

Predictor cube ``predictors.zarr``
    ``predictors`` (time, channel, lat, lon) float32, raw physical values in canonical units
    (NaN allowed over ocean); ``land_mask``, ``land_fraction`` (lat, lon); ``cell_area`` (lat, lon) m².
Target cube ``targets.zarr``
    ``twsa`` (target, time, lat, lon) float32 mm; NaN where a centre has no solution that month or over ocean.
``manifest.json``
    inputs with checksums, channels and units, normalisation statistics (training months only), code version.

Cubes are written time block by time block so memory stays bounded at 0.25°.

Size: every check that metadata and the opened inputs allow runs in :meth:`CubeBuilder.build` before the first
block (grids, centres, periods, the ERA5 resolution), so the build and its pre-flight stay together; the
centres' cross-checks live in :mod:`gtws_dl.cube.centres`.
"""

from __future__ import annotations

import json
import logging
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from gtws_dl.conventions import BASELINE
from gtws_dl.cube import file_index
from gtws_dl.cube.centres import check_centre_baselines, check_centre_scales
from gtws_dl.cube.kind import check_data_kind
from gtws_dl.cube.periods import Periods, as_last_time, resolve_periods, resolved_spec
from gtws_dl.cube.store import CUBE_FORMAT_VERSION
from gtws_dl.cube.writer import CubeWriter
from gtws_dl.grid import Grid
from gtws_dl.hashing import sha256_json, sha256_path
from gtws_dl.heap import release_memory
from gtws_dl.io import era5 as era5_io
from gtws_dl.io import mascon as mascon_io
from gtws_dl.io import vegetation as veg_io
from gtws_dl.io._common import open_nc, resolve_files, resolve_one
from gtws_dl.io.errors import InputFileError, describe_files
from gtws_dl.io.plausibility import Policy
from gtws_dl.io.regrid import regrid_conservative
from gtws_dl.landmask import land_fraction

LOGGER = logging.getLogger(__name__)

SPINUP_MONTHS = 120  # the antecedent water-balance memories start from the mean P + E of the first 10 years
# Files xarray keeps open while ERA5 is checked file by file: each open netCDF file holds a chunk cache of up to
# 64 MB per variable (netCDF-C's default), so the 128 files xarray would keep open grew a global 0.25 deg check
# pass past 15 GB; with 4 it peaked at 1.0 GB (measured on the twin's 46 yearly files)
CHECK_OPEN_FILES = 4
ERA5_VARIABLES = ("t2m", "d2m", "skt", "sp", "u10", "v10", "tp", "e", "pev", "ssrd", "strd", "swvl1", "sd")


@dataclass
class CubeSpec:
    """What goes into a cube. Paths may be globs that must match at least one file."""

    era5: str
    grace: Mapping[str, str]
    start: str | None = None  # None: the first month every required forcing (ERA5) covers
    end: str | None = None  # None: the last month every required forcing covers (gtws_dl.cube.periods)
    variables: Sequence[str] = ERA5_VARIABLES
    lai: str | None = None
    sif: str | None = None
    landcover: str | None = None
    jpl_gain_factor: str | None = None
    baseline: tuple[str, str] = BASELINE
    ewma_months: Sequence[float] = (3.0, 12.0, 36.0)  # antecedent water-balance memories, months
    stats_period: tuple[str, str] | None = None  # normalisation fitted here only; None: GRACE months to training end
    val_months: int = 24  # the split that bounds the statistics period chosen from the data (data.split)
    gap_months: int = 24
    chunk_months: int = 12  # Zarr time chunk; a multiple of it divides the training window
    chunk_lat: int = 15  # latitude rows per predictor chunk (bench/chunks.py: faster patch reads, same whole reads)
    memory_gb: float = 4.0  # ingest.memory_gb: one block's working set; sizes the latitude bands and time blocks
    plausibility_skip: Sequence[str] = ()  # data.plausibility.skip: variables whose plausibility findings are waived
    kind: str | None = None  # data.kind: "twin" | "files" (inputs of the two never mix); None: not checked
    extra: dict = field(default_factory=dict)


def month_axis(start: str, end: str) -> pd.DatetimeIndex:
    """Month-start axis from ``start`` to ``end`` inclusive (YYYY-MM strings)."""
    return pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="MS")


# the split only chooses the statistics period, which is fingerprinted resolved (see CubeBuilder.build)
_NOT_FINGERPRINTED = ("extra", "val_months", "gap_months", "memory_gb", "kind")  # the same values


def _fingerprint(spec: CubeSpec, grid: Grid, inputs: dict[str, str]) -> str:
    payload = {
        "spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.__dict__.items()
                 if k not in _NOT_FINGERPRINTED and not (k == "plausibility_skip" and not v)},  # empty: fingerprints unchanged
        "grid": [grid.res, list(grid.bounds)],
        "inputs": inputs,
        "format": CUBE_FORMAT_VERSION,
    }
    return sha256_json(payload)


class CubeBuilder:
    """Reads the inputs of a :class:`CubeSpec`, regrids them to ``grid`` and writes the cubes."""

    def __init__(self, spec: CubeSpec, grid: Grid, out_dir: str | Path) -> None:
        self.spec, self.grid, self.out_dir = spec, grid, Path(out_dir)
        self.times: pd.DatetimeIndex | None = None  # the record, once build() resolved the periods
        self.periods: Periods | None = None
        self.landfrac = land_fraction(grid)
        self.land = self.landfrac >= 0.5
        self.plausibility = Policy.from_names(spec.plausibility_skip)  # unknown names refused before any read
        if self.plausibility.skip:
            LOGGER.warning("data.plausibility.skip=%s: plausibility findings of these inputs are only logged, not "
                           "refused (recorded in the cube manifest)", list(self.plausibility.skip))

    def _input_files(self) -> dict[str, list[Path]]:
        s = self.spec
        files = {"era5": resolve_files(s.era5, what="ERA5 (data.era5_dir)")}  # ERA5: many files
        # single-file inputs: a glob/folder matching several (releases, centres) is refused, never [0]
        for c, pat in s.grace.items():
            files[f"grace_{c}"] = [resolve_one(pat, what=f"GRACE {c} (data.grace.{c})")]
        for key in ("lai", "sif", "landcover", "jpl_gain_factor"):
            if getattr(s, key):
                files[key] = [resolve_one(getattr(s, key), what=f"{key} (data.{key})")]
        return files

    def _open_extra(self, files: dict[str, list[Path]]) -> dict[str, xr.DataArray]:
        """LAI/SIF (filled before their record, plus availability) and land-cover fractions."""
        extra: dict[str, xr.DataArray] = {}
        for key, opener in (("lai", veg_io.open_lai), ("sif", veg_io.open_sif)):
            if key in files:
                filled, avail = veg_io.fill_before_record(opener(files[key][0], plausibility=self.plausibility),
                                                          self.times)
                extra[key], extra[f"{key}_available"] = filled, avail
        if "landcover" in files:
            lc = veg_io.landcover_to_monthly(veg_io.open_landcover(files["landcover"][0], plausibility=self.plausibility), self.times)
            for cls in lc["class"].values:
                extra[f"lc_{cls}"] = lc.sel({"class": cls}, drop=True)
        return extra

    def _lat_chunk(self, files: dict[str, list[Path]]) -> int | None:
        """Latitude rows per dask chunk of the ERA5 files: a band read (about two chunks of every variable over
        one block of months, float32 plus float64 conversions) stays within half of ``spec.memory_gb``; None
        (whole fields) where that holds anyway."""
        with open_nc(files["era5"][0]) as ds:  # content sniffed: a GRIB or web page gets the reader's error
            nlat = next((ds.sizes[n] for n in ("latitude", "lat") if n in ds.sizes), 1)
            nlon = next((ds.sizes[n] for n in ("longitude", "lon") if n in ds.sizes), 1)
        per_row = len(self.spec.variables) * 120 * nlon * 12 * 2  # ~10 years, 12 bytes per value, two chunks
        rows = int(float(self.spec.memory_gb) * 2**30 / 2 // per_row)
        return None if rows >= nlat else max(8, rows)

    def _open_era5(self, files: dict[str, list[Path]]) -> xr.Dataset:
        """ERA5 (lazy) on the months every variable covers; the record is chosen from them afterwards."""
        variables = list(self.spec.variables)
        lat_chunk = self._lat_chunk(files)
        try:
            return era5_io.open_era5(files["era5"], variables, check_nan=False, plausibility=self.plausibility,
                                     lat_chunk=lat_chunk)
        except InputFileError as err:
            if not str(err.expected or "").startswith("the same months as"):
                raise
            # variables on different records? each alone first (a real fault of one is reported as such), then the
            # common months; if they all open, a fault between them is reported by the last call
            cov = [era5_io.open_era5(files["era5"], [v], check_nan=False, plausibility=self.plausibility)["time"].values
                   for v in variables]
            t0, t1 = max(c[0] for c in cov), min(c[-1] for c in cov)
            return era5_io.open_era5(files["era5"], variables, start=pd.Timestamp(t0), end=pd.Timestamp(t1),
                                     check_nan=False, plausibility=self.plausibility, lat_chunk=lat_chunk)

    def _grace_months(self, files: dict[str, list[Path]]) -> dict[str, tuple[pd.DatetimeIndex, Path]]:
        """``{centre: (months its file holds, path)}``. Every centre is read once, in latitude bands (identity,
        values, grid coverage, scale and baseline cross-checks) before any block is computed; :meth:`_targets`
        reads the bands again, so memory follows a band, not the globe."""
        out, spread, used = {}, {}, {}
        self._mascon: dict[str, dict] = {}
        b0, b1 = self.spec.baseline
        for c in self.spec.grace:
            path = files[f"grace_{c}"][0]
            lat, nlon, n_solutions = mascon_io.mascon_grid(path, c)
            # per source row and solution, the longitudes in float64 about 6 times (read, converted, resolved,
            # gain, re-referenced, regridded)
            step = int(min(lat.size, max(4, float(self.spec.memory_gb) * 2**30 / 2 // (n_solutions * nlon * 8 * 6))))
            sub = []
            for k, j0 in enumerate(range(0, lat.size, step)):
                j1 = min(lat.size, j0 + step)
                da = self._open_centre(files, c, lat=(lat[j0], lat[j1 - 1]), checks=k == 0)
                if k == 0:
                    first = da
                # the scale check's subsample: every 2nd row (of the whole file) and column of the baseline months
                x = np.asarray(da.sel(time=slice(b0, b1)).values[:, j0 % 2::2, ::2], np.float32)
                sub.append(x[np.isfinite(x)])
                del da, x
            check_coverage(first, self.grid, [path], f"data.grace.{c}", lat=lat)
            months = pd.DatetimeIndex(first["time"].values)
            out[c] = (months, path)
            sub = np.concatenate(sub) if sub else np.zeros(0, np.float32)
            lo, hi = np.percentile(sub, [5, 95]) if sub.size else (np.nan, np.nan)  # robust, a subsample
            spread[c] = float(hi - lo)
            used[c] = set(first.attrs.get("baseline_months", []))
            self._mascon[c] = {"lat": lat, "nlon": nlon, "months": months, "baseline_months": len(used[c]),
                               "product": first.attrs.get("product", {})}
            del sub, first
        paths = {c: p for c, (_, p) in out.items()}
        if not self.plausibility.skips("lwe_thickness"):  # data.plausibility.skip waives this check too
            check_centre_scales(spread, paths)
        check_centre_baselines(used, paths, (b0, b1))
        return out

    def _open_centre(self, files: dict[str, list[Path]], c: str, *, lat: tuple[float, float] | None = None,
                     checks: bool = True) -> xr.DataArray:
        """lwe_thickness (mm, the file's grid) of centre ``c``, rows in ``lat`` (degrees; default all; with
        ``checks`` the reader's whole-file checks, and without ``lat`` the grid coverage)."""
        path = files[f"grace_{c}"][0]
        gain = files["jpl_gain_factor"][0] if (c == "jpl" and "jpl_gain_factor" in files) else None
        da = mascon_io.open_mascon(path, c, gain_factor=gain, baseline=tuple(self.spec.baseline),
                                   plausibility=self.plausibility, lat=lat, checks=checks)
        if lat is None:
            check_coverage(da, self.grid, [path], f"data.grace.{c}")
        return da

    def build(self, *, force: bool = False, progress: bool = True) -> dict:
        """Write ``predictors.zarr``, ``targets.zarr`` and ``manifest.json``; return the manifest.

        Re-uses an existing cube whose fingerprint (inputs' checksums + spec + grid) matches.
        """
        s, g = self.spec, self.grid
        files = self._input_files()
        check_data_kind(s.kind, files, self.out_dir)
        t0 = _time.perf_counter()
        inputs = {str(f): sha256_path(f) for group in files.values() for f in group}
        mpath = self.out_dir / "manifest.json"
        if not force and mpath.exists():
            old = json.loads(mpath.read_text())
            # the fingerprint holds the resolved periods: same inputs and keys -> the same periods as last time
            last = as_last_time(s, old.get("periods"))
            if (last is not None and old.get("fingerprint") == _fingerprint(last, g, inputs)
                    and (self.out_dir / "predictors.zarr").exists()):
                LOGGER.info("cube %s is up to date with its inputs; re-using it", self.out_dir)
                return old
        LOGGER.info("checksummed %d input files in %.1f s", len(inputs), _time.perf_counter() - t0)

        # Every check that metadata allows runs here, before the first block: grids, centres, periods.
        # NaN/Inf over land is checked per block by CubeWriter, so the reader's own full pass is skipped
        with xr.set_options(file_cache_maxsize=CHECK_OPEN_FILES):
            era5 = self._open_era5(files)
        for v in s.variables:
            check_coverage(era5[v], g, files["era5"], "data.era5_dir")
        spacing = float(np.median(np.abs(np.diff(era5["lat"].values)))) if era5.sizes["lat"] > 1 else g.res
        if spacing > 1.5 * g.res:
            LOGGER.warning("the ERA5 files are on a %g deg grid, coarser than the cube's %g deg: each ERA5 cell is "
                           "spread over several cube cells (no detail at %g deg); download ERA5 at %g deg or finer "
                           "(the CDS request's 'grid'), or build the cube at grid.res=%g", spacing, g.res, g.res,
                           g.res, spacing)
        grace = self._grace_months(files)
        self.periods = resolve_periods(
            start=s.start, end=s.end, stats_period=s.stats_period, baseline=s.baseline, val_months=s.val_months,
            gap_months=s.gap_months, era5_times=pd.DatetimeIndex(era5["time"].values), era5_files=files["era5"],
            grace=grace)
        self.periods.log()
        self.times = self.periods.times
        fp = _fingerprint(resolved_spec(s, self.periods), g, inputs)
        era5 = era5.sel(time=self.times)
        extra = self._open_extra(files)
        for key, da in extra.items():
            if "lat" in da.dims:
                check_coverage(da, g, files[key.split("_")[0]] if key.split("_")[0] in files else
                               files.get("landcover", []), f"data.{key}")
        channels = list(s.variables) + list(extra) + [f"wb_ewma{int(m)}" for m in s.ewma_months]
        channels += ["land_fraction", "sin_lat"]
        units = {v: era5[v].attrs.get("units", "") for v in s.variables}
        units.update({k: v.attrs.get("units", "1") for k, v in extra.items()})
        units.update({f"wb_ewma{int(m)}": "mm day-1" for m in s.ewma_months})
        units.update({"land_fraction": "1", "sin_lat": "1"})
        writer = CubeWriter(self.out_dir, g, self.times, channels, land_fraction=self.landfrac,
                            stats_period=self.periods.stats.strings(), chunk_months=s.chunk_months, chunk_lat=s.chunk_lat,
                            units=units, n_targets=len(s.grace), resume=None if force else fp)
        # the ERA5 files' months, read once: they size the block loop's open files and are recorded after it
        era5_months = file_index.era5_file_months(files["era5"], self.out_dir, write=False)
        try:
            manifest = self._write(writer, era5, extra, channels, files, fp, inputs, progress, era5_months)
        except BaseException:
            writer.abort()  # the previous cube (if any) stays as it was
            raise
        # the index the monthly update picks its files with: the ERA5 files' months and the mascon files'
        file_index.record({**era5_months, **{path: months for months, path in grace.values()}}, self.out_dir)
        return manifest

    def _write(self, writer, era5, extra, channels, files, fp, inputs, progress, era5_months) -> dict:
        s, g = self.spec, self.grid
        nt, start = len(self.times), writer.resumed_months
        if start:  # resumed: the memories at the month before, as the interrupted build wrote them (float32)
            ewma = writer.read_months(start - 1, [channels.index(f"wb_ewma{int(m)}") for m in s.ewma_months])
        else:  # per-cell state, across blocks
            ewma = np.full((len(s.ewma_months), *g.shape), np.nan, dtype=np.float32)
        step, rows = self._block_shape(era5, len(channels))
        bands = self.bands(rows)
        open_files = self.block_open_files(files, step, era5_months)
        LOGGER.info("predictor cube in %d latitude band(s) of %d rows x blocks of %d months (ingest.memory_gb=%g; "
                    "at most %d files open)", len(bands), rows, step, s.memory_gb, open_files)
        bar = tqdm(total=-(-(nt - start) // step) * len(bands), desc="predictor cube", unit="block",
                   disable=not progress)
        # a block's files stay open across its bands (their chunk caches serve every band), no more than those
        # reads in the calling thread: the netCDF4 backend holds one lock over every HDF5 read, so the threaded
        # scheduler only adds hand-offs (measured: most of a small band's time)
        with xr.set_options(file_cache_maxsize=open_files), dask.config.set(scheduler="synchronous"):
            for i0 in range(start, nt, step):
                i1 = min(nt, i0 + step)
                for r0, r1 in bands:
                    state = ewma[:, r0:r1]
                    if i0 == 0:  # spin-up: start from the mean of the first SPINUP_MONTHS, whatever the block size
                        state[:] = np.nanmean(self._water_balance(era5, min(nt, SPINUP_MONTHS), r0, r1), axis=0)[None]
                    writer.write_block(i0, self.predictor_band(era5, extra, self.times[i0:i1], (r0, r1), state),
                                       rows=(r0, r1))
                    bar.update()
                writer.checkpoint(i1)  # a rerun of this build resumes after this block
        bar.close()
        release_memory()  # the band loop's freed heap back to the OS before the targets' bands
        info = self._targets(files, writer)
        prelim = [m for m in era5.attrs.get("era5t_months", []) if f"{self.times[0]:%Y-%m}" <= m <= f"{self.times[-1]:%Y-%m}"]
        manifest = writer.finish(fingerprint=fp, targets=info, baseline=list(s.baseline), inputs=inputs,
                                 periods=self.periods.to_manifest(), plausibility=self.plausibility.record(),
                                 era5t_months=prelim, era5_source=era5_signature(era5, s.variables), data_kind=s.kind)
        LOGGER.info("cube written to %s (%d channels, %d months)", self.out_dir, len(channels), nt)
        return manifest

    def bands(self, rows: int) -> list[tuple[int, int]]:
        """Latitude bands ``(r0, r1)`` of ``rows`` rows covering the grid."""
        return [(r0, min(self.grid.nlat, r0 + rows)) for r0 in range(0, self.grid.nlat, rows)]

    def predictor_band(self, era5: xr.Dataset, extra: Mapping[str, xr.DataArray], tsel: pd.DatetimeIndex,
                       rows: tuple[int, int], state: np.ndarray) -> np.ndarray:
        """The predictors of months ``tsel`` on latitude rows ``rows``: (time, channel, rows, lon) float32 in the
        channel order of the cube; ``state`` (memory, rows, lon) float32, the causal EWMA memories of P + E at
        the month before ``tsel[0]``, is advanced in place (the same arithmetic in a build and an update)."""
        s, g = self.spec, self.grid
        r0, r1 = rows
        n = len(tsel)
        met = regrid_conservative(_source_rows(era5[list(s.variables)].sel(time=tsel), g, r0, r1).load(),
                                  g.rows(r0, r1))
        fields = [met[v].transpose("time", "lat", "lon").values.astype(np.float32) for v in s.variables]
        del met
        fields += [self._regrid(da.sel(time=tsel), r0, r1) for da in extra.values()]
        # antecedent water balance P + E (ERA5's E < 0 when evaporating), mm/day, causal EWMA
        wb = fields[list(s.variables).index("tp")] + fields[list(s.variables).index("e")]
        alphas = [1.0 - np.exp(-1.0 / m) for m in s.ewma_months]
        mem = np.empty((len(alphas), n, r1 - r0, g.nlon), dtype=np.float32)
        for t in range(n):
            for j, a in enumerate(alphas):
                state[j] += a * (wb[t] - state[j])
                mem[j, t] = state[j]
        fields += list(mem)
        sin_lat = np.sin(np.deg2rad(g.lat)).astype(np.float32)
        fields += [np.broadcast_to(self.landfrac[r0:r1], (n, r1 - r0, g.nlon)),
                   np.broadcast_to(sin_lat[r0:r1, None], (n, r1 - r0, g.nlon))]
        return np.stack(fields, axis=1)

    def _water_balance(self, era5: xr.Dataset, n: int, r0: int, r1: int) -> np.ndarray:
        """P + E (mm/day) of the first ``n`` months on rows ``r0 .. r1``, (n, rows, lon) float32."""
        met = regrid_conservative(_source_rows(era5[["tp", "e"]].isel(time=slice(0, n)), self.grid, r0, r1).load(),
                                  self.grid.rows(r0, r1))
        return (met["tp"].transpose("time", "lat", "lon").values.astype(np.float32)
                + met["e"].transpose("time", "lat", "lon").values.astype(np.float32))

    def _block_shape(self, era5: xr.Dataset, n_channels: int) -> tuple[int, int]:
        """(months per block, latitude rows per band) that keep one block inside ``spec.memory_gb``.

        Per month and target row: the float32 block (channels x lon) plus the source rows read for it, each
        variable held about 4 times in float64 while regridding (values, validity, numerator, denominator).
        Per month of the block, once: every variable's whole source field, decompressed in the open files' chunk
        caches (the files store whole fields per chunk, so the bands of a block read them from the cache); the
        block is at most a third of the budget in that cache."""
        s, g = self.spec, self.grid
        src_rows = max(1.0, era5.sizes["lat"] / g.nlat) + 2.0 / max(1, g.nlat)  # + the band's edge rows
        per = n_channels * g.nlon * 4 * 3 + len(s.variables) * src_rows * era5.sizes["lon"] * 8 * 4
        cached = len(s.variables) * era5.sizes["lat"] * era5.sizes["lon"] * 4  # bytes per month, chunk caches
        budget = float(s.memory_gb) * 2**30
        step = s.chunk_months * max(1, 120 // s.chunk_months)  # ~10 years per read
        while step > s.chunk_months and (step * s.chunk_lat * per > budget or step * cached > budget / 3):
            step -= s.chunk_months
        rows = int(max(0.0, budget - step * cached) // (step * per)) // s.chunk_lat * s.chunk_lat
        return step, int(min(g.nlat, max(s.chunk_lat, rows)))

    def block_open_files(self, files: Mapping[str, Sequence[Path]], step: int,
                         months: Mapping[Path, pd.DatetimeIndex]) -> int:
        """Files to keep open during the block loop: the most ERA5 files one block of ``step`` months reads
        (``months``: each ERA5 file's months), every other predictor file, and one for the next block's first file."""
        touched = 1
        for i0 in range(0, len(self.times), step):
            block = self.times[i0:i0 + step]
            touched = max(touched, sum(bool(len(block.intersection(m))) for m in months.values()))
        others = sum(len(v) for k, v in files.items() if k != "era5" and not k.startswith("grace_"))
        return touched + others + 1

    def _regrid(self, da: xr.DataArray, r0: int, r1: int) -> np.ndarray:
        """``da`` (time, ...) on latitude rows ``r0 .. r1`` of the grid, float32 (time, rows, lon)."""
        shape = (da.sizes["time"], r1 - r0, self.grid.nlon)
        if "lat" not in da.dims:  # a time series (e.g. an availability flag): same value everywhere
            return np.broadcast_to(da.values.astype(np.float32)[:, None, None], shape)
        out = regrid_conservative(_source_rows(da, self.grid, r0, r1).load(), self.grid.rows(r0, r1))
        return out.transpose("time", "lat", "lon").values.astype(np.float32, copy=False)

    def _targets(self, files, writer: CubeWriter) -> dict:
        """Regrid each centre band by band into the writer's target store (each band read from the file with the
        source rows its regridding needs); returns the manifest's ``targets``."""
        centres = list(self.spec.grace)
        writer.begin_targets(centres, baseline=self.spec.baseline)
        info = {}
        for k, c in enumerate(centres):
            path, scan = files[f"grace_{c}"][0], self._mascon[c]
            common = self.times.intersection(scan["months"])
            if len(common) == 0:
                raise InputFileError(f"{path}: variable lwe_thickness has no month inside "
                                     f"{self.times[0]:%Y-%m}..{self.times[-1]:%Y-%m}")
            where = self.times.get_indexer(common)
            for r0, r1 in self.target_bands(scan["lat"], scan["nlon"]):
                j0, j1 = _source_slice(scan["lat"], self.grid, r0, r1)
                da = self._open_centre(files, c, lat=(scan["lat"][j0], scan["lat"][j1 - 1]), checks=False)
                band = np.full((len(self.times), r1 - r0, self.grid.nlon), np.nan, dtype=np.float32)
                band[where] = self._regrid(da.sel(time=common), r0, r1)
                writer.write_target_rows(k, (r0, r1), band)
                del da, band
            info[c] = {"file": str(path), "months": len(common),
                       "first": f"{common[0]:%Y-%m}", "last": f"{common[-1]:%Y-%m}",
                       "product": scan["product"],  # the release, as its file names it
                       "baseline_months": scan["baseline_months"]}
        return info

    def target_bands(self, src_lat: np.ndarray, src_nlon: int) -> list[tuple[int, int]]:
        """Latitude bands of the grid for a centre's targets, every month of the record at once, within
        ``spec.memory_gb``: per grid row, its source rows (latitudes ``src_lat``, ``src_nlon`` longitudes) about
        6 times in float64 (read, converted, resolved, gain, re-referenced, regridded), the band twice in float32."""
        g, nt = self.grid, len(self.times)
        dlat = float(np.median(np.diff(src_lat))) if src_lat.size > 1 else 180.0
        per_row = nt * (max(1.0, g.res / dlat) * src_nlon * 8 * 6 + g.nlon * 4 * 2)
        rows = int(float(self.spec.memory_gb) * 2**30 / 2 // per_row) // self.spec.chunk_lat * self.spec.chunk_lat
        return self.bands(int(min(g.nlat, max(self.spec.chunk_lat, rows))))


def era5_signature(era5: xr.Dataset, variables: Sequence[str]) -> dict:
    """What a continuation of the record must share with it: the ERA5 grid (canonical, cell centres) and the
    units each variable had in its files (``cube manifest["era5_source"]``, checked by an update)."""
    lat, lon = np.asarray(era5["lat"].values, float), np.asarray(era5["lon"].values, float)
    return {"grid": {"nlat": int(lat.size), "nlon": int(lon.size), "lat": [float(lat[0]), float(lat[-1])],
                     "lon": [float(lon[0]), float(lon[-1])]},
            "units_in_file": {v: str(era5[v].attrs.get("units_in_file", "")) for v in variables}}


def _source_rows(obj: xr.DataArray | xr.Dataset, grid: Grid, r0: int, r1: int):
    """The latitude rows of a canonical source (lat ascending) that overlap rows ``r0 .. r1`` of ``grid``, plus
    two rows either side (so the edge cells' inferred bounds are those of the whole source grid)."""
    lat = np.asarray(obj["lat"].values, dtype=np.float64)
    if lat.size < 2:
        return obj
    j0, j1 = _source_slice(lat, grid, r0, r1)
    return obj.isel(lat=slice(j0, j1))


def _source_slice(lat: np.ndarray, grid: Grid, r0: int, r1: int) -> tuple[int, int]:
    """``(j0, j1)``: the rows of source latitudes ``lat`` (ascending) :func:`_source_rows` selects."""
    if lat.size < 2:
        return 0, lat.size
    lo, hi = grid.lat_bounds[r0, 0], grid.lat_bounds[r1 - 1, 1]
    inside = np.flatnonzero((lat >= lo) & (lat <= hi))
    j0 = int(np.searchsorted(lat, lo)) if inside.size == 0 else int(inside[0])
    j1 = int(np.searchsorted(lat, hi)) if inside.size == 0 else int(inside[-1]) + 1
    j0, j1 = max(0, j0 - 2), min(lat.size, j1 + 2)
    if j1 - j0 < 2:
        j0, j1 = max(0, j1 - 2), min(lat.size, j0 + 2)
    return j0, j1


def check_coverage(da: xr.DataArray, grid: Grid, files, config_key: str, *, lat: np.ndarray | None = None,
                   lon: np.ndarray | None = None) -> None:
    """Refuse an input whose lat/lon extent does not cover the grid's domain (canonical ``da``, cell centres;
    ``lat``/``lon``: the whole file's, when ``da`` is a band of it).

    Without it, a regional download that misses ``grid.bbox`` only shows up later as NaN predictors over land.
    """
    lat = np.asarray(da["lat"].values if lat is None else lat, float)
    lon = np.asarray(da["lon"].values if lon is None else lon, float)
    if lat.size == 0 or lon.size == 0:
        raise InputFileError(f"{_files(files)}: variable {da.name!r}: no lat/lon cells ({config_key})",
                             paths=files, variable=str(da.name))
    dlat = float(np.median(np.diff(lat))) if lat.size > 1 else 180.0
    dlon = float(np.median(np.diff(lon))) if lon.size > 1 else 360.0
    have_lat = (max(-90.0, lat.min() - dlat / 2), min(90.0, lat.max() + dlat / 2))
    glob_lon = lon.max() - lon.min() + dlon >= 360 - 1e-6
    have_lon = (-180.0, 180.0) if glob_lon else (lon.min() - dlon / 2, lon.max() + dlon / 2)
    lon0, lon1, lat0, lat1 = grid.bounds
    tol = 1e-6
    if have_lon[0] > lon0 + tol or have_lon[1] < lon1 - tol or have_lat[0] > lat0 + tol or have_lat[1] < lat1 - tol:
        raise InputFileError(
            f"{_files(files)}: variable {da.name!r}: expected coverage of the grid domain lon {lon0:g}..{lon1:g}, "
            f"lat {lat0:g}..{lat1:g} (grid.bbox); found coverage lon {have_lon[0]:g}..{have_lon[1]:g}, "
            f"lat {have_lat[0]:g}..{have_lat[1]:g}. Download {config_key} for the grid.bbox area or set grid.bbox "
            "inside the data",
            paths=[str(f) for f in files], variable=str(da.name),
            expected=f"lon {lon0:g}..{lon1:g}, lat {lat0:g}..{lat1:g}",
            found=f"lon {have_lon[0]:g}..{have_lon[1]:g}, lat {have_lat[0]:g}..{have_lat[1]:g}",
        )


def _files(files) -> str:
    return describe_files([str(f) for f in files])
