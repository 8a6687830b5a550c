"""Write a cube's stores: the predictor/target Zarr layout, running statistics, and the manifest that seals it.

:class:`CubeWriter` is the one writer of the layout that :func:`gtws_dl.cube.store.open_cube` reads; the builder
(:mod:`gtws_dl.cube.build`) feeds it regridded time blocks, tests feed it synthetic arrays.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from gtws_dl import __version__
from gtws_dl.cube.shift import CellMoments, summarize
from gtws_dl.cube.store import CUBE_FORMAT_VERSION, lazy_nan
from gtws_dl.diskspace import check_free_space, check_writable, disk_full_is_an_error, float32_bytes
from gtws_dl.grid import Grid
from gtws_dl.io.errors import InputFileError
from gtws_dl.lock import remove_stale_temps, remove_tree, write_text_atomic

LOGGER = logging.getLogger(__name__)

# an interrupted build's predictors and what of them is written: the next build of the same fingerprint resumes there
PARTIAL = "predictors.zarr.partial"
PARTIAL_PROGRESS = "predictors.zarr.partial.json"
PARTIAL_SHIFT = "predictors.zarr.partial.shift.npy"  # the resumable per-cell moments (gtws_dl.cube.shift)


class _RunningStats:
    """Per-channel mean/std over land cells and training months (float64 accumulators)."""

    def __init__(self, n: int) -> None:
        self.n = np.zeros(n)
        self.s = np.zeros(n)
        self.ss = np.zeros(n)

    def add(self, block: np.ndarray, land: np.ndarray) -> None:  # block (time, channel, lat, lon)
        x = block[:, :, land].astype(np.float64)  # (time, channel, cells)
        ok = np.isfinite(x)
        x = np.where(ok, x, 0.0)
        self.n += ok.sum(axis=(0, 2))
        self.s += x.sum(axis=(0, 2))
        self.ss += (x * x).sum(axis=(0, 2))

    def state(self) -> dict:
        return {"n": self.n.tolist(), "s": self.s.tolist(), "ss": self.ss.tolist()}

    def restore(self, state: Mapping[str, Sequence[float]]) -> None:
        self.n, self.s, self.ss = (np.asarray(state[k], dtype=np.float64) for k in ("n", "s", "ss"))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        n = np.maximum(self.n, 1)
        mean = self.s / n
        std = np.sqrt(np.maximum(self.ss / n - mean**2, 0.0))
        return mean, np.where(std > 1e-12, std, 1.0)


def _compressors():
    """zstd level 3 with byte shuffle: smaller and about twice as fast as bit shuffle on float32 fields
    (measured by ``python -m bench.chunks``, see BENCHMARKS.md)."""
    return [zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")]


class CubeWriter:
    """Writes a cube block by block: predictors, then targets, then the manifest (last, atomically).

    Used by :class:`CubeBuilder` and directly by tests and benchmarks with synthetic arrays.

    ``resume``: the build's fingerprint. The predictors are then written into ``predictors.zarr.partial`` and
    :meth:`checkpoint` records the months written so far with the running statistics; a writer of the same
    fingerprint (a rerun after a kill, a crash or an interrupt) continues from there (:attr:`resumed_months`),
    any other discards it.
    """

    def __init__(self, out_dir: str | Path, grid: Grid, times: pd.DatetimeIndex, channels: Sequence[str], *,
                 land_fraction: np.ndarray, stats_period: tuple[str, str], chunk_months: int = 12,
                 chunk_lat: int = 15, units: Mapping[str, str] | None = None, n_targets: int = 3,
                 resume: str | None = None) -> None:
        self.out_dir, self.grid, self.times = Path(out_dir), grid, pd.DatetimeIndex(times)
        self.channels, self.chunk_months = list(channels), int(chunk_months)
        if int(chunk_lat) < 1:
            raise ValueError(f"chunk_lat={chunk_lat}: expected a positive number of latitude rows per chunk")
        self.chunk_lat = min(int(chunk_lat), grid.shape[0])
        self.landfrac = np.asarray(land_fraction, dtype=np.float32)
        self.land = self.landfrac >= 0.5
        self.stats_period = tuple(stats_period)
        self.units = dict(units or {})
        self.stats = _RunningStats(len(self.channels))
        self.shift = CellMoments(self.land, len(self.channels), self.stats_period)  # pre-period vs stats period
        nt, nc, g = len(self.times), len(self.channels), grid
        self.resume_key = resume
        self._progress = self.out_dir / PARTIAL_PROGRESS
        # refuse before touching anything: the existing cube (if any) stays valid until finish() swaps it
        check_writable(self.out_dir, what="cube directory", config_key="paths.cube_dir")
        self.resumed_months = self._resumable(nt) if resume is not None else 0
        need = float32_bytes(nt - self.resumed_months, nc, *g.shape) + float32_bytes(n_targets, nt, *g.shape)
        check_free_space(self.out_dir, need, what=f"cube {self.out_dir} ({nt} months x {nc} channels, {g})",
                         config_key="paths.cube_dir")
        self._created_dir = not self.out_dir.exists()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.out_dir)
        self._tmp = self.out_dir / (PARTIAL if resume is not None else f"predictors.zarr.tmp-{os.getpid()}")
        self._tmp_targets = self.out_dir / f"targets.zarr.tmp-{os.getpid()}"
        self._written = np.zeros((nt, g.shape[0]), dtype=bool)  # (month, latitude row)
        self._targets_written: np.ndarray | None = None
        if self.resumed_months:
            self._arr = zarr.open_group(self._tmp, mode="r+")["predictors"]
            self._written[:self.resumed_months] = True
            LOGGER.info("resuming the interrupted build in %s: %d of %d months already written", self._tmp,
                        self.resumed_months, nt)
            return
        # nothing to resume: an earlier build's partial predictors (another fingerprint) make way
        self._drop_progress()
        shutil.rmtree(self.out_dir / PARTIAL, ignore_errors=True)
        shutil.rmtree(self._tmp, ignore_errors=True)
        chunks = (self.chunk_months, nc, self.chunk_lat, g.shape[1])  # time, channel, lat rows, whole longitudes
        template = xr.Dataset(
            {
                "predictors": (("time", "channel", "lat", "lon"),
                               lazy_nan((nt, nc, *g.shape), chunks)),
                "land_mask": (("lat", "lon"), self.land),
                "land_fraction": (("lat", "lon"), self.landfrac),
                "cell_area": (("lat", "lon"), g.cell_area(), {"units": "m2"}),
            },
            coords={**_coords(g, self.times), "channel": np.array(self.channels, dtype=object)},
            attrs={"cube_format_version": CUBE_FORMAT_VERSION, "code_version": __version__},
        )
        enc = {"predictors": {"chunks": chunks, "compressors": _compressors()}}
        template.to_zarr(self._tmp, mode="w", compute=False, consolidated=False, encoding=enc, zarr_format=3)
        xr.Dataset({k: template[k] for k in ("land_mask", "land_fraction", "cell_area")}).to_zarr(
            self._tmp, mode="a", consolidated=False)
        self._arr = zarr.open_group(self._tmp, mode="r+")["predictors"]

    def _resumable(self, nt: int) -> int:
        """Months of ``predictors.zarr.partial`` written by a build of this fingerprint and layout (0: none);
        restores the running statistics they added."""
        try:
            rec = json.loads(self._progress.read_text())
            arr = zarr.open_group(self.out_dir / PARTIAL, mode="r")["predictors"]
        except (OSError, ValueError, KeyError):  # none, or unreadable: start afresh
            return 0
        same = (rec.get("fingerprint") == self.resume_key and rec.get("channels") == self.channels
                and rec.get("times") == [f"{self.times[0]:%Y-%m}", f"{self.times[-1]:%Y-%m}", nt]
                and list(arr.shape) == [nt, len(self.channels), *self.grid.shape]
                and list(arr.chunks) == [self.chunk_months, len(self.channels), self.chunk_lat, self.grid.shape[1]])
        months = int(rec.get("months", 0))
        if not same or not 0 < months <= nt or not self.shift.restore(self.out_dir / PARTIAL_SHIFT):
            return 0
        self.stats.restore(rec["stats"])
        return months

    def _drop_progress(self) -> None:
        """Forget the partial build's records (months done + statistics, and the per-cell shift moments)."""
        self._progress.unlink(missing_ok=True)
        (self.out_dir / PARTIAL_SHIFT).unlink(missing_ok=True)

    def checkpoint(self, months: int) -> None:
        """Record that every latitude row of months ``0 .. months`` is written (with the running statistics), so
        that a rerun of the same build resumes after them; only with ``resume``."""
        if self.resume_key is None:
            return
        if not self._written[:months].all():
            raise RuntimeError(f"checkpoint at {months} months, but not every row of them is written")
        self.shift.save(self.out_dir / PARTIAL_SHIFT)  # before the record that makes it count
        write_text_atomic(self._progress, json.dumps({
            "fingerprint": self.resume_key, "months": int(months), "channels": self.channels,
            "times": [f"{self.times[0]:%Y-%m}", f"{self.times[-1]:%Y-%m}", len(self.times)],
            "stats": self.stats.state()}))

    def read_months(self, i: int, channels: Sequence[int]) -> np.ndarray:
        """The written predictors of month ``i``, channels ``channels``: (channel, lat, lon) float32."""
        return np.asarray(self._arr[i, list(channels)], dtype=np.float32)

    def write_block(self, i0: int, block: np.ndarray, rows: tuple[int, int] | None = None) -> None:
        """Predictor values for months ``i0 .. i0 + len(block)``: (time, channel, lat, lon), physical units.

        ``rows``: the latitude rows ``(r0, r1)`` the block covers (a band; all longitudes); default all rows.
        Bands whose ``r0`` is a multiple of ``chunk_lat`` write whole chunks."""
        i1 = i0 + block.shape[0]
        r0, r1 = rows if rows is not None else (0, self.grid.shape[0])
        if block.shape[2] != r1 - r0:
            raise ValueError(f"block has {block.shape[2]} latitude rows for rows {r0}..{r1}")
        tsel = self.times[i0:i1]
        land = self.land[r0:r1]
        try:
            check_land_finite(block, land, self.channels, tsel, self.grid)
        except InputFileError:
            self.abort()  # the previous cube (if any) is left as it was
            raise
        lo, hi = (pd.Timestamp(p) for p in self.stats_period)
        in_stats = (tsel >= lo) & (tsel <= hi)
        if in_stats.any():
            self.stats.add(block[in_stats], land)
        self.shift.add(block, tsel, r0)
        with disk_full_is_an_error(self._tmp, what="cube", config_key="paths.cube_dir"):
            self._arr[i0:i1, :, r0:r1] = block.astype(np.float32, copy=False)
        self._written[i0:i1, r0:r1] = True

    def begin_targets(self, centres: Sequence[str], *, baseline: Sequence[str]) -> None:
        """Create the empty target store (target, time, lat, lon), filled by :meth:`write_target_rows`."""
        g = self.grid
        self.centres = list(centres)
        chunks = (1, self.chunk_months, self.chunk_lat, g.shape[1])
        ds = xr.Dataset(
            {"twsa": (("target", "time", "lat", "lon"), lazy_nan((len(self.centres), len(self.times), *g.shape), chunks),
                      {"units": "mm", "long_name": "GRACE/GRACE-FO TWSA on the model grid"})},
            coords={**_coords(g, self.times), "target": np.array(self.centres, dtype=object)},
            attrs={"cube_format_version": CUBE_FORMAT_VERSION, "baseline": list(baseline)},
        )
        enc = {"twsa": {"chunks": chunks, "compressors": _compressors()}}
        with disk_full_is_an_error(self._tmp_targets, what="cube targets", config_key="paths.cube_dir"):
            ds.to_zarr(self._tmp_targets, mode="w", compute=False, consolidated=False, encoding=enc, zarr_format=3)
        self._tarr = zarr.open_group(self._tmp_targets, mode="r+")["twsa"]
        self._targets_written = np.zeros((len(self.centres), g.shape[0]), dtype=bool)

    def write_target_rows(self, k: int, rows: tuple[int, int], twsa: np.ndarray) -> None:
        """Centre ``k``'s targets (time, rows, lon) in mm for latitude rows ``rows``, every month of the record;
        NaN = no solution; ocean is masked here."""
        r0, r1 = rows
        band = np.asarray(twsa, dtype=np.float32).copy()
        band[:, ~self.land[r0:r1]] = np.nan
        with disk_full_is_an_error(self._tmp_targets, what="cube targets", config_key="paths.cube_dir"):
            self._tarr[k, :, r0:r1] = band
        self._targets_written[k, r0:r1] = True

    def write_targets(self, centres: Sequence[str], twsa: np.ndarray, *, baseline: Sequence[str]) -> None:
        """All targets at once (target, time, lat, lon) in mm: :meth:`begin_targets` + :meth:`write_target_rows`."""
        self.begin_targets(centres, baseline=baseline)
        for k in range(len(self.centres)):
            self.write_target_rows(k, (0, self.grid.shape[0]), twsa[k])

    def abort(self) -> None:
        """Drop the temp stores; the cube directory is left as it was before this writer (with ``resume``, the
        checkpointed partial predictors are kept for the rerun)."""
        if self.resume_key is not None and self._progress.exists():
            LOGGER.warning("the build stopped; the predictors written so far are kept in %s (rerun the same ingest "
                           "to resume, or delete it)", self._tmp)
        else:
            remove_tree(self._tmp)  # after a failure zarr may still be writing chunks into them
        remove_tree(self._tmp_targets)
        if self._created_dir and self.out_dir.is_dir() and not any(self.out_dir.iterdir()):
            self.out_dir.rmdir()

    def finish(self, **manifest_extra) -> dict:
        """Move the predictors into place and write ``manifest.json`` (last); returns the manifest."""
        if not self._written.all():
            t, r = np.argwhere(~self._written)[0]
            raise RuntimeError(f"cube in {self.out_dir} is incomplete: month {self.times[t]:%Y-%m}, latitude row "
                               f"{r} was never written")
        if self._targets_written is None or not self._tmp_targets.exists():
            raise RuntimeError(f"cube in {self.out_dir} has no targets.zarr; call write_targets first")
        if not self._targets_written.all():
            k, r = np.argwhere(~self._targets_written)[0]
            raise RuntimeError(f"cube in {self.out_dir}: targets of {self.centres[k]}, latitude row {r} never written")
        if self.stats.n.min() == 0:
            self._drop_progress()
            self.abort()
            raise InputFileError(f"no predictor months inside the statistics period {self.stats_period}; "
                                 "set data.stats_period inside data.start..data.end")
        mean, std = self.stats.result()
        # swap: no manifest while the stores change, so a crash here leaves a cube that open_cube refuses
        (self.out_dir / "manifest.json").unlink(missing_ok=True)
        for tmp, name in ((self._tmp, "predictors.zarr"), (self._tmp_targets, "targets.zarr")):
            path = self.out_dir / name
            if path.exists():  # a directory cannot be os.replace'd over a non-empty one
                old = self.out_dir / f"{name}.old-{os.getpid()}"
                os.replace(path, old)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, path)
        self._drop_progress()
        shift = summarize(self.shift, self.channels, self.times[0], std)
        manifest = {
            "format": "gtws-dl cube",
            "cube_format_version": CUBE_FORMAT_VERSION,
            "code_version": __version__,
            "created": pd.Timestamp.now(tz="UTC").isoformat(),
            "grid": {"res": self.grid.res, "bbox": list(self.grid.bounds), "shape": list(self.grid.shape)},
            "time": {"start": f"{self.times[0]:%Y-%m}", "end": f"{self.times[-1]:%Y-%m}", "n": len(self.times)},
            "channels": self.channels,
            "units": self.units,
            "stats": {"period": list(self.stats_period), "mean": mean.tolist(), "std": std.tolist()},
            "chunk_months": self.chunk_months,
            "chunk_lat": self.chunk_lat,
            **({"predictor_shift": shift} if shift else {}),
            "fingerprint": "",
            **manifest_extra,
        }
        mpath = self.out_dir / "manifest.json"
        tmp = mpath.with_name(f"manifest.json.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(manifest, indent=1, default=str))
        os.replace(tmp, mpath)
        return manifest


def check_land_finite(block: np.ndarray, land: np.ndarray, channels: Sequence[str], tsel: pd.DatetimeIndex,
                      grid: Grid) -> None:
    """Refuse (:class:`InputFileError` naming the predictor and month) a block (time, channel, rows, lon) with
    NaN/Inf over the land cells ``land`` (rows, lon) of its rows."""
    bad = ~np.isfinite(block[:, :, land])
    if bad.any():
        ti, ci = np.nonzero(bad.any(axis=2))
        raise InputFileError(
            f"predictor {channels[ci[0]]!r} has NaN/Inf over land in {tsel[ti[0]]:%Y-%m} "
            f"({int(bad.sum())} values in this block) on the {grid} grid (grid.res={grid.res:g} "
            f"grid.bbox={list(grid.bbox) if grid.bbox else None}); inputs must cover every land cell: "
            "check that grid.res/grid.bbox are those meant for these files, the input files' coverage of "
            "grid.bbox and that no month is missing",
            variable=channels[ci[0]],
        )


def _coords(grid: Grid, times: pd.DatetimeIndex) -> dict:
    return {"time": times, "lat": ("lat", grid.lat, {"units": "degrees_north"}),
            "lon": ("lon", grid.lon, {"units": "degrees_east"})}


