"""Section 6: El Niño − La Niña composites of detrended+deseasonalized TWSA (index from the cube's ERA5 ``skt``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gtws_dl.evaluate import enso
from gtws_dl.evaluate import figures as fg
from gtws_dl.evaluate.bands import maps
from gtws_dl.evaluate.report.context import LAND_EXCL, Context, Skip
from gtws_dl.evaluate.report.maps import median
from gtws_dl.evaluate.skill import pearson_r


def enso_index(ctx: Context, box: tuple[float, float, float, float]) -> np.ndarray:
    """The Niño-3.4-like index on the report months, from the cube channel ``skt`` over ``box`` (K)."""
    skt = ctx.predictor("skt")
    try:
        mean = enso.box_mean(skt, box)
    except ValueError as exc:  # a regional cube (grid.bbox) that does not reach the Pacific box
        raise Skip(f"the ENSO box is outside the cube grid {ctx.grid}: {exc}") from exc
    x = enso.enso_index(mean, running=int(ctx.rc.enso_running_months)).reindex(ctx.times).to_numpy(float)
    if np.isfinite(x).sum() < 24:
        raise Skip(f"the cube's ERA5 skt gives an index for only {np.isfinite(x).sum()} product months")
    return x


def _pattern_r(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b) & mask
    return float(pearson_r(a[ok], b[ok])) if ok.sum() > 2 else float("nan")


def section_enso(ctx: Context) -> list[str]:
    box = tuple(float(v) for v in ctx.rc.enso_box)
    x = enso_index(ctx, box)
    thr = float(ctx.rc.enso_threshold_k)
    fields = dict(ctx.detrended)
    if ctx.truth is not None:
        fields["truth"] = ctx.truth_dd
    comps, rows = {}, []
    n_nino, n_nina = int((x > thr).sum()), int((x < -thr).sum())
    for k, f in fields.items():  # maps band by band
        m = maps(f, lambda b: dict(zip(("composite", "regression"), enso.composite_maps(b, x, threshold=thr), strict=True)))
        comp = comps[k] = enso.EnsoComposite(m["composite"], m["regression"], n_nino, n_nina)
        rows.append({"field": k, "El Niño months": comp.n_nino, "La Niña months": comp.n_nina,
                     "median |composite| (mm)": median(np.abs(comp.composite), ctx),
                     "median regression (mm/K)": median(comp.regression, ctx)})
    if "truth" in comps:
        for r in rows:
            if r["field"] != "truth":
                r["pattern r vs truth"] = _pattern_r(comps[r["field"]].composite, comps["truth"].composite,
                                                     ctx.masks[LAND_EXCL])
    # colour scale from land without the ice sheets: their residual mass loss would wash out the ENSO signal
    lim = fg.symmetric_limit(*[c.composite[ctx.masks[LAND_EXCL]] for c in comps.values()])
    panels = [fg.MapPanel(f"{'twin truth' if k == 'truth' else f'gtws-dl {k.upper()}'}: El Niño − La Niña",
                          comp.composite, "TWSA (mm)", "BrBG", -lim, lim) for k, comp in comps.items()]
    name = "enso_composite.png"
    fg.map_grid(panels, ctx.grid.lon, ctx.grid.lat, ctx.fig(name), land=ctx.land, dpi=ctx.dpi, ncols=2,
                suptitle="El Niño minus La Niña composite of detrended+deseasonalized TWSA")
    iname = "enso_index.png"
    fg.series_grid([fg.SeriesPanel("Niño-3.4-like index from ERA5 skt", "anomaly (K)",
                                   [fg.Line(ctx.times, x, "index", {"color": "k"})], 0.0)],
                   ctx.fig(iname), ncols=1, width=11, height=2.6, dpi=ctx.dpi, suptitle="ENSO index")
    df = pd.DataFrame(rows)
    ctx.numbers["enso"] = df.to_dict(orient="records")
    return [f"Index: cos-latitude-weighted ERA5 skin temperature `skt` (the cube's predictor channel, on the product "
            f"grid) over {box[2]}..{box[3]}°N, {box[0]}..{box[1]}°E, anomaly from its monthly climatology, "
            f"{ctx.rc.enso_running_months}-month centred running mean; El Niño months: index > +{thr} K, La Niña: "
            f"< −{thr} K (month by month, no persistence rule).", "",
            f"![ENSO index]({iname})", "", f"![ENSO composite]({name})", "",
            "*Figure: mean detrended+deseasonalized TWSA (mm) in El Niño months minus La Niña months"
            + ("; the twin truth is detrended and deseasonalized with the same model" if "truth" in comps else "")
            + ". Colour scale from land without Greenland and Antarctica (ice-sheet cells saturate). On real data "
            "expect drying (negative values) over Amazonia, southern Africa, Australia and Indonesia during "
            "El Niño.*", "",
            df.to_markdown(index=False, floatfmt=".3f"), ""]
