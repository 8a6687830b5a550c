"""Section 8: skill against the twin truth, the evaluation protocol's table (as ``skill_vs_truth.md``)."""

from __future__ import annotations

import pandas as pd

from gtws_dl.evaluate.bands import LazyField, band, finite_months, take
from gtws_dl.evaluate.report.context import Context, Skip
from gtws_dl.evaluate.truth import REFERENCES, skill_rows
from gtws_dl.post.regions import evaluation_masks


def section_skill(ctx: Context) -> list[str]:
    if ctx.truth is None:
        raise Skip(ctx.notes["truth"])
    have = finite_months(ctx.truth)  # months the truth file holds
    regions = evaluation_masks(ctx.masks)
    refs = {REFERENCES["truth"]: ctx.truth}
    if ctx.truth_unforced:  # the forced stores = truth − pumping − land-ice loss (truth_components.nc)
        truth, unforced = ctx.truth, list(ctx.truth_unforced.values())
        refs[REFERENCES["forced"]] = LazyField(
            lambda r0, r1: band(truth, r0, r1) - sum(band(u, r0, r1) for u in unforced), truth.shape)
    rows = []
    for c, rec in ctx.rec.items():
        for ref, obs in refs.items():
            rows += skill_rows(c, take(rec, have), take(obs, have), ctx.times[have], cell_area=ctx.area, regions=regions,
                               reference=ref)
    df = pd.DataFrame(rows)
    ctx.numbers["skill_vs_truth"] = df.to_dict(orient="records")
    return ["Area-weighted medians over cells of the evaluation protocol (gtws_dl.evaluate.protocol.evaluate, "
            "as in the leaderboard and `skill_vs_truth.md`): r = Pearson correlation, NSE = Nash–Sutcliffe "
            "efficiency, KGE = Kling–Gupta efficiency, RMSE and bias in mm, cNSE = cyclostationary NSE (> 0 = better "
            "than the truth's mean seasonal cycle), amp = std(product) ÷ std(reference); signal *full*, "
            "*detrended+deseasonalized* (each series' own linear trend and monthly climatology over the period "
            "removed) or *low-pass* (12-month running mean of the deseasonalized anomaly: droughts, decades, trends); "
            "reference the truth or its forced stores (without pumping and land-ice loss).", "",
            df.to_markdown(index=False, floatfmt=".3f") if len(df) else "(no period with ≥ 24 common months)", ""]
