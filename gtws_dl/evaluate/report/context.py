"""The one context every report section reads: products, cube (grid, land, GRACE, predictors), truth — loaded once.

Grid, land mask and month axis of the inputs come from the cube (``manifest.json``, ``predictors.zarr``); the
products, the GRACE targets and the twin truth must lie on that grid (they do when one run made them: the report
compares, it does not regrid). Without a cube the products' own stored grid is used and every part that needs the
cube is skipped with the reason. ERA5 fields (``tp``, ``e``, ``skt``) are read from the cube's predictor channels,
raw physical values in canonical units (:mod:`gtws_dl.cube.build`), lazily: each section reduces what it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from omegaconf import DictConfig
from tqdm.auto import tqdm

from gtws_dl.cube.store import CubeError, cube_member, open_cube
from gtws_dl.grid import Grid
from gtws_dl.post.products import read_product
from gtws_dl.post.publish import product_name
from gtws_dl.post.regions import EVALUATION_REGIONS, region_masks
from gtws_dl.post.series import regional_series
from gtws_dl.seasonal import decimal_year, decompose, month_starts

LOGGER = logging.getLogger(__name__)
LAND_EXCL = "global_land_excl_greenland_antarctica"
COLOURS = {"jpl": "tab:blue", "csr": "tab:orange", "gsfc": "tab:green"}
PRETTY = {"global_land": "global land", LAND_EXCL: EVALUATION_REGIONS["land"]}
# canonical units of the predictor channels the report reads (gtws_dl.io.era5_variables.VARIABLES, kept by the cube)
PREDICTOR_UNITS = {"tp": "mm day-1", "e": "mm day-1", "skt": "K"}


class Skip(Exception):
    """A section cannot run because an input is absent; the message says which."""


class GridMismatch(ValueError):
    """A field that is not on the report's (the cube's) grid."""


def pretty(name: str) -> str:
    return PRETTY.get(name, name.replace("_", " ").title())


def in_period(times: pd.DatetimeIndex, period) -> np.ndarray:
    return np.asarray((times >= pd.Timestamp(period[0])) & (times <= pd.Timestamp(period[1])))


def rebase(series: pd.Series, baseline: tuple[str, str]) -> pd.Series:
    """Series minus its mean over the baseline months (over its whole record if it has none there)."""
    b = series[in_period(series.index, baseline)]
    ref = b.mean() if b.notna().any() else series.mean()
    return series - ref


def on_same_grid(da: xr.DataArray, grid: Grid) -> bool:
    return (da.sizes.get("lat") == grid.nlat and da.sizes.get("lon") == grid.nlon
            and np.allclose(da["lat"].values, grid.lat, atol=1e-4) and np.allclose(da["lon"].values, grid.lon, atol=1e-4))


def read_months(da: xr.DataArray, grid: Grid, times: pd.DatetimeIndex, *, chunk: int = 120, desc: str = "",
                remap: Callable[[xr.DataArray], xr.DataArray] | None = None) -> np.ndarray:
    """``da`` (time, lat, lon) on the months ``times`` as float32 (time, nlat, nlon); NaN where a month is absent.

    Read ``chunk`` months at a time. ``da`` must be on ``grid`` (:class:`GridMismatch` otherwise) unless
    ``remap`` brings each block onto it.
    """
    da = da.transpose("time", "lat", "lon")
    if remap is None and not on_same_grid(da, grid):
        raise GridMismatch(f"{da.name or 'field'} is on a {da.sizes['lat']}x{da.sizes['lon']} grid "
                           f"(lat {float(da.lat[0]):g}.., lon {float(da.lon[0]):g}..), not on the cube grid {grid}")
    pos = times.get_indexer(month_starts(da["time"].values))
    keep = np.flatnonzero(pos >= 0)
    out = np.full((len(times),) + grid.shape, np.nan, np.float32)
    starts = range(0, len(keep), chunk)
    for i0 in tqdm(starts, desc=desc or f"reading {da.name}", disable=len(starts) < 3, leave=False):
        sel = keep[i0:i0 + chunk]
        blk = da.isel(time=sel)
        out[pos[sel]] = np.asarray((remap(blk) if remap else blk).values, np.float32)
    return out


def product_grid(ds: xr.Dataset) -> Grid:
    """The :class:`Grid` a product stores (``geospatial_*`` bounds, cell size from ``lat_bnds``)."""
    a = ds.attrs
    res = float(np.round(ds["lat_bnds"].values[0, 1] - ds["lat_bnds"].values[0, 0], 6))
    bbox = tuple(float(a[f"geospatial_{k}"]) for k in ("lon_min", "lon_max", "lat_min", "lat_max"))
    return Grid(res, None if np.allclose(bbox, (-180, 180, -90, 90)) else bbox)


def cube_grid(manifest: dict) -> Grid:
    g = manifest["grid"]
    return Grid.from_config(g["res"], None if np.allclose(g["bbox"], (-180, 180, -90, 90)) else g["bbox"])


@dataclass
class Context:
    """Everything the sections share, loaded once by :func:`load_context`."""

    cfg: DictConfig
    out: Path  # directory the figures are written to (the temporary report folder)
    grid: Grid
    grid_source: str  # where the grid came from (cube manifest, else the products)
    times: pd.DatetimeIndex  # month starts of the products
    land: np.ndarray
    area: np.ndarray
    products: dict[str, Path]
    rec: dict[str, np.ndarray] = field(default_factory=dict)  # centre -> (time, nlat, nlon) mm
    grace: dict[str, np.ndarray] = field(default_factory=dict)  # centre -> (time, nlat, nlon) mm, NaN = no month
    truth: np.ndarray | None = None
    truth_runoff: np.ndarray | None = None
    truth_unforced: dict[str, np.ndarray] = field(default_factory=dict)  # twin: depletion, ice (time, nlat, nlon) mm
    predictors: xr.DataArray | None = None  # cube (time, channel, lat, lon), lazy, raw physical values
    predictor_units: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # why optional inputs are absent
    numbers: dict[str, object] = field(default_factory=dict)  # key numbers (report.md + numbers.json)
    figures: list[str] = field(default_factory=list)

    @property
    def rc(self):
        return self.cfg.report

    @property
    def dpi(self) -> int:
        return int(self.rc.dpi)

    @property
    def baseline(self) -> tuple[str, str]:
        return tuple(self.rc.baseline)

    @property
    def chunk(self) -> int:
        return int(self.rc.time_chunk)

    def fig(self, name: str) -> Path:
        self.figures.append(name)
        return self.out / name

    @cached_property
    def masks(self) -> dict[str, np.ndarray]:
        return region_masks(self.grid, self.land)

    def series(self, arr, masks: dict[str, np.ndarray]) -> pd.DataFrame:
        """Regional means (mm) and masses (Gt) of ``arr`` (time, nlat, nlon) on the report months."""
        return regional_series(arr, self.area, masks, times=self.times)

    def predictor(self, name: str) -> xr.DataArray:
        """Cube channel ``name`` (time, lat, lon), lazy, on the cube's months, in :data:`PREDICTOR_UNITS`."""
        if self.predictors is None:
            raise Skip(f"no predictor cube: ERA5 `{name}` is read from the cube's predictors.zarr "
                       f"({self.notes.get('cube', 'absent')})")
        channels = [str(c) for c in self.predictors["channel"].values]
        if name not in channels:
            raise Skip(f"the cube's predictors.zarr has no channel `{name}` (it has {', '.join(channels)})")
        unit = self.predictor_units.get(name)
        if unit and unit != PREDICTOR_UNITS[name]:
            raise Skip(f"cube channel `{name}` is in {unit!r}, expected {PREDICTOR_UNITS[name]!r}")
        return self.predictors.sel(channel=name, drop=True)

    def predictor_series(self, name: str, masks: dict[str, np.ndarray]) -> pd.DataFrame:
        """Regional means of a cube channel, read ``time_chunk`` months at a time, on the report months."""
        s = regional_series(self.predictor(name), self.area, masks, chunk=self.chunk)
        return s.reindex(self.times)

    @cached_property
    def detrended(self) -> dict[str, np.ndarray]:
        """Detrended + deseasonalized product per centre (time, nlat, nlon) mm: its product file, else computed."""
        out = {}
        for c in tqdm(self.rec, desc="detrended products"):
            p = Path(self.cfg.paths.products_dir) / product_name(c, True)
            if p.exists():
                out[c] = read_months(read_product(p, verify=True)["twsa"], self.grid, self.times, chunk=self.chunk,
                                     desc=f"reading {p.name}")
            else:
                LOGGER.warning("%s missing: detrending/deseasonalizing %s here", p, c)
                out[c] = decompose(self.rec[c], decimal_year(self.times),
                                   n_harmonics=int(self.rc.n_harmonics)).residual.astype(np.float32)
        return out

    @cached_property
    def truth_dd(self) -> np.ndarray:
        return decompose(self.truth, decimal_year(self.times), n_harmonics=int(self.rc.n_harmonics)).residual


