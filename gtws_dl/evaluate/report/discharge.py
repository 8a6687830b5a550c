"""Section 5: discharge check, detrended+deseasonalized storage against gauges (or the twin's basin runoff)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gtws_dl.evaluate import budget
from gtws_dl.evaluate import figures as fg
from gtws_dl.evaluate.report.basins import basin_masks
from gtws_dl.evaluate.report.context import Context, Skip
from gtws_dl.evaluate.skill import pearson_r
from gtws_dl.seasonal import decimal_year, detrend_deseasonalize, month_starts

EARTH_RADIUS_KM = 6371.0


def read_gauges(path: str | Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = {"gauge_id", "lon", "lat", "time", "discharge"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing; found {list(df.columns)} "
                         "(expected gauge_id, lon, lat, time, discharge)")
    df["time"] = month_starts(pd.to_datetime(df["time"]))
    return df


def dd_series(y: np.ndarray, times: pd.DatetimeIndex, n_harmonics: int) -> np.ndarray:
    """A series minus its linear trend + ``n_harmonics`` harmonics (the model of the detrended products)."""
    y = np.asarray(y, float)
    if np.isfinite(y).sum() < 2 * n_harmonics + 4:
        return np.full_like(y, np.nan)
    return detrend_deseasonalize(y, decimal_year(times), n_harmonics=n_harmonics)


def _gauge_rows(ctx: Context, gpath, dd: dict[str, np.ndarray], nh: int) -> tuple[pd.DataFrame, dict]:
    g = read_gauges(gpath)
    lat2, lon2 = np.meshgrid(np.deg2rad(ctx.grid.lat), np.deg2rad(ctx.grid.lon), indexing="ij")
    rows, pts = [], {c: [] for c in dd}
    for gid, gg in tqdm(g.groupby("gauge_id"), desc="gauges"):
        lon0, lat0 = np.deg2rad(float(gg["lon"].iloc[0])), np.deg2rad(float(gg["lat"].iloc[0]))
        cosd = np.sin(lat0) * np.sin(lat2) + np.cos(lat0) * np.cos(lat2) * np.cos(lon2 - lon0)
        dist = EARTH_RADIUS_KM * np.arccos(np.clip(cosd, -1, 1))
        m = ctx.land & (dist <= float(ctx.rc.gauge_radius_km))
        if not m.any():
            m = ctx.land & (dist == dist[ctx.land].min())
        q = gg.groupby("time")["discharge"].mean().reindex(ctx.times).values
        qd = dd_series(q, ctx.times, nh)
        row = {"gauge": gid, "lon": float(gg["lon"].iloc[0]), "lat": float(gg["lat"].iloc[0]),
               "cells": int(m.sum()), "months": int(np.isfinite(q).sum())}
        for c, a in dd.items():
            row[f"r {c}"] = float(pearson_r(ctx.series(a, {"g": m})["g_mm"].values, qd))
            pts[c].append(row[f"r {c}"])
        rows.append(row)
    return pd.DataFrame(rows), pts


def section_discharge(ctx: Context) -> list[str]:
    nh = int(ctx.rc.n_harmonics)
    dd = ctx.detrended
    gpath = ctx.rc.get("gauges")
    if gpath:
        df, pts = _gauge_rows(ctx, gpath, dd, nh)
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
        rs = ctx.series(ctx.truth_runoff, masks)
        stor = {c: ctx.series(a, masks) for c, a in dd.items()}
        rows = []
        for n in masks:
            q = rs[f"{n}_Gt"].values * budget.days_in_month(ctx.times)  # basin-total runoff, Gt month⁻¹
            qd = dd_series(q, ctx.times, nh)
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
