"""Section 1: per-centre skill maps (protocol metrics vs GRACE and vs the twin truth), trend and seasonal amplitude."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gtws_dl.evaluate import figures as fg
from gtws_dl.evaluate.bands import finite_months, maps, take
from gtws_dl.evaluate.protocol import cell_metrics
from gtws_dl.evaluate.report.context import LAND_EXCL, Context, in_period
from gtws_dl.evaluate.skill import area_weighted_median
from gtws_dl.seasonal import decimal_year, decompose


def median(field_: np.ndarray, ctx: Context, region: str = LAND_EXCL) -> float:
    """Area-weighted median of a per-cell map over a region (default: land excl. Greenland & Antarctica)."""
    return area_weighted_median(field_, ctx.area, ctx.masks[region])


def _panels(m: dict[str, np.ndarray], r_title: str, nse_title: str) -> list[fg.MapPanel]:
    return [fg.MapPanel(r_title, m["r"], "Pearson r", "RdBu_r", -1, 1),
            fg.MapPanel(nse_title, m["nse"], "NSE (–)", "RdBu_r", -1, 1)]


def _trend_amplitude(band: np.ndarray, t: np.ndarray, nh: int) -> dict[str, np.ndarray]:
    """Linear trend (mm/yr) and annual amplitude (mm) maps of a band (linear trend + ``nh`` harmonics)."""
    dec = decompose(band, t, n_harmonics=nh)
    return {"trend": dec.coefficients[dec.columns.index("tau")], "amp": dec.amplitude_phase(1)[0]}


def section_maps(ctx: Context) -> list[str]:
    md: list[str] = []
    tp = tuple(ctx.rc.truth_period)
    nh = int(ctx.rc.n_harmonics)
    t_dec = decimal_year(ctx.times)
    rows = []
    for c, rec in tqdm(ctx.rec.items(), desc="skill maps"):
        panels: list[fg.MapPanel] = []
        row: dict[str, object] = {"centre": c}
        if c in ctx.grace:
            g = ctx.grace[c]
            n_months = int(finite_months(g).sum())
            mon = ctx.times.month.to_numpy()
            m = maps(rec, lambda s, o, mon=mon: cell_metrics(s, o, mon), g)  # the evaluation protocol's metric maps
            panels += _panels(m, f"r vs GRACE ({n_months} GRACE months)", "NSE vs GRACE")
            row.update({"r vs GRACE": median(m["r"], ctx), "NSE vs GRACE": median(m["nse"], ctx)})
        if ctx.truth is not None:
            sel = in_period(ctx.times, tp)
            if sel.sum() >= 24:
                span = f"{ctx.times[sel][0]:%Y-%m}–{ctx.times[sel][-1]:%Y-%m}"
                mon = ctx.times[sel].month.to_numpy()
                m = maps(take(rec, sel), lambda s, o, mon=mon: cell_metrics(s, o, mon), take(ctx.truth, sel))
                panels += _panels(m, f"r vs twin truth {span}", f"NSE vs twin truth {span}")
                row.update({f"r vs truth {tp[0][:4]}–{tp[1][:4]}": median(m["r"], ctx),
                            f"NSE vs truth {tp[0][:4]}–{tp[1][:4]}": median(m["nse"], ctx)})
        tm = maps(rec, lambda b: _trend_amplitude(b, t_dec, nh))
        trend, amp = tm["trend"], tm["amp"]
        lim = fg.symmetric_limit(trend[ctx.masks[LAND_EXCL]])  # ice-sheet trends saturate the scale
        panels += [fg.MapPanel(f"linear trend {ctx.times[0]:%Y}–{ctx.times[-1]:%Y}", trend, "trend (mm yr⁻¹)",
                               "BrBG", -lim, lim),
                   fg.MapPanel("annual amplitude", amp, "amplitude (mm)", "viridis", 0, fg.symmetric_limit(amp))]
        row.update({"trend (mm/yr)": median(trend, ctx), "annual amplitude (mm)": median(amp, ctx)})
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
               f"({ctx.times[0]:%Y-%m}–{ctx.times[-1]:%Y-%m}, linear trend + {nh} harmonics). "
               "Grey: land cells where the metric is undefined.*", ""]
    if not ctx.grace:
        md.append(f"GRACE skill maps skipped: {ctx.notes.get('grace', 'no GRACE targets')}.")
    if ctx.truth is None:
        md.append(f"Truth skill maps skipped: {ctx.notes['truth']}.")
    df = pd.DataFrame(rows)
    ctx.numbers["map_medians"] = df.to_dict(orient="records")
    md += ["Area-weighted medians over land excluding Greenland and Antarctica (r, NSE: "
           "gtws_dl.evaluate.protocol, the metrics of the leaderboard and of section 8):", "",
           df.to_markdown(index=False, floatfmt=".3f"), ""]
    return md