def load_context(cfg: DictConfig, out: Path) -> Context:
    """Read the products, the cube and the twin truth once; absent optional inputs are noted, not fatal."""
    rc = cfg.report
    pdir = Path(cfg.paths.products_dir)
    products = {c: pdir / product_name(c) for c in rc.centres if (pdir / product_name(c)).exists()}
    if not products:
        raise FileNotFoundError(
            f"no product {', '.join(product_name(c) for c in rc.centres)} in {pdir}; run infer.py first "
            f"(found: {sorted(p.name for p in pdir.glob('*.nc')) if pdir.exists() else 'no such folder'})")
    first = read_product(next(iter(products.values())), verify=True)
    notes: dict[str, str] = {}
    try:
        manifest, pred_g, _ = open_cube(cfg.paths.cube_dir)
    except CubeError as err:
        manifest, pred_g = None, None
        notes["cube"] = f"no cube ({err})"
    if manifest is not None:
        grid, source = cube_grid(manifest), f"cube {cube_member(cfg.paths.cube_dir, 'manifest.json')}"
        land = np.asarray(pred_g["land_mask"][:], bool)
    else:
        grid, source = product_grid(first), f"stored in {next(iter(products.values())).name} (no cube)"
        land = first["land_mask"].values.astype(bool)
    ctx = Context(cfg=cfg, out=out, grid=grid, grid_source=source, times=month_starts(first["time"].values),
                  land=land, area=grid.cell_area(), products=products, notes=notes)
    for c, p in tqdm(products.items(), desc="reading products"):
        try:
            ctx.rec[c] = read_months(read_product(p, verify=True)["twsa"], grid, ctx.times, chunk=ctx.chunk,
                                     desc=f"reading {p.name}")
        except GridMismatch as err:  # products of another run than the cube's
            raise GridMismatch(f"{p}: {err} ({source}); report on the products of this cube") from None
    missing = [c for c in rc.centres if c not in products]
    if missing:
        ctx.notes["centres"] = f"no product for {', '.join(missing)} in {pdir}"
    if manifest is not None:
        _load_cube(ctx, manifest)
    else:
        ctx.notes["grace"] = f"no GRACE targets: {notes['cube']}"
    _load_truth(ctx)
    return ctx


