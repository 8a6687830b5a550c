"""Evaluation report of the gtws-dl products: ``report.md`` + PNG figures.

``python -m gtws_dl.evaluate.report paths.output_dir=outputs/demo [report.external_sle=x.csv]
[report.basins=b.geojson] [report.gauges=g.csv] [report.published.gtws_mlrec=f.nc ...]``
(config ``conf/report.yaml``) writes ``<output_dir>/report/`` atomically (built in ``report.tmp-<pid>``,
then swapped in). Sections, after GTWS-MLrec's evaluation (Yin et al. 2023, ESSD 15, 5597):

1. skill maps per centre (r, NSE vs GRACE; r, NSE vs the twin truth 1940–2001) + trend and seasonal amplitude;
2. regional series (land excl. Greenland/Antarctica, Greenland, Antarctica, continents) with GRACE and truth;
3. global land mass as sea-level equivalent and the land–ocean mass budget numbers;
4. basin water balance dS/dt vs P − E − R;
5. discharge check (gauges, or twin basin runoff as a proxy);
6. El Niño − La Niña composites of detrended+deseasonalized TWSA;
7. comparison with published reconstructions;
8. skill table vs truth, key numbers, configuration.

A section whose input is missing is skipped with a line saying why; a section that fails writes the error
into report.md (and the log) — nothing is skipped silently.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import xarray as xr
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from gtws_dl.config import conf_dir
from gtws_dl.cube.store import cube_member
from gtws_dl.evaluate import budget, enso
from gtws_dl.evaluate import figures as fg
from gtws_dl.evaluate.skill import area_weighted_median, deseasonalize, nse, pearson_r
from gtws_dl.grid import Grid
from gtws_dl.post.products import read_product
from gtws_dl.post.publish import product_name
from gtws_dl.post.regions import CONTINENTS, region_masks, user_regions
from gtws_dl.post.series import regional_series
from gtws_dl.seasonal import decimal_year, decompose

LOGGER = logging.getLogger(__name__)
LAND_EXCL = "global_land_excl_greenland_antarctica"
COLOURS = {"jpl": "tab:blue", "csr": "tab:orange", "gsfc": "tab:green"}
PRETTY = {"global_land": "global land", LAND_EXCL: "land excl. Greenland & Antarctica"}


class Skip(Exception):
    """A section cannot run because an input is absent; the message says which."""


def _pretty(name: str) -> str:
    return PRETTY.get(name, name.replace("_", " ").title())


def _month_start(times) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(times).ravel()).to_period("M").to_timestamp(), name="time")


def grid_of(ds: xr.Dataset) -> Grid:
    """The regular :class:`Grid` of a product (resolution and bounds from its coordinates)."""
    lat, lon = ds["lat"].values, ds["lon"].values
    res = float(np.round(np.diff(lat).mean(), 6)) if lat.size > 1 else float(np.round(np.diff(lon).mean(), 6))
    bbox = (float(lon[0] - res / 2), float(lon[-1] + res / 2), float(lat[0] - res / 2), float(lat[-1] + res / 2))
    return Grid(res, None if np.allclose(bbox, (-180, 180, -90, 90)) else bbox)


def on_grid(da: xr.DataArray, grid: Grid, times: pd.DatetimeIndex, *, chunk: int = 120, desc: str = "") -> np.ndarray:
    """``da`` (time, lat, lon) on ``grid`` and the months ``times`` as float32 (time, nlat, nlon); NaN where absent.

    Regridded (first-order conservative) in time chunks when its grid differs from ``grid``.
    """
    from gtws_dl.io.regrid import regrid_conservative, to_canonical

    da = to_canonical(da).transpose("time", "lat", "lon")
    dt = _month_start(da["time"].values)
    pos = times.get_indexer(dt)
    keep = np.flatnonzero(pos >= 0)
    out = np.full((len(times),) + grid.shape, np.nan, np.float32)
    same = da.sizes["lat"] == grid.nlat and da.sizes["lon"] == grid.nlon and np.allclose(
        da["lat"].values, grid.lat, atol=1e-4) and np.allclose(da["lon"].values, grid.lon, atol=1e-4)
    starts = range(0, len(keep), chunk)
    for i0 in tqdm(starts, desc=desc or f"reading {da.name}", disable=len(starts) < 3, leave=False):
        sel = keep[i0:i0 + chunk]
        blk = da.isel(time=sel)
        if not same:
            blk = regrid_conservative(blk, grid)
        out[pos[sel]] = np.asarray(blk.values, np.float32)
    return out


def rebase(series: pd.Series, baseline: tuple[str, str]) -> pd.Series:
    """Series minus its mean over the baseline months (over its whole record if it has none there)."""
    b = series[(series.index >= pd.Timestamp(baseline[0])) & (series.index <= pd.Timestamp(baseline[1]))]
    ref = b.mean() if b.notna().any() else series.mean()
    return series - ref


# --------------------------------------------------------------------------------------------- context
@dataclass
class Context:
    """Everything the sections share, loaded once."""

    cfg: DictConfig
    out: Path  # directory the figures are written to (the temporary report folder)
    grid: Grid
    times: pd.DatetimeIndex  # month starts of the products
    land: np.ndarray
    area: np.ndarray
    products: dict[str, Path]
    rec: dict[str, np.ndarray] = field(default_factory=dict)  # centre -> (time, nlat, nlon) mm
    grace: dict[str, np.ndarray] = field(default_factory=dict)  # centre -> (time, nlat, nlon) mm, NaN = no month
    truth: np.ndarray | None = None
    truth_runoff: np.ndarray | None = None
    truth_unforced: dict[str, np.ndarray] = field(default_factory=dict)  # twin: depletion, ice (time, nlat, nlon) mm
    notes: dict[str, str] = field(default_factory=dict)  # why optional inputs are absent
    numbers: dict[str, object] = field(default_factory=dict)  # key numbers (report.md + numbers.json)
    figures: list[str] = field(default_factory=list)
    _era5: dict[str, pd.DataFrame | np.ndarray] = field(default_factory=dict)

    @property
    def rc(self):
        return self.cfg.report

    @property
    def dpi(self) -> int:
        return int(self.rc.dpi)

    @property
    def baseline(self) -> tuple[str, str]:
        return tuple(self.rc.baseline)

    def fig(self, name: str) -> Path:
        self.figures.append(name)
        return self.out / name

    @property
    def masks(self) -> dict[str, np.ndarray]:
        if "_masks" not in self.__dict__:
            self.__dict__["_masks"] = region_masks(self.grid, self.land)
        return self.__dict__["_masks"]

    def dd(self, centre: str) -> np.ndarray:
        """Detrended + deseasonalized product of ``centre`` (time, nlat, nlon) mm (product file, else computed)."""
        p = Path(self.cfg.paths.products_dir) / product_name(centre, True)
        if p.exists():
            return on_grid(read_product(p, verify=True)["twsa"], self.grid, self.times, chunk=int(self.rc.time_chunk),
                           desc=f"reading {p.name}")
        LOGGER.warning("%s missing: detrending/deseasonalizing %s here", p, centre)
        return decompose(self.rec[centre], decimal_year(self.times),
                         n_harmonics=int(self.rc.n_harmonics)).residual.astype(np.float32)

    def truth_dd(self) -> np.ndarray:
        if "_truth_dd" not in self.__dict__:
            self.__dict__["_truth_dd"] = decompose(self.truth, decimal_year(self.times),
                                                   n_harmonics=int(self.rc.n_harmonics)).residual
        return self.__dict__["_truth_dd"]


def load_context(cfg: DictConfig, out: Path) -> Context:
    rc = cfg.report
    pdir = Path(cfg.paths.products_dir)
    products = {c: pdir / product_name(c) for c in rc.centres if (pdir / product_name(c)).exists()}
    if not products:
        raise FileNotFoundError(
            f"no product {', '.join(product_name(c) for c in rc.centres)} in {pdir}; run infer.py first "
            f"(found: {sorted(p.name for p in pdir.glob('*.nc')) if pdir.exists() else 'no such folder'})")
    first = read_product(next(iter(products.values())), verify=True)
    grid = grid_of(first)
    times = _month_start(first["time"].values)
    land = first["land_mask"].values.astype(bool) if "land_mask" in first else np.isfinite(first["twsa"][0].values)
    ctx = Context(cfg=cfg, out=out, grid=grid, times=times, land=land, area=grid.cell_area(), products=products)
    chunk = int(rc.time_chunk)
    for c, p in tqdm(products.items(), desc="reading products"):
        ctx.rec[c] = on_grid(read_product(p, verify=True)["twsa"], grid, times, chunk=chunk, desc=f"reading {p.name}")
    missing = [c for c in rc.centres if c not in products]
    if missing:
        ctx.notes["centres"] = f"no product for {', '.join(missing)} in {pdir}"
    # GRACE targets on the model grid
    tpath = cube_member(cfg.paths.cube_dir, "targets.zarr")  # a directory or an fsspec URL
    try:
        tds = xr.open_zarr(tpath, consolidated=False)
    except FileNotFoundError:
        tds = None
    if tds is not None:
        for c in products:
            if c in [str(v) for v in tds["target"].values]:
                ctx.grace[c] = on_grid(tds["twsa"].sel(target=c), grid, times, chunk=chunk, desc=f"GRACE {c}")
            else:
                ctx.notes.setdefault("grace", f"{tpath} has no target {c}")
    else:
        ctx.notes["grace"] = f"no GRACE targets: {tpath} does not exist"
    truth_path = cfg.data.get("truth")
    if truth_path and Path(truth_path).exists():
        tds = xr.open_dataset(truth_path)
        ctx.truth = on_grid(tds["twsa"], grid, times, chunk=chunk, desc="truth twsa")
        ctx.truth[:, ~land] = np.nan
        if "runoff" in tds:
            ctx.truth_runoff = on_grid(tds["runoff"], grid, times, chunk=chunk, desc="truth runoff")
        comp_path = cfg.data.get("truth_components")
        if comp_path and Path(comp_path).exists():  # twin only: storage the forcing cannot explain
            cds = xr.open_dataset(comp_path)
            for v in ("depletion", "ice"):
                if v in cds:
                    a = on_grid(cds[v], grid, times, chunk=chunk, desc=f"truth {v}")
                    a[:, ~land] = np.nan
                    ctx.truth_unforced[v] = a
    else:
        ctx.notes["truth"] = f"no twin truth file ({truth_path!s} does not exist; data.truth)"
    return ctx


def era5_fields(ctx: Context, variables: tuple[str, ...]) -> xr.Dataset:
    """The ERA5 variables through the real-format reader, lazily (dask), canonical layout."""
    from gtws_dl.io.era5 import open_era5

    d = ctx.cfg.data.get("era5_dir")
    if not d or not Path(d).exists():
        raise Skip(f"no ERA5 directory ({d!s} does not exist; data.era5_dir)")
    try:
        return open_era5(d, list(variables), check_nan=False)
    except ValueError as exc:  # InputFileError: e.g. a variable that the files do not hold
        raise Skip(f"ERA5 in {d} cannot provide {', '.join(variables)}: {exc}") from exc


# --------------------------------------------------------------------------------------------- sections
def _median(field_: np.ndarray, ctx: Context, region: str = LAND_EXCL) -> float:
    return area_weighted_median(field_, ctx.area, ctx.masks[region])


def _in(times: pd.DatetimeIndex, period) -> np.ndarray:
    return np.asarray((times >= pd.Timestamp(period[0])) & (times <= pd.Timestamp(period[1])))


def section_maps(ctx: Context) -> list[str]:
    md: list[str] = []
    tp = tuple(ctx.rc.truth_period)
    t_years = decimal_year(ctx.times)
    rows = []
    for c, rec in tqdm(ctx.rec.items(), desc="skill maps"):
        panels: list[fg.MapPanel] = []
        row: dict[str, object] = {"centre": c}
        if c in ctx.grace:
            g = ctx.grace[c]
            r, e = pearson_r(rec, g), nse(rec, g)
            n_months = int(np.isfinite(g).any(axis=(1, 2)).sum())
            panels += [fg.MapPanel(f"r vs GRACE ({n_months} GRACE months)", r, "Pearson r", "RdBu_r", -1, 1),
                       fg.MapPanel("NSE vs GRACE", e, "NSE (–)", "RdBu_r", -1, 1)]
            row.update({"r vs GRACE": _median(r, ctx), "NSE vs GRACE": _median(e, ctx)})
        if ctx.truth is not None:
            sel = _in(ctx.times, tp)
            if sel.sum() >= 24:
                r, e = pearson_r(rec[sel], ctx.truth[sel]), nse(rec[sel], ctx.truth[sel])
                span = f"{ctx.times[sel][0]:%Y-%m}–{ctx.times[sel][-1]:%Y-%m}"
                panels += [fg.MapPanel(f"r vs twin truth {span}", r, "Pearson r", "RdBu_r", -1, 1),
                           fg.MapPanel(f"NSE vs twin truth {span}", e, "NSE (–)", "RdBu_r", -1, 1)]
                row.update({f"r vs truth {tp[0][:4]}–{tp[1][:4]}": _median(r, ctx),
                            f"NSE vs truth {tp[0][:4]}–{tp[1][:4]}": _median(e, ctx)})
        dec = decompose(rec, t_years, n_harmonics=int(ctx.rc.n_harmonics))
        trend = dec.coefficients[dec.columns.index("tau")]
        amp, _ = dec.amplitude_phase(1)
        lim = fg.symmetric_limit(trend[ctx.masks[LAND_EXCL]])  # ice-sheet trends saturate the scale
        panels += [fg.MapPanel(f"linear trend {ctx.times[0]:%Y}–{ctx.times[-1]:%Y}", trend, "trend (mm yr⁻¹)",
                               "BrBG", -lim, lim),
                   fg.MapPanel("annual amplitude", amp, "amplitude (mm)", "viridis", 0, fg.symmetric_limit(amp))]
        row.update({"trend (mm/yr)": _median(trend, ctx), "annual amplitude (mm)": _median(amp, ctx)})
        rows.append(row)
        name = f"maps_{c}.png"
        fg.map_grid(panels, ctx.grid.lon, ctx.grid.lat, ctx.fig(name), land=ctx.land, dpi=ctx.dpi,
                    suptitle=f"gtws-dl {c.upper()}-trained reconstruction: skill, trend and seasonal amplitude")
        md += [f"![maps {c}]({name})", "",
               f"*Figure: {c.upper()}-trained product. r and NSE against the GRACE {c.upper()} targets over the months "
               "GRACE observed (training months included — an in-sample fit, not a validation)"
               + (f"; r and NSE against the twin truth over {tp[0]}–{tp[1]}, months the model never saw"
                  if ctx.truth is not None else "")
               + f"; linear trend and amplitude of the annual harmonic fitted to the whole record "
               f"({ctx.times[0]:%Y-%m}–{ctx.times[-1]:%Y-%m}, linear trend + {int(ctx.rc.n_harmonics)} harmonics). "
               "Grey: land cells where the metric is undefined.*", ""]
    if not ctx.grace:
        md.append(f"GRACE skill maps skipped: {ctx.notes.get('grace', 'no GRACE targets')}.")
    if ctx.truth is None:
        md.append(f"Truth skill maps skipped: {ctx.notes['truth']}.")
    df = pd.DataFrame(rows)
    ctx.numbers["map_medians"] = df.to_dict(orient="records")
    md += ["Area-weighted medians over land excluding Greenland and Antarctica:", "",
           df.to_markdown(index=False, floatfmt=".3f"), ""]
    return md


def _series(arr: np.ndarray, ctx: Context, masks: dict[str, np.ndarray]) -> pd.DataFrame:
    return regional_series(arr, ctx.area, masks, times=ctx.times)


def section_regional(ctx: Context) -> list[str]:
    names = [LAND_EXCL, "greenland", "antarctica"] + [n for n in CONTINENTS if n not in ("greenland", "antarctica")]
    masks = {n: ctx.masks[n] for n in names}
    rec = {c: _series(a, ctx, masks) for c, a in tqdm(ctx.rec.items(), desc="regional series")}
    grace = {c: _series(a, ctx, masks) for c, a in ctx.grace.items()}
    truth = _series(ctx.truth, ctx, masks) if ctx.truth is not None else None
    panels, rows = [], []
    x = ctx.times
    tp = tuple(ctx.rc.truth_period)
    for n in names:
        lines = [fg.Line(x, rebase(rec[c][f"{n}_mm"], ctx.baseline).values, f"gtws-dl {c.upper()}",
                         {"color": COLOURS.get(c)}) for c in rec]
        for c, g in grace.items():
            gs = g[f"{n}_mm"]
            lines.append(fg.Line(x, rebase(gs, ctx.baseline).values, f"GRACE {c.upper()}",
                                 {"color": COLOURS.get(c), "ls": "none", "marker": ".", "ms": 2}))
        if truth is not None:
            lines.append(fg.Line(x, rebase(truth[f"{n}_mm"], ctx.baseline).values, "twin truth",
                                 {"color": "k", "lw": 0.6}))
        panels.append(fg.SeriesPanel(f"{_pretty(n)} ({int(masks[n].sum())} cells)", "TWSA (mm)", lines, 0.0))
        for c in rec:
            row = {"region": _pretty(n), "centre": c}
            if c in grace:
                row["r vs GRACE"] = float(pearson_r(rec[c][f"{n}_mm"].values, grace[c][f"{n}_mm"].values))
            if truth is not None:
                sel = _in(x, tp)
                row[f"r vs truth {tp[0][:4]}–{tp[1][:4]}"] = float(
                    pearson_r(rec[c][f"{n}_mm"].values[sel], truth[f"{n}_mm"].values[sel]))
            rows.append(row)
    name = "regional_series.png"
    fg.series_grid(panels, ctx.fig(name), dpi=ctx.dpi, width=6.0,
                   suptitle="Regional mean TWSA (area-weighted, re-referenced to "
                            f"{ctx.baseline[0]}–{ctx.baseline[1]})")
    df = pd.DataFrame(rows)
    ctx.numbers["regional_r"] = df.to_dict(orient="records")
    md = [f"![regional series]({name})", "",
            "*Figure: area-weighted mean TWSA (mm) per region, each series re-referenced to its "
            f"{ctx.baseline[0]}–{ctx.baseline[1]} mean. Lines: reconstructions; dots: GRACE targets on the model grid "
            "(the months GRACE observed)" + ("; black: twin truth" if truth is not None else "") + ". "
            "Regions from gtws_dl.post.regions (offline continents; every land cell in exactly one).*", "",
            (f"GRACE overlay skipped: {ctx.notes['grace']}." if not grace else ""),
            (f"Truth overlay skipped: {ctx.notes['truth']}." if truth is None else ""), "",
            "Correlation of the regional monthly series:", "", df.to_markdown(index=False, floatfmt=".3f"), ""]
    return [ln for k, ln in enumerate(md) if ln or (k and md[k - 1])]  # no runs of blank lines


def read_external_sle(path: str | Path) -> pd.Series:
    """CSV with columns ``time`` (any parseable month) and ``sle_mm`` → Series indexed by month start."""
    df = pd.read_csv(path)
    missing = {"time", "sle_mm"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing; found {list(df.columns)} "
                         "(expected time, sle_mm)")
    s = pd.Series(df["sle_mm"].to_numpy(float), index=_month_start(pd.to_datetime(df["time"])))
    return s.groupby(level=0).mean()


def section_sle(ctx: Context) -> list[str]:
    tp = tuple(ctx.rc.truth_period)
    masks = {n: ctx.masks[n] for n in ("global_land", LAND_EXCL)}
    gt = {c: _series(a, ctx, masks) for c, a in ctx.rec.items()}
    truth = _series(ctx.truth, ctx, masks) if ctx.truth is not None else None
    unforced = {v: _series(a, ctx, masks) for v, a in ctx.truth_unforced.items()} if truth is not None else {}
    forced = None
    if unforced:  # twin: the stores the forcing drives (truth minus pumping and land-ice loss)
        forced = truth.copy()
        num = [c for c in truth.columns if c.endswith(("_mm", "_Gt"))]
        for u in unforced.values():
            forced[num] = forced[num] - u[num].fillna(0.0)
    ext = None
    ext_path = ctx.rc.get("external_sle")
    if ext_path:
        ext = rebase(read_external_sle(ext_path), ctx.baseline)
    lines = [fg.Line(ctx.times, budget.gt_to_sle_mm(rebase(gt[c]["global_land_Gt"], ctx.baseline).values),
                     f"gtws-dl {c.upper()}", {"color": COLOURS.get(c)}) for c in gt]
    if truth is not None:
        lines.append(fg.Line(ctx.times, budget.gt_to_sle_mm(rebase(truth["global_land_Gt"], ctx.baseline).values),
                             "twin truth", {"color": "k", "lw": 0.7}))
    if forced is not None:
        lines.append(fg.Line(ctx.times, budget.gt_to_sle_mm(rebase(forced["global_land_Gt"], ctx.baseline).values),
                             "twin truth, forced stores only", {"color": "0.5", "lw": 0.7, "ls": "--"}))
    if ext is not None:
        lines.append(fg.Line(ext.index, ext.values, f"external ({Path(ext_path).name})", {"color": "tab:red"}))
    lines12 = [fg.Line(ln.x, pd.Series(ln.y).rolling(12, center=True, min_periods=12).mean().values, ln.label, ln.kw)
               for ln in lines]
    name = "global_land_sle.png"
    fg.series_grid([fg.SeriesPanel("monthly", "sea-level equivalent (mm)", lines, 0.0),
                    fg.SeriesPanel("12-month running mean", "sea-level equivalent (mm)", lines12, 0.0)],
                   ctx.fig(name), ncols=1, width=11, height=3.0, dpi=ctx.dpi,
                   suptitle="Global land water mass as barystatic sea level (land loss = sea-level rise)")
    md = [f"![global land SLE]({name})", "",
          f"*Figure: global land (Greenland and Antarctica included) mass anomaly converted to sea-level equivalent, "
          f"SLE = −M / {budget.GT_PER_MM_SLE:.1f} Gt mm⁻¹ (ocean area {budget.OCEAN_AREA_M2:.4g} m²); positive = "
          f"water moved from land to ocean. Re-referenced to {ctx.baseline[0]}–{ctx.baseline[1]}.*", ""]
    rows = []
    if truth is not None:
        for c in gt:
            for region in ("global_land", LAND_EXCL):
                for label, per in ((f"{tp[0]}–{tp[1]}", tp),
                                   (f"{ctx.times[0]:%Y-%m}–{ctx.times[-1]:%Y-%m}",
                                    (f"{ctx.times[0]:%Y-%m}", f"{ctx.times[-1]:%Y-%m}"))):
                    n = budget.mass_budget_numbers(gt[c][f"{region}_Gt"], truth[f"{region}_Gt"], per)
                    rows.append({"centre": c, "region": _pretty(region), "reference": "twin truth", "period": label,
                                 **n})
                    if forced is not None:
                        n = budget.mass_budget_numbers(gt[c][f"{region}_Gt"], forced[f"{region}_Gt"], per)
                        rows.append({"centre": c, "region": _pretty(region), "reference": "twin truth, forced",
                                     "period": label, **n})
    else:
        md.append(f"Budget against the truth skipped: {ctx.notes['truth']}.")
    if ext is not None:
        for c in gt:
            per = (f"{max(ext.index[0], ctx.times[0]):%Y-%m}", f"{min(ext.index[-1], ctx.times[-1]):%Y-%m}")
            ext_gt = pd.Series(budget.sle_mm_to_gt(ext.values), index=ext.index)
            n = budget.mass_budget_numbers(gt[c]["global_land_Gt"], ext_gt, per)
            rows.append({"centre": c, "region": "global land", "reference": Path(ext_path).name,
                         "period": f"{per[0]}–{per[1]}", **n})
    else:
        md.append("External barystatic sea-level comparison skipped: no report.external_sle CSV given.")
    if rows:
        df = pd.DataFrame(rows)
        ctx.numbers["mass_budget"] = df.to_dict(orient="records")
        key = df[(df.region == "global land") & (df.reference == "twin truth") & (df.period == f"{tp[0]}–{tp[1]}")]
        for _, r in key.iterrows():
            ctx.numbers[f"budget_{r.centre}_r_truth"] = r.r
            ctx.numbers[f"budget_{r.centre}_trend_error_gt_yr"] = r.trend_error_gt_yr
        key = df[(df.region == "global land") & (df.reference == "twin truth, forced")
                 & (df.period == f"{tp[0]}–{tp[1]}")]
        for _, r in key.iterrows():
            ctx.numbers[f"budget_{r.centre}_r_forced"] = r.r
            ctx.numbers[f"budget_{r.centre}_trend_error_forced_gt_yr"] = r.trend_error_gt_yr
        show = df[["centre", "region", "reference", "period", "n_months", "r", "r_deseasonalized",
                   "trend_rec_gt_yr", "trend_ref_gt_yr", "trend_error_gt_yr", "trend_error_mm_sle_yr", "rmse_gt"]]
        md += ["", "**Land–ocean mass budget.** r = correlation of the monthly global land mass with the reference; "
               "trends by least squares (Gt yr⁻¹; negative = land losing water); trend error = reconstruction − "
               "reference (Gt yr⁻¹ and mm SLE yr⁻¹); RMSE after removing each series' mean (Gt).", "",
               show.to_markdown(index=False, floatfmt=".3f"), ""]
    if unforced:
        md += attribution(unforced, masks, tp, ctx)
    return md


def attribution(unforced: dict[str, pd.DataFrame], masks: dict, tp: tuple[str, str], ctx: Context) -> list[str]:
    """Trends of the twin's storage that no forcing explains (pumping, land ice), Gt yr⁻¹ over ``tp``."""
    sel = (ctx.times >= pd.Timestamp(tp[0])) & (ctx.times <= pd.Timestamp(tp[1]))
    rows = []
    for region in masks:
        row = {"region": _pretty(region)}
        for v, df in unforced.items():
            row[f"{v} trend (Gt/yr)"] = budget.linear_trend(df[f"{region}_Gt"].values[sel], ctx.times[sel])
        row["unforced total (Gt/yr)"] = sum(row[f"{v} trend (Gt/yr)"] for v in unforced)
        rows.append(row)
    df = pd.DataFrame(rows)
    for _, r in df.iterrows():
        ctx.numbers[f"unforced_trend_{r.region.replace(' ', '_')}_gt_yr"] = r["unforced total (Gt/yr)"]
    return ["**What no forcing-driven reconstruction can see.** The twin's truth = forced stores (snow, soil, "
            "groundwater, surface water, driven by the ERA5-like forcing) + groundwater pumping + land-ice loss "
            "(`truth_components.nc`). The rows against *twin truth, forced* measure the model; the trends below "
            f"({tp[0]}–{tp[1]}) are the part of the budget only external estimates (pumping inventories, glacier "
            "and ice-sheet mass balance) can supply: reconstruction trend error vs the full truth ≈ error vs the "
            "forced stores − this unforced trend.", "", df.to_markdown(index=False, floatfmt=".1f"), ""]


