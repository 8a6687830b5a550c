"""Section 4: basin water balance, dS/dt of the products against P − E − R (P, E: the cube's ERA5 channels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import regionmask
from tqdm.auto import tqdm

from gtws_dl.evaluate import budget
from gtws_dl.evaluate import figures as fg
from gtws_dl.evaluate.report.context import COLOURS, Context, Skip
from gtws_dl.evaluate.skill import pearson_r
from gtws_dl.post.regions import user_regions
from gtws_dl.seasonal import month_starts


def basin_masks(ctx: Context) -> tuple[dict[str, np.ndarray], str]:
    """Basins: user polygons (report.basins) or SREX regions over land; those with < min_basin_cells dropped."""
    path = ctx.rc.get("basins")
    if path:
        masks = user_regions(path, ctx.grid, ctx.land, name_field=str(ctx.rc.basin_name_field))
        how = f"user polygons from {Path(path).name} (field {ctx.rc.basin_name_field!r}), land cells by cell centre"
    else:
        srex = regionmask.defined_regions.srex
        m3 = srex.mask_3D(ctx.grid.lon, ctx.grid.lat, drop=False).values
        masks = {f"{a} ({nm})": m3[k] & ctx.land for k, (a, nm) in enumerate(zip(srex.abbrevs, srex.names, strict=True))}
        how = ("built-in: the 26 IPCC SREX regions (regionmask.defined_regions.srex) intersected with land — "
               "large climate regions standing in for river basins (pass report.basins=<GeoJSON> for real basins)")
    keep = {k: v for k, v in masks.items() if v.sum() >= int(ctx.rc.min_basin_cells)}
    if not keep:
        raise Skip(f"no basin has ≥ {ctx.rc.min_basin_cells} land cells on the {ctx.grid} grid ({how})")
    return keep, how + f"; {len(keep)} of {len(masks)} with ≥ {ctx.rc.min_basin_cells} land cells"


def read_runoff_csv(path: str | Path, basins: list[str], times: pd.DatetimeIndex) -> pd.DataFrame:
    """CSV ``basin, time, runoff_mm_day`` → DataFrame (time × basin) on ``times`` (NaN where absent)."""
    df = pd.read_csv(path)
    missing = {"basin", "time", "runoff_mm_day"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing; found {list(df.columns)}")
    df["time"] = month_starts(pd.to_datetime(df["time"]))
    wide = df.pivot_table(index="time", columns="basin", values="runoff_mm_day")
    return wide.reindex(index=times, columns=basins)


def _runoff(ctx: Context, masks: dict[str, np.ndarray]) -> tuple[pd.DataFrame, str]:
    names = list(masks)
    if ctx.rc.get("runoff"):
        return read_runoff_csv(ctx.rc.runoff, names, ctx.times), f"user series {Path(ctx.rc.runoff).name}"
    if ctx.truth_runoff is not None:
        rs = ctx.series(ctx.truth_runoff, masks)
        return (pd.DataFrame({n: rs[f"{n}_mm"] for n in names}, index=ctx.times),
                "twin truth `runoff` (river outflow generated in each cell)")
    raise Skip("no runoff R: give report.runoff (CSV basin,time,runoff_mm_day); the twin truth file has no "
               "`runoff`" + (f" ({ctx.notes['truth']})" if "truth" in ctx.notes else "") +
               "; ERA5 `ro` is not a channel of the cube")


def section_basins(ctx: Context) -> list[str]:
    masks, how = basin_masks(ctx)
    names = list(masks)
    r_wide, r_src = _runoff(ctx, masks)
    era = {v: ctx.predictor_series(v, masks) for v in ("tp", "e")}
    stores = dict(ctx.rec)
    if ctx.truth is not None:
        stores["truth"] = ctx.truth
    store_series = {k: ctx.series(a, masks) for k, a in stores.items()}
    c0 = next(iter(ctx.rec))
    rows, per_basin, wb_first = [], {k: [] for k in stores}, {}
    for n in tqdm(names, desc="basin balance"):
        row = {"basin": n, "cells": int(masks[n].sum())}
        for k, s in store_series.items():
            wb = budget.water_balance(s[f"{n}_mm"].values, era["tp"][f"{n}_mm"].values, era["e"][f"{n}_mm"].values,
                                      r_wide[n].values, ctx.times)
            row[f"r {k}"] = float(pearson_r(wb["dsdt"].values, wb["p_e_r"].values))
            per_basin[k].append(row[f"r {k}"])
            if k == c0:
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
    return [f"Basins: {how}. R: {r_src}. P, E: ERA5 `tp`, `e` as the cube holds them (predictor channels, "
            "conservatively regridded to the product grid at ingest, mm day⁻¹). dS/dt is the centred difference of "
            "basin-mean monthly-mean storage (mm month⁻¹); it is compared with P + e − R (ERA5 sign: e < 0 for "
            "evaporation) × days in month, filtered (¼, ½, ¼) — the flux a centred difference of monthly means "
            "sees.", "",
            f"![basin balance r]({bar})", "", "*Figure: correlation of dS/dt with P − E − R per basin.*", "",
            f"![basin balance series]({ser})", "",
            f"*Figure: dS/dt of the {c0.upper()}-trained product vs P − E − R (mm month⁻¹) in the six largest basins.*",
            "", truth_line, "", df.to_markdown(index=False, floatfmt=".3f"), ""]
