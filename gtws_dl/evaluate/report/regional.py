"""Section 2: regional mean series (land excl. ice sheets, Greenland, Antarctica, continents) with GRACE and truth."""

from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from gtws_dl.evaluate import figures as fg
from gtws_dl.evaluate.report.context import COLOURS, LAND_EXCL, Context, in_period, pretty, rebase
from gtws_dl.evaluate.skill import pearson_r
from gtws_dl.post.regions import CONTINENTS


def section_regional(ctx: Context) -> list[str]:
    names = [LAND_EXCL, "greenland", "antarctica"] + [n for n in CONTINENTS if n not in ("greenland", "antarctica")]
    masks = {n: ctx.masks[n] for n in names}
    rec = {c: ctx.series(a, masks) for c, a in tqdm(ctx.rec.items(), desc="regional series")}
    grace = {c: ctx.series(a, masks) for c, a in ctx.grace.items()}
    truth = ctx.series(ctx.truth, masks) if ctx.truth is not None else None
    panels, rows = [], []
    x = ctx.times
    tp = tuple(ctx.rc.truth_period)
    sel = in_period(x, tp)
    for n in names:
        lines = [fg.Line(x, rebase(rec[c][f"{n}_mm"], ctx.baseline).values, f"gtws-dl {c.upper()}",
                         {"color": COLOURS.get(c)}) for c in rec]
        for c, g in grace.items():
            lines.append(fg.Line(x, rebase(g[f"{n}_mm"], ctx.baseline).values, f"GRACE {c.upper()}",
                                 {"color": COLOURS.get(c), "ls": "none", "marker": ".", "ms": 2}))
        if truth is not None:
            lines.append(fg.Line(x, rebase(truth[f"{n}_mm"], ctx.baseline).values, "twin truth",
                                 {"color": "k", "lw": 0.6}))
        panels.append(fg.SeriesPanel(f"{pretty(n)} ({int(masks[n].sum())} cells)", "TWSA (mm)", lines, 0.0))
        for c in rec:
            row = {"region": pretty(n), "centre": c}
            if c in grace:
                row["r vs GRACE"] = float(pearson_r(rec[c][f"{n}_mm"].values, grace[c][f"{n}_mm"].values))
            if truth is not None:
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