def basin_masks(ctx: Context) -> tuple[dict[str, np.ndarray], str]:
    """Basins: user polygons (report.basins) or SREX regions over land; those with < min_basin_cells dropped."""
    path = ctx.rc.get("basins")
    if path:
        masks = user_regions(path, ctx.grid, ctx.land, name_field=str(ctx.rc.basin_name_field))
        how = f"user polygons from {Path(path).name} (field {ctx.rc.basin_name_field!r}), land cells by cell centre"
    else:
        import regionmask

        srex = regionmask.defined_regions.srex
        m3 = srex.mask_3D(ctx.grid.lon, ctx.grid.lat, drop=False).values
        masks = {f"{a} ({nm})": m3[k] & ctx.land for k, (a, nm) in enumerate(zip(srex.abbrevs, srex.names, strict=True))}
        how = ("built-in: the 26 IPCC SREX regions (regionmask.defined_regions.srex) intersected with land — "
               "large climate regions standing in for river basins (pass report.basins=<GeoJSON> for real basins)")
    keep = {k: v for k, v in masks.items() if v.sum() >= int(ctx.rc.min_basin_cells)}
    if not keep:
        raise Skip(f"no basin has ≥ {ctx.rc.min_basin_cells} land cells on the {ctx.grid} grid ({how})")
    return keep, how + f"; {len(keep)} of {len(masks)} with ≥ {ctx.rc.min_basin_cells} land cells"