def _load_cube(ctx: Context, manifest: dict) -> None:
    """GRACE targets of the product centres (in memory) and the predictor channels (lazy)."""
    cube_dir = ctx.cfg.paths.cube_dir
    tds = xr.open_zarr(cube_member(cube_dir, "targets.zarr"), consolidated=False)
    have = [str(v) for v in tds["target"].values]
    for c in ctx.products:
        if c in have:
            ctx.grace[c] = read_months(tds["twsa"].sel(target=c), ctx.grid, ctx.times, chunk=ctx.chunk,
                                       desc=f"GRACE {c}")
        else:
            ctx.notes.setdefault("grace", f"{cube_member(cube_dir, 'targets.zarr')} has no target {c}")
    ctx.predictors = xr.open_zarr(cube_member(cube_dir, "predictors.zarr"), consolidated=False)["predictors"]
    ctx.predictor_units = dict(manifest.get("units") or {})


def _load_truth(ctx: Context) -> None:
    """Twin truth (twsa, runoff) and its unforced components, on the cube grid; noted absent otherwise."""
    truth_path = ctx.cfg.data.get("truth")
    if not truth_path or not Path(truth_path).exists():
        ctx.notes["truth"] = f"no twin truth file ({truth_path!s} does not exist; data.truth)"
        return
    tds = xr.open_dataset(truth_path)
    try:
        ctx.truth = read_months(tds["twsa"], ctx.grid, ctx.times, chunk=ctx.chunk, desc="truth twsa")
    except GridMismatch as err:
        ctx.notes["truth"] = f"twin truth {truth_path} not usable: {err}; run the twin and ingest on one grid.*"
        return
    ctx.truth[:, ~ctx.land] = np.nan
    if "runoff" in tds:
        ctx.truth_runoff = read_months(tds["runoff"], ctx.grid, ctx.times, chunk=ctx.chunk, desc="truth runoff")
    comp_path = ctx.cfg.data.get("truth_components")
    if comp_path and Path(comp_path).exists():  # twin only: storage the forcing cannot explain
        cds = xr.open_dataset(comp_path)
        for v in ("depletion", "ice"):
            if v in cds:
                a = read_months(cds[v], ctx.grid, ctx.times, chunk=ctx.chunk, desc=f"truth {v}")
                a[:, ~ctx.land] = np.nan
                ctx.truth_unforced[v] = a
