"""Section 7: comparison with published reconstructions (GTWS-MLrec, GRACE-REC, any CF TWS field).

The one part of the report that reads files no gtws-dl stage wrote: they come through their readers in
:mod:`gtws_dl.io.published` (the owner of those formats) and are regridded to the product grid by
:func:`gtws_dl.io.regrid.regrid_conservative` (the owner of regridding) when their grid differs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gtws_dl.evaluate import figures as fg
from gtws_dl.evaluate.bands import LazyField, finite_months, mapped, maps
from gtws_dl.evaluate.report.context import (
    COLOURS,
    LAND_EXCL,
    Context,
    Skip,
    on_same_grid,
    pretty,
)
from gtws_dl.evaluate.report.maps import median
from gtws_dl.evaluate.skill import deseasonalize, pearson_r
from gtws_dl.io.published import open_grace_rec, open_gtws_mlrec, open_tws_field
from gtws_dl.io.regrid import regrid_conservative, to_canonical

READERS: dict[str, Callable[[str], xr.DataArray]] = {
    "gtws_mlrec": open_gtws_mlrec, "grace_rec": open_grace_rec, "tws_field": open_tws_field}


def on_product_grid(da: xr.DataArray, ctx: Context, desc: str) -> LazyField:
    """A published field on the product grid and months (conservative regridding, in time blocks), land only,
    read by latitude bands."""
    da = to_canonical(da).transpose("time", "lat", "lon")
    remap = None if on_same_grid(da, ctx.grid) else (lambda blk: regrid_conservative(blk, ctx.grid))
    return ctx.lazy(da, f"published_{desc}", remap=remap, land=ctx.land)


def _running12(s: pd.Series) -> np.ndarray:
    return s.rolling(12, center=True, min_periods=12).mean().values


def section_published(ctx: Context) -> list[str]:
    given = {k: v for k, v in (ctx.rc.get("published") or {}).items() if v}
    if not given:
        raise Skip("no published reconstruction given (report.published.gtws_mlrec / grace_rec / tws_field)")
    unknown = sorted(set(given) - set(READERS))
    if unknown:
        raise ValueError(f"report.published.{unknown[0]}: unknown product; known: {sorted(READERS)}")
    months = ctx.times.month.to_numpy()
    m = {LAND_EXCL: ctx.masks[LAND_EXCL]}
    col = f"{LAND_EXCL}_mm"
    rec_ds = {c: mapped(a, lambda b: deseasonalize(b, months)) for c, a in ctx.rec.items()}
    rec_s = {c: ctx.series(a, m)[col] for c, a in rec_ds.items()}
    lines = [fg.Line(ctx.times, _running12(rec_s[c]), f"gtws-dl {c.upper()}", {"color": COLOURS.get(c)})
             for c in rec_ds]
    panels, rows = [], []
    for key, path in given.items():
        arr = on_product_grid(READERS[key](path), ctx, key)
        pub = mapped(arr, lambda b: deseasonalize(b, months))
        s = ctx.series(pub, m)[col]
        lines.append(fg.Line(ctx.times, _running12(s), key, {"lw": 1.0}))
        for c, a in rec_ds.items():
            r = maps(a, lambda x, y: {"r": pearson_r(x, y)}, pub)["r"]
            panels.append(fg.MapPanel(f"r: gtws-dl {c.upper()} vs {key}", r, "Pearson r", "RdBu_r", -1, 1))
            rows.append({"product": key, "file": Path(path).name, "centre": c,
                         "months": int(finite_months(arr).sum()),
                         "median r (cells)": median(r, ctx),
                         "r global series": float(pearson_r(rec_s[c].values, s.values))})
    name, sname = "published_r.png", "published_series.png"
    fg.map_grid(panels, ctx.grid.lon, ctx.grid.lat, ctx.fig(name), land=ctx.land, dpi=ctx.dpi,
                suptitle="Correlation with published reconstructions (deseasonalized, common months)")
    fg.series_grid([fg.SeriesPanel(f"{pretty(LAND_EXCL)}, deseasonalized, 12-month running mean", "TWSA (mm)",
                                   lines, 0.0)], ctx.fig(sname), ncols=1, width=11, height=3.2, dpi=ctx.dpi,
                   suptitle="Global land (excl. Greenland & Antarctica) mean TWSA")
    df = pd.DataFrame(rows)
    ctx.numbers["published"] = df.to_dict(orient="records")
    return ["Published fields are read with gtws_dl.io.published, regridded conservatively to the product grid and "
            "compared on common months after removing each series' monthly climatology (GRACE-REC's ensemble mean is "
            "itself deseasonalized).", "", f"![published r]({name})", "", f"![published series]({sname})", "",
            df.to_markdown(index=False, floatfmt=".3f"), ""]