def era5_basin_series(ctx: Context, masks: dict[str, np.ndarray], variables: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """Basin means (mm day⁻¹ etc.) of ERA5 variables on the product grid and months, read in time chunks."""
    ds = era5_fields(ctx, variables)
    out = {}
    for v in variables:
        arr = on_grid(ds[v], ctx.grid, ctx.times, chunk=int(ctx.rc.time_chunk), desc=f"ERA5 {v}")
        out[v] = _series(arr, ctx, masks)
    return out


def read_runoff_csv(path: str | Path, basins: list[str], times: pd.DatetimeIndex) -> pd.DataFrame:
    """CSV ``basin, time, runoff_mm_day`` → DataFrame (time × basin) on ``times`` (NaN where absent)."""
    df = pd.read_csv(path)
    missing = {"basin", "time", "runoff_mm_day"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing; found {list(df.columns)}")
    df["time"] = _month_start(pd.to_datetime(df["time"]))
    wide = df.pivot_table(index="time", columns="basin", values="runoff_mm_day")
    return wide.reindex(index=times, columns=basins)


def section_basins(ctx: Context) -> list[str]:
    masks, how = basin_masks(ctx)
    names = list(masks)
    if ctx.rc.get("runoff"):
        r_wide = read_runoff_csv(ctx.rc.runoff, names, ctx.times)
        r_src = f"user series {Path(ctx.rc.runoff).name}"
    elif ctx.truth_runoff is not None:
        rs = _series(ctx.truth_runoff, ctx, masks)
        r_wide = pd.DataFrame({n: rs[f"{n}_mm"] for n in names}, index=ctx.times)
        r_src = "twin truth `runoff` (river outflow generated in each cell)"
    else:
        raise Skip("no runoff R: give report.runoff (CSV basin,time,runoff_mm_day); the twin truth file has no "
                   "`runoff`" + (f" ({ctx.notes['truth']})" if "truth" in ctx.notes else "") +
                   "; ERA5 `ro` is not read by gtws_dl.io.era5")
    era = era5_basin_series(ctx, masks, ("tp", "e"))
    stores = dict(ctx.rec)
    if ctx.truth is not None:
        stores["truth"] = ctx.truth
    store_series = {k: _series(a, ctx, masks) for k, a in stores.items()}
    rows, per_basin = [], {k: [] for k in stores}
    wb_first = {}
    for n in tqdm(names, desc="basin balance"):
        row = {"basin": n, "cells": int(masks[n].sum())}
        for k, s in store_series.items():
            wb = budget.water_balance(s[f"{n}_mm"].values, era["tp"][f"{n}_mm"].values, era["e"][f"{n}_mm"].values,
                                      r_wide[n].values, ctx.times)
            r = float(pearson_r(wb["dsdt"].values, wb["p_e_r"].values))
            row[f"r {k}"] = r
            per_basin[k].append(r)
            if k == next(iter(ctx.rec)):
                wb_first[n] = wb
        rows.append(row)
    df = pd.DataFrame(rows)
    ctx.numbers["basin_balance"] = df.to_dict(orient="records")
    for k in stores:
        ctx.numbers[f"basin_balance_median_r_{k}"] = float(np.nanmedian(per_basin[k]))
    bar = "basin_balance_r.png"
    fg.bar_chart(names, {("twin truth storage" if k == "truth" else f"gtws-dl {k.upper()}"): v
                         for k, v in per_basin.items()}, ctx.fig(bar), dpi=ctx.dpi,
                 title="Basin water balance: r(dS/dt, P − E − R), monthly", ylabel="Pearson r")
    big = sorted(names, key=lambda n: -masks[n].sum())[:6]
    last = ctx.times >= ctx.times[-1] - pd.DateOffset(years=20)
    c0 = next(iter(ctx.rec))
    panels = [fg.SeriesPanel(n, "mm month⁻¹", [
        fg.Line(ctx.times[last], wb_first[n]["dsdt"].values[last], f"dS/dt gtws-dl {c0.upper()}",
                {"color": COLOURS.get(c0)}),
        fg.Line(ctx.times[last], wb_first[n]["p_e_r"].values[last], "P − E − R (ERA5, R)", {"color": "k"})], 0.0)
        for n in big]
    ser = "basin_balance_series.png"
    fg.series_grid(panels, ctx.fig(ser), dpi=ctx.dpi, ncols=2, width=6.5,
                   suptitle="Storage change vs P − E − R in the largest basins (last 20 years)")
    truth_line = ("The *truth* column uses the twin's true storage with the same ERA5 P and E: it is the ceiling "
                  "set by the forcing's own errors and by storage terms outside P − E − R (ice, depletion)."
                  if ctx.truth is not None else "")
    return [f"Basins: {how}. R: {r_src}. P, E: ERA5 `tp`, `e` read with gtws_dl.io.era5 and regridded "
            "conservatively to the product grid. dS/dt is the centred difference of basin-mean monthly-mean storage "
            "(mm month⁻¹); it is compared with P + e − R (ERA5 sign: e < 0 for evaporation) × days in month, filtered "
            "(¼, ½, ¼) — the flux a centred difference of monthly means sees.", "",
            f"![basin balance r]({bar})", "", "*Figure: correlation of dS/dt with P − E − R per basin.*", "",
            f"![basin balance series]({ser})", "",
            f"*Figure: dS/dt of the {c0.upper()}-trained product vs P − E − R (mm month⁻¹) in the six largest basins.*",
            "", truth_line, "", df.to_markdown(index=False, floatfmt=".3f"), ""]


def read_gauges(path: str | Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = {"gauge_id", "lon", "lat", "time", "discharge"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing; found {list(df.columns)} "
                         "(expected gauge_id, lon, lat, time, discharge)")
    df["time"] = _month_start(pd.to_datetime(df["time"]))
    return df


def _dd_series(y: np.ndarray, times: pd.DatetimeIndex, n_harmonics: int) -> np.ndarray:
    y = np.asarray(y, float)
    if np.isfinite(y).sum() < 2 * n_harmonics + 4:
        return np.full_like(y, np.nan)
    return decompose(y, decimal_year(times), n_harmonics=n_harmonics).residual


def section_discharge(ctx: Context) -> list[str]:
    nh = int(ctx.rc.n_harmonics)
    dd = {c: ctx.dd(c) for c in tqdm(ctx.rec, desc="detrended products")}
    gpath = ctx.rc.get("gauges")
    if gpath:
        g = read_gauges(gpath)
        lat2, lon2 = np.meshgrid(np.deg2rad(ctx.grid.lat), np.deg2rad(ctx.grid.lon), indexing="ij")
        rows, pts = [], {c: [] for c in dd}
        for gid, gg in tqdm(g.groupby("gauge_id"), desc="gauges"):
            lon0, lat0 = np.deg2rad(float(gg["lon"].iloc[0])), np.deg2rad(float(gg["lat"].iloc[0]))
            cosd = np.sin(lat0) * np.sin(lat2) + np.cos(lat0) * np.cos(lat2) * np.cos(lon2 - lon0)
            dist = 6371.0 * np.arccos(np.clip(cosd, -1, 1))
            m = ctx.land & (dist <= float(ctx.rc.gauge_radius_km))
            if not m.any():
                m = ctx.land & (dist == dist[ctx.land].min())
            q = gg.groupby("time")["discharge"].mean().reindex(ctx.times).values
            qd = _dd_series(q, ctx.times, nh)
            row = {"gauge": gid, "lon": float(gg["lon"].iloc[0]), "lat": float(gg["lat"].iloc[0]),
                   "cells": int(m.sum()), "months": int(np.isfinite(q).sum())}
            for c, a in dd.items():
                s = _series(a, ctx, {"g": m})["g_mm"].values
                row[f"r {c}"] = float(pearson_r(s, qd))
                pts[c].append(row[f"r {c}"])
            rows.append(row)
        df = pd.DataFrame(rows)
        panels = [fg.MapPanel(f"r(storage, discharge) {c.upper()}", np.full(ctx.grid.shape, np.nan), "Pearson r",
                              "RdBu_r", -1, 1, points=(df["lon"].values, df["lat"].values, np.asarray(pts[c])))
                  for c in dd]
        name = "discharge_gauges.png"
        fg.map_grid(panels, ctx.grid.lon, ctx.grid.lat, ctx.fig(name), land=ctx.land, dpi=ctx.dpi,
                    suptitle="Detrended+deseasonalized storage vs discharge at gauges")
        what = (f"user gauges {Path(gpath).name}: storage = mean detrended+deseasonalized TWSA over land cells within "
                f"{ctx.rc.gauge_radius_km} km of the gauge (nearest land cell if none); discharge detrended and "
                f"deseasonalized the same way (linear trend + {nh} harmonics)")
    else:
        if ctx.truth_runoff is None:
            raise Skip("no gauges: give report.gauges (CSV gauge_id, lon, lat, time, discharge); the twin-gauge proxy "
                       "needs the truth file's `runoff`" + (f" ({ctx.notes['truth']})" if "truth" in ctx.notes else ""))
        masks, how = basin_masks(ctx)
        rs = _series(ctx.truth_runoff, ctx, masks)
        rows = []
        stor = {c: _series(a, ctx, masks) for c, a in dd.items()}
        for n in masks:
            q = rs[f"{n}_Gt"].values * budget.days_in_month(ctx.times)  # basin-total runoff, Gt month⁻¹
            qd = _dd_series(q, ctx.times, nh)
            row = {"basin": n, "cells": int(masks[n].sum())}
            for c in dd:
                row[f"r {c}"] = float(pearson_r(stor[c][f"{n}_mm"].values, qd))
            rows.append(row)
        df = pd.DataFrame(rows)
        name = "discharge_twin_gauges.png"
        fg.bar_chart(list(df["basin"]), {f"gtws-dl {c.upper()}": df[f"r {c}"].values for c in dd}, ctx.fig(name),
                     dpi=ctx.dpi, title="r(detrended+deseasonalized storage, twin basin runoff)", ylabel="Pearson r")
        what = ("**twin gauges** (a proxy, not river discharge): the basin-total runoff generated in the twin truth "
                f"(Gt month⁻¹) per basin — basins: {how} — detrended and deseasonalized (linear trend + {nh} "
                "harmonics), against the basin-mean detrended+deseasonalized product")
    ctx.numbers["discharge"] = df.to_dict(orient="records")
    for c in dd:
        ctx.numbers[f"discharge_median_r_{c}"] = float(np.nanmedian(df[f"r {c}"].values))
    return [f"Discharge: {what}.", "", f"![discharge]({name})", "",
            "*Figure: Pearson r of monthly detrended+deseasonalized storage with detrended+deseasonalized "
            "discharge (positive = wetter storage, more flow).*", "", df.to_markdown(index=False, floatfmt=".3f"), ""]


def section_enso(ctx: Context) -> list[str]:
    ds = era5_fields(ctx, ("skt",))
    box = tuple(float(v) for v in ctx.rc.enso_box)
    idx = enso.enso_index(enso.box_mean(ds["skt"], box), running=int(ctx.rc.enso_running_months))
    x = idx.reindex(ctx.times).to_numpy(float)
    thr = float(ctx.rc.enso_threshold_k)
    if np.isfinite(x).sum() < 24:
        raise Skip(f"ERA5 skt covers only {np.isfinite(x).sum()} product months")
    panels, rows = [], []
    fields = {c: ctx.dd(c) for c in tqdm(ctx.rec, desc="ENSO composites")}
    if ctx.truth is not None:
        fields["truth"] = ctx.truth_dd()
    comps = {}
    for k, f in fields.items():
        comp = enso.composite(f, x, threshold=thr)
        comps[k] = comp
        rows.append({"field": k, "El Niño months": comp.n_nino, "La Niña months": comp.n_nina,
                     "median |composite| (mm)": _median(np.abs(comp.composite), ctx),
                     "median regression (mm/K)": _median(comp.regression, ctx)})
    # colour scale from land without the ice sheets: their residual mass loss would wash out the ENSO signal
    lim = fg.symmetric_limit(*[c.composite[ctx.masks[LAND_EXCL]] for c in comps.values()])
    for k, comp in comps.items():
        label = "twin truth" if k == "truth" else f"gtws-dl {k.upper()}"
        panels.append(fg.MapPanel(f"{label}: El Niño − La Niña", comp.composite, "TWSA (mm)", "BrBG", -lim, lim))
    if "truth" in comps:
        t = comps["truth"].composite
        for r in rows:
            if r["field"] != "truth":
                ok = np.isfinite(t) & np.isfinite(comps[r["field"]].composite) & ctx.masks[LAND_EXCL]
                r["pattern r vs truth"] = float(pearson_r(comps[r["field"]].composite[ok], t[ok])) if ok.sum() > 2 \
                    else float("nan")
    name = "enso_composite.png"
    fg.map_grid(panels, ctx.grid.lon, ctx.grid.lat, ctx.fig(name), land=ctx.land, dpi=ctx.dpi, ncols=2,
                suptitle="El Niño minus La Niña composite of detrended+deseasonalized TWSA")
    iname = "enso_index.png"
    fg.series_grid([fg.SeriesPanel("Niño-3.4-like index from ERA5 skt", "anomaly (K)",
                                   [fg.Line(ctx.times, x, "index", {"color": "k"})], 0.0)],
                   ctx.fig(iname), ncols=1, width=11, height=2.6, dpi=ctx.dpi, suptitle="ENSO index")
    df = pd.DataFrame(rows)
    ctx.numbers["enso"] = df.to_dict(orient="records")
    return [f"Index: cos-latitude-weighted ERA5 skin temperature `skt` over {box[2]}..{box[3]}°N, {box[0]}..{box[1]}°E,"
            f" anomaly from its monthly climatology, {ctx.rc.enso_running_months}-month centred running mean; El Niño "
            f"months: index > +{thr} K, La Niña: < −{thr} K (month by month, no persistence rule).", "",
            f"![ENSO index]({iname})", "", f"![ENSO composite]({name})", "",
            "*Figure: mean detrended+deseasonalized TWSA (mm) in El Niño months minus La Niña months"
            + ("; the twin truth is detrended and deseasonalized with the same model" if "truth" in comps else "")
            + ". Colour scale from land without Greenland and Antarctica (ice-sheet cells saturate). On real data expect drying (negative values) over Amazonia, southern Africa, Australia and Indonesia during El Niño.*", "",
            df.to_markdown(index=False, floatfmt=".3f"), ""]


def section_published(ctx: Context) -> list[str]:
    from gtws_dl.io import published as pub

    given = {k: v for k, v in (ctx.rc.get("published") or {}).items() if v}
    if not given:
        raise Skip("no published reconstruction given (report.published.gtws_mlrec / grace_rec / tws_field)")
    readers: dict[str, Callable[[str], xr.DataArray]] = {
        "gtws_mlrec": pub.open_gtws_mlrec, "grace_rec": pub.open_grace_rec, "tws_field": pub.open_tws_field}
    months = ctx.times.month.to_numpy()
    panels, rows, lines = [], [], []
    m = {LAND_EXCL: ctx.masks[LAND_EXCL]}
    for c, a in ctx.rec.items():
        s = _series(deseasonalize(a, months), ctx, m)[f"{LAND_EXCL}_mm"]
        lines.append(fg.Line(ctx.times, s.rolling(12, center=True, min_periods=12).mean().values,
                             f"gtws-dl {c.upper()}", {"color": COLOURS.get(c)}))
    for key, path in given.items():
        if key not in readers:
            raise ValueError(f"report.published.{key}: unknown product; known: {sorted(readers)}")
        arr = on_grid(readers[key](path), ctx.grid, ctx.times, chunk=int(ctx.rc.time_chunk), desc=key)
        arr[:, ~ctx.land] = np.nan
        pd_ = deseasonalize(arr, months)
        s = _series(pd_, ctx, m)[f"{LAND_EXCL}_mm"]
        lines.append(fg.Line(ctx.times, s.rolling(12, center=True, min_periods=12).mean().values, key,
                             {"lw": 1.0}))
        for c, a in ctx.rec.items():
            r = pearson_r(deseasonalize(a, months), pd_)
            panels.append(fg.MapPanel(f"r: gtws-dl {c.upper()} vs {key}", r, "Pearson r", "RdBu_r", -1, 1))
            rows.append({"product": key, "file": Path(path).name, "centre": c,
                         "months": int(np.isfinite(arr).any(axis=(1, 2)).sum()),
                         "median r (cells)": _median(r, ctx),
                         "r global series": float(pearson_r(
                             _series(deseasonalize(a, months), ctx, m)[f"{LAND_EXCL}_mm"].values, s.values))})
    name, sname = "published_r.png", "published_series.png"
    fg.map_grid(panels, ctx.grid.lon, ctx.grid.lat, ctx.fig(name), land=ctx.land, dpi=ctx.dpi,
                suptitle="Correlation with published reconstructions (deseasonalized, common months)")
    fg.series_grid([fg.SeriesPanel(f"{_pretty(LAND_EXCL)}, deseasonalized, 12-month running mean", "TWSA (mm)",
                                   lines, 0.0)], ctx.fig(sname), ncols=1, width=11, height=3.2, dpi=ctx.dpi,
                   suptitle="Global land (excl. Greenland & Antarctica) mean TWSA")
    df = pd.DataFrame(rows)
    ctx.numbers["published"] = df.to_dict(orient="records")
    return ["Published fields are read with gtws_dl.io.published, regridded conservatively to the product grid and "
            "compared on common months after removing each series' monthly climatology (GRACE-REC's ensemble mean is "
            "itself deseasonalized).", "", f"![published r]({name})", "", f"![published series]({sname})", "",
            df.to_markdown(index=False, floatfmt=".3f"), ""]


def section_skill(ctx: Context) -> list[str]:
    if ctx.truth is None:
        raise Skip(ctx.notes["truth"])
    from gtws_dl.evaluate.truth import skill_table

    truth = xr.DataArray(ctx.truth, dims=("time", "lat", "lon"),
                         coords={"time": ctx.times, "lat": ctx.grid.lat, "lon": ctx.grid.lon}, name="twsa")
    df = skill_table(ctx.cfg.paths.products_dir, truth, grid=ctx.grid, centres=list(ctx.products))
    ctx.numbers["skill_vs_truth"] = df.to_dict(orient="records")
    return ["Area-weighted medians over cells (gtws_dl.evaluate.truth.skill_table); r = Pearson correlation, NSE = "
            "Nash–Sutcliffe efficiency, cyclostationary NSE > 0 = better than the truth's mean seasonal cycle.", "",
            df.to_markdown(index=False, floatfmt=".3f") if len(df) else "(no period with ≥ 24 common months)", ""]


SECTIONS: list[tuple[str, Callable[[Context], list[str]]]] = [
    ("1. Skill, trend and seasonal-amplitude maps", section_maps),
    ("2. Regional series", section_regional),
    ("3. Global land mass as sea-level equivalent (land–ocean mass budget)", section_sle),
    ("4. Basin water balance", section_basins),
    ("5. Discharge check", section_discharge),
    ("6. El Niño composites", section_enso),
    ("7. Comparison with published reconstructions", section_published),
    ("8. Skill against the twin truth", section_skill),
]


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return str(v)


def build_report(cfg: DictConfig) -> Path:
    """Write ``cfg.report.out_dir`` (report.md, PNGs, numbers.json) atomically; return the report.md path."""
    t0 = _time.time()
    final = Path(cfg.report.out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        ctx = load_context(cfg, tmp)
        body: list[str] = []
        status: dict[str, str] = {}
        for title, fn in SECTIONS:
            LOGGER.info("section %s", title)
            body += [f"## {title}", ""]
            try:
                body += fn(ctx)
                status[title] = "done"
            except Skip as exc:
                LOGGER.warning("%s skipped: %s", title, exc)
                body += [f"**Skipped:** {exc}", ""]
                status[title] = f"skipped: {exc}"
            except Exception as exc:  # a broken section must not hide the others, nor be hidden
                LOGGER.exception("%s failed", title)
                body += [f"**Failed:** `{type(exc).__name__}: {exc}` (see the log)", ""]
                status[title] = f"failed: {type(exc).__name__}: {exc}"
        head = _header(ctx, status, _time.time() - t0)
        (tmp / "report.md").write_text("\n".join(head + body + _footer(cfg)) + "\n")
        (tmp / "numbers.json").write_text(json.dumps({"status": status, **ctx.numbers}, indent=1,
                                                     default=_json_default))
        old = final.with_name(f"{final.name}.old-{os.getpid()}")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    LOGGER.info("wrote %s in %.0f s", final / "report.md", _time.time() - t0)
    return final / "report.md"


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)


def _header(ctx: Context, status: dict[str, str], seconds: float) -> list[str]:
    from gtws_dl import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    key = [(k, v) for k, v in ctx.numbers.items() if not isinstance(v, list)]
    md = ["# gtws-dl evaluation report", "",
          f"Generated {now} by gtws-dl {__version__} in {seconds:.0f} s. Output directory: "
          f"`{ctx.cfg.paths.output_dir}`; products: {', '.join(f'`{p.name}`' for p in ctx.products.values())}; "
          f"grid {ctx.grid}; {len(ctx.times)} months {ctx.times[0]:%Y-%m}–{ctx.times[-1]:%Y-%m}.", "",
          "| section | status |", "|---|---|"] + [f"| {k} | {v} |" for k, v in status.items()]
    md += ["", "Inputs absent: " + ("; ".join(f"{k}: {v}" for k, v in ctx.notes.items()) or "none") + ".", ""]
    if key:
        md += ["## Key numbers", "", "| quantity | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in key]
        md += ["", "`budget_<centre>_r_truth`: correlation of the monthly global land mass with the twin truth over "
               f"{ctx.rc.truth_period[0]}–{ctx.rc.truth_period[1]}; `budget_<centre>_trend_error_gt_yr`: its trend "
               "minus the truth's (Gt yr⁻¹). Full tables in the sections and in numbers.json.", ""]
    return md


def _footer(cfg: DictConfig) -> list[str]:
    return ["## Configuration", "", "```yaml", OmegaConf.to_yaml(cfg, resolve=True).rstrip(), "```"]


def print_key_numbers(numbers_path: Path) -> None:
    nums = json.loads(numbers_path.read_text())
    for k, v in nums.items():
        if not isinstance(v, (list, dict)):
            print(f"{k}: {_fmt(v)}")


@hydra.main(config_path=conf_dir(), config_name="report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    path = build_report(cfg)
    print_key_numbers(path.parent / "numbers.json")
    for title, st in json.loads((path.parent / "numbers.json").read_text())["status"].items():
        print(f"{title}: {st}")
    print(f"written {path}")


if __name__ == "__main__":
    main()
