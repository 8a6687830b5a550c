"""Section 3: global land mass as sea-level equivalent, the land–ocean mass budget and the unforced trends."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
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
from gtws_dl.io.errors import InputFileError
from gtws_dl.post.fields import UNFORCED_VAR
from gtws_dl.post.unforced import DEFAULT_ONSET, External, choices
from gtws_dl.seasonal import decimal_year, month_starts

CHOICE_REGIONS = ("global_land", LAND_EXCL, "greenland", "antarctica")


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
        md += choice_errors(ctx, tp)
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


def choice_errors(ctx: Context, tp: tuple[str, str]) -> list[str]:
    """Error of each ``products.unforced`` choice against the twin's true unforced storage (pumping + land ice):
    RMSE (Gt) and trend error (Gt yr⁻¹) over ``tp`` of the storage the choice adds, both re-referenced to the
    baseline. The residual-trend choices come from each product's ``unforced_trend`` map; ``external`` when the
    product was published with it (its files named in the product's attributes)."""
    masks = {q: ctx.masks[q] for q in CHOICE_REGIONS}
    true = None
    for a in ctx.truth_unforced.values():
        s = ctx.series(a, masks)
        true = s if true is None else true + s.fillna(0.0)
    sel = in_period(ctx.times, tp)
    t = decimal_year(ctx.times)
    rows, notes = [], []
    for c, path in ctx.products.items():
        with netCDF4.Dataset(path) as nc:
            if UNFORCED_VAR not in nc.variables or not getattr(nc, "training_period", ""):
                notes.append(f"{c}: no `{UNFORCED_VAR}` in {Path(path).name}")
                continue
            v = nc[UNFORCED_VAR]
            v.set_auto_mask(False)
            rate = np.nan_to_num(np.asarray(v[:], np.float64))
            attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        t_lo = float(decimal_year(pd.DatetimeIndex([attrs["training_period"].split(" to ")[0]]))[0])
        onset = float(attrs.get("unforced_onset", DEFAULT_ONSET))
        added = choices(rate, ctx.area, masks, t, t_lo, onset)
        published = str(attrs.get("unforced", "")).split(":")[0]
        if published == "external":
            try:
                ext = External.from_attrs(attrs)
                until = attrs.get("unforced_external_until") or attrs["training_period"].split(" to ")[0]
                t0 = float(decimal_year(pd.DatetimeIndex([until]))[0])
                extra = ext.regional(rate, ctx.grid, ctx.land, ctx.area, masks, t, t0)
                added["external"] = {q: added["none"][q] + extra[q] for q in masks}
            except (InputFileError, ValueError, OSError) as exc:
                notes.append(f"{c}: external estimates not evaluated ({exc})")
        for mode, series in added.items():
            row = {"centre": c, "choice": mode + (" (published)" if mode == published else "")}
            for q in CHOICE_REGIONS:
                err = (rebase(pd.Series(series[q], ctx.times), ctx.baseline)
                       - rebase(true[f"{q}_Gt"].fillna(0.0), ctx.baseline)).values[sel]
                rmse, trend = float(np.sqrt(np.mean(err**2))), budget.linear_trend(err, ctx.times[sel])
                row[f"{pretty(q)} RMSE (Gt)"], row[f"{pretty(q)} trend err (Gt/yr)"] = rmse, trend
                ctx.numbers[f"unforced_choice_{c}_{mode}_{q}_rmse_gt"] = rmse
                ctx.numbers[f"unforced_choice_{c}_{mode}_{q}_trend_error_gt_yr"] = trend
            rows.append(row)
    if not rows:
        return ["Errors of the `products.unforced` choices skipped: " + "; ".join(notes) + ".", ""]
    return ["", f"**Which `products.unforced` choice is right before GRACE.** The storage each choice adds to the "
            f"reconstruction (`gtws_dl/post/unforced.py`: off, none = held before the first training month, "
            f"grace_trend = the residual rate tapering to 0 at the onset, external = the published external "
            f"estimates) against the twin's true pumping + land-ice storage, {tp[0]}–{tp[1]}, both re-referenced to "
            f"{ctx.baseline[0]}–{ctx.baseline[1]}: RMSE and trend of the difference.", "",
            pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"), ""] + \
        ([f"*{'; '.join(notes)}.*", ""] if notes else [])
