"""Section 3: global land mass as sea-level equivalent, the land–ocean mass budget and the unforced trends."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gtws_dl.evaluate import budget
from gtws_dl.evaluate import figures as fg
from gtws_dl.evaluate.report.context import (
    COLOURS,
    LAND_EXCL,
    Context,
    in_period,
    pretty,
    rebase,
)
from gtws_dl.seasonal import month_starts


def read_external_sle(path: str | Path) -> pd.Series:
    """CSV with columns ``time`` (any parseable month) and ``sle_mm`` → Series indexed by month start."""
    df = pd.read_csv(path)
    missing = {"time", "sle_mm"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing; found {list(df.columns)} "
                         "(expected time, sle_mm)")
    s = pd.Series(df["sle_mm"].to_numpy(float), index=month_starts(pd.to_datetime(df["time"])))
    return s.groupby(level=0).mean()


def _running12(lines: list[fg.Line]) -> list[fg.Line]:
    return [fg.Line(ln.x, pd.Series(ln.y).rolling(12, center=True, min_periods=12).mean().values, ln.label, ln.kw)
            for ln in lines]


def section_sle(ctx: Context) -> list[str]:
    tp = tuple(ctx.rc.truth_period)
    masks = {n: ctx.masks[n] for n in ("global_land", LAND_EXCL)}
    gt = {c: ctx.series(a, masks) for c, a in ctx.rec.items()}
    truth = ctx.series(ctx.truth, masks) if ctx.truth is not None else None
    unforced = {v: ctx.series(a, masks) for v, a in ctx.truth_unforced.items()} if truth is not None else {}
    forced = None
    if unforced:  # twin: the stores the forcing drives (truth minus pumping and land-ice loss)
        forced = truth.copy()
        num = [c for c in truth.columns if c.endswith(("_mm", "_Gt"))]
        for u in unforced.values():
            forced[num] = forced[num] - u[num].fillna(0.0)
    ext_path = ctx.rc.get("external_sle")
    ext = rebase(read_external_sle(ext_path), ctx.baseline) if ext_path else None

    def sle(s: pd.Series):
        return budget.gt_to_sle_mm(rebase(s, ctx.baseline).values)

    lines = [fg.Line(ctx.times, sle(gt[c]["global_land_Gt"]), f"gtws-dl {c.upper()}", {"color": COLOURS.get(c)})
             for c in gt]
    if truth is not None:
        lines.append(fg.Line(ctx.times, sle(truth["global_land_Gt"]), "twin truth", {"color": "k", "lw": 0.7}))
    if forced is not None:
        lines.append(fg.Line(ctx.times, sle(forced["global_land_Gt"]), "twin truth, forced stores only",
                             {"color": "0.5", "lw": 0.7, "ls": "--"}))
    if ext is not None:
        lines.append(fg.Line(ext.index, ext.values, f"external ({Path(ext_path).name})", {"color": "tab:red"}))
    name = "global_land_sle.png"
    fg.series_grid([fg.SeriesPanel("monthly", "sea-level equivalent (mm)", lines, 0.0),
                    fg.SeriesPanel("12-month running mean", "sea-level equivalent (mm)", _running12(lines), 0.0)],
                   ctx.fig(name), ncols=1, width=11, height=3.0, dpi=ctx.dpi,
                   suptitle="Global land water mass as barystatic sea level (land loss = sea-level rise)")
    md = [f"![global land SLE]({name})", "",
          f"*Figure: global land (Greenland and Antarctica included) mass anomaly converted to sea-level equivalent, "
          f"SLE = −M / {budget.GT_PER_MM_SLE:.1f} Gt mm⁻¹ (ocean area {budget.OCEAN_AREA_M2:.4g} m²); positive = "
          f"water moved from land to ocean. Re-referenced to {ctx.baseline[0]}–{ctx.baseline[1]}.*", ""]
    rows = []
    if truth is not None:
        whole = (f"{ctx.times[0]:%Y-%m}", f"{ctx.times[-1]:%Y-%m}")
        refs = [("twin truth", truth)] + ([("twin truth, forced", forced)] if forced is not None else [])
        for c in gt:
            for region in ("global_land", LAND_EXCL):
                for per in (tp, whole):
                    for label, ref in refs:
                        n = budget.mass_budget_numbers(gt[c][f"{region}_Gt"], ref[f"{region}_Gt"], per)
                        rows.append({"centre": c, "region": pretty(region), "reference": label,
                                     "period": f"{per[0]}–{per[1]}", **n})
    else:
        md.append(f"Budget against the truth skipped: {ctx.notes['truth']}.")
    if ext is not None:
        ext_gt = pd.Series(budget.sle_mm_to_gt(ext.values), index=ext.index)
        for c in gt:
            per = (f"{max(ext.index[0], ctx.times[0]):%Y-%m}", f"{min(ext.index[-1], ctx.times[-1]):%Y-%m}")
            n = budget.mass_budget_numbers(gt[c]["global_land_Gt"], ext_gt, per)
            rows.append({"centre": c, "region": "global land", "reference": Path(ext_path).name,
                         "period": f"{per[0]}–{per[1]}", **n})
    else:
        md.append("External barystatic sea-level comparison skipped: no report.external_sle CSV given.")
    if rows:
        md += _budget_table(ctx, pd.DataFrame(rows), tp)
    if unforced:
        md += attribution(unforced, masks, tp, ctx)
    return md


def _budget_table(ctx: Context, df: pd.DataFrame, tp: tuple[str, str]) -> list[str]:
    ctx.numbers["mass_budget"] = df.to_dict(orient="records")
    key = df[(df.region == "global land") & (df.period == f"{tp[0]}–{tp[1]}")]
    for ref, tag in (("twin truth", "truth"), ("twin truth, forced", "forced")):
        for _, r in key[key.reference == ref].iterrows():
            ctx.numbers[f"budget_{r.centre}_r_{tag}"] = r.r
            ctx.numbers[f"budget_{r.centre}_trend_error{'' if tag == 'truth' else '_forced'}_gt_yr"] = \
                r.trend_error_gt_yr
    show = df[["centre", "region", "reference", "period", "n_months", "r", "r_deseasonalized",
               "trend_rec_gt_yr", "trend_ref_gt_yr", "trend_error_gt_yr", "trend_error_mm_sle_yr", "rmse_gt"]]
    return ["", "**Land–ocean mass budget.** r = correlation of the monthly global land mass with the reference; "
            "trends by least squares (Gt yr⁻¹; negative = land losing water); trend error = reconstruction − "
            "reference (Gt yr⁻¹ and mm SLE yr⁻¹); RMSE after removing each series' mean (Gt).", "",
            show.to_markdown(index=False, floatfmt=".3f"), ""]


def attribution(unforced: dict[str, pd.DataFrame], masks: dict, tp: tuple[str, str], ctx: Context) -> list[str]:
    """Trends of the twin's storage that no forcing explains (pumping, land ice), Gt yr⁻¹ over ``tp``."""
    sel = in_period(ctx.times, tp)
    rows = []
    for region in masks:
        row = {"region": pretty(region)}
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
