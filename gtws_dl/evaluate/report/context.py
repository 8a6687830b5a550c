"""The one context every report section reads: products, cube (grid, land, GRACE, predictors), truth — loaded once.

Every (time, lat, lon) field is read once, in time blocks, into a scratch Zarr store chunked in latitude bands
(:func:`gtws_dl.evaluate.bands.stage`) and handed to the sections as a :class:`~gtws_dl.evaluate.bands.LazyField`:
they reduce it band by band (maps) or sum it over bands (regional series), so memory follows a band, not the
globe — a global 0.25 deg report holds no whole field.

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
from gtws_dl.evaluate.bands import LazyField, mapped, stage
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
SERIES_BYTES = 128 * 2**20  # a time block of a predictor channel summed into regional series (float64 months x grid)


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


def _check_grid(da: xr.DataArray, grid: Grid) -> None:
    if not on_same_grid(da, grid):
        raise GridMismatch(f"{da.name or 'field'} is on a {da.sizes['lat']}x{da.sizes['lon']} grid "
                           f"(lat {float(da.lat[0]):g}.., lon {float(da.lon[0]):g}..), not on the cube grid {grid}")


def lazy_months(da: xr.DataArray, grid: Grid, times: pd.DatetimeIndex, path: Path, *, desc: str = "",
                remap: Callable[[xr.DataArray], xr.DataArray] | None = None,
                land: np.ndarray | None = None) -> LazyField:
    """``da`` (time, lat, lon) on the months ``times``, staged into the scratch store ``path`` and read back by
    latitude bands (float32; NaN where a month is absent, and off ``land`` when given). ``da`` must be on
    ``grid`` (:class:`GridMismatch`) unless ``remap`` brings each time block onto it."""
    da = da.transpose("time", "lat", "lon")
    if remap is None:
        _check_grid(da, grid)

    def read(idx: np.ndarray) -> np.ndarray:
        blk = da.isel(time=idx)
        out = np.asarray((remap(blk) if remap else blk).values, np.float32)
        if land is not None:
            out[:, ~land] = np.nan
        return out

    pos = times.get_indexer(month_starts(da["time"].values))
    return stage(read, pos, len(times), grid.shape, path, progress=desc or f"reading {da.name}")


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
    scratch: Path  # the fields staged in latitude bands (deleted with the report's temporary folder)
    # (time, nlat, nlon) fields read by bands (LazyField; numpy arrays work too)
    rec: dict[str, LazyField] = field(default_factory=dict)  # centre -> mm
    grace: dict[str, LazyField] = field(default_factory=dict)  # centre -> mm, NaN = no month
    truth: LazyField | None = None
    truth_runoff: LazyField | None = None
    truth_unforced: dict[str, LazyField] = field(default_factory=dict)  # twin: depletion, ice, mm
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

    def lazy(self, da: xr.DataArray, name: str, **kw) -> LazyField:
        """``da`` on the report months and grid, staged in the scratch store (:func:`lazy_months`)."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        return lazy_months(da, self.grid, self.times, self.scratch / f"{name}.zarr", desc=f"reading {name}", **kw)

    def series(self, arr, masks: dict[str, np.ndarray]) -> pd.DataFrame:
        """Regional means (mm) and masses (Gt) of ``arr`` (time, nlat, nlon) on the report months (a
        :class:`~gtws_dl.evaluate.bands.LazyField` is summed band by band)."""
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
        months = max(1, min(self.chunk, int(SERIES_BYTES // (8 * self.area.size))))  # float64 months of the grid
        s = regional_series(self.predictor(name), self.area, masks, chunk=months)
        return s.reindex(self.times)

    @cached_property
    def detrended(self) -> dict[str, LazyField]:
        """Detrended + deseasonalized product per centre (time, nlat, nlon) mm: its product file, else computed
        band by band from the product."""
        out = {}
        t, nh = decimal_year(self.times), int(self.rc.n_harmonics)
        for c in self.rec:
            p = Path(self.cfg.paths.products_dir) / product_name(c, True)
            if p.exists():
                out[c] = self.lazy(read_product(p, verify=True)["twsa"], f"{c}_detrended")
            else:
                LOGGER.warning("%s missing: detrending/deseasonalizing %s here", p, c)
                out[c] = mapped(self.rec[c], lambda b: decompose(b, t, n_harmonics=nh).residual.astype(np.float32))
        return out

    @cached_property
    def truth_dd(self) -> LazyField:
        t, nh = decimal_year(self.times), int(self.rc.n_harmonics)
        return mapped(self.truth, lambda b: decompose(b, t, n_harmonics=nh).residual)


def load_context(cfg: DictConfig, out: Path, scratch: Path) -> Context:
    """Read the products, the cube and the twin truth once (staged in the folder ``scratch``, outside ``out``);
    absent optional inputs are noted, not fatal."""
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
                  land=land, area=grid.cell_area(), products=products, notes=notes,
                  scratch=Path(scratch))
    for c, p in tqdm(products.items(), desc="reading products"):
        try:
            ctx.rec[c] = ctx.lazy(read_product(p, verify=True)["twsa"], c)
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
            ctx.grace[c] = ctx.lazy(tds["twsa"].sel(target=c), f"grace_{c}")
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
        ctx.truth = ctx.lazy(tds["twsa"], "truth", land=ctx.land)
    except GridMismatch as err:
        ctx.notes["truth"] = f"twin truth {truth_path} not usable: {err}; run the twin and ingest on one grid.*"
        return
    if "runoff" in tds:
        ctx.truth_runoff = ctx.lazy(tds["runoff"], "truth_runoff")
    comp_path = ctx.cfg.data.get("truth_components")
    if comp_path and Path(comp_path).exists():  # twin only: storage the forcing cannot explain
        cds = xr.open_dataset(comp_path)
        for v in ("depletion", "ice"):
            if v in cds:
                ctx.truth_unforced[v] = ctx.lazy(cds[v], f"truth_{v}", land=ctx.land)
