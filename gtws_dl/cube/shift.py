"""Do the predictors before the statistics period look like those the network is fitted on?

A reconstruction extrapolates back in time: the network and its base are fitted on GRACE-era months
(``periods.stats``: first GRACE month .. last training month) and applied to 1940 on. Where a channel's pre-GRACE
values leave that distribution — ERA5's sparser early observing system, a trend (warming), LAI or SIF held at
their climatology before their records begin — the reconstruction there is an extrapolation. The ingest
accumulates, per channel, each sampled land cell's mean and standard deviation over the months before the
statistics period and over it (:class:`CellMoments`, at most :data:`SAMPLE_CELLS` land cells on a regular
subsample, float64); :func:`summarize` turns them into the manifest's ``predictor_shift``: per channel the median
and 90th percentile over cells of ``|mean_before − mean|`` in the channel's normalisation std (the units the
network sees), and, over cells that vary, the median of the same shift in the cell's own std and of
``std_before / std`` (std over the months, seasonal cycle included). Training logs the channels beyond
:data:`SHIFT_LIMIT` or outside :data:`STD_RATIO_RANGE` (:func:`warnings`) and keeps the table in
``train_summary.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE_CELLS = 2000  # land cells sampled (every k-th land cell in row-major order)
SHIFT_LIMIT = 0.25  # median |shift of a cell's mean| in normalisation stds above which a channel extrapolates
STD_RATIO_RANGE = (0.5, 2.0)  # median std ratio outside which a channel's variability is not the trained one
AVAILABILITY = "_available"  # 0/1 record flags (lai_available, ...): datamodule.p_dropout trains their 0 state
MIN_CELL_STD = 0.05  # cells whose std over the period is below this many normalisation stds have no spread ratio


class CellMoments:
    """Per sampled land cell and channel: count, sum and sum of squares of finite values, for the months
    before ``start`` (index 0) and those in ``start .. end`` (index 1)."""

    def __init__(self, land: np.ndarray, n_channels: int, period: tuple[str, str]) -> None:
        idx = np.flatnonzero(np.asarray(land, bool).ravel())
        step = max(1, -(-idx.size // SAMPLE_CELLS))
        self.cells = idx[::step]  # flat indices into (lat, lon)
        self.width = land.shape[1]
        self.lo, self.hi = (pd.Timestamp(p) for p in period)
        self.acc = np.zeros((2, 3, n_channels, self.cells.size))  # (before|in, n|s|ss, channel, cell)

    def add(self, block: np.ndarray, times: pd.DatetimeIndex, r0: int) -> None:
        """``block`` (time, channel, rows, lon) of months ``times`` whose first row is grid row ``r0``."""
        rows = block.shape[2]
        local = self.cells - r0 * self.width
        sel = (local >= 0) & (local < rows * self.width)
        if not sel.any():
            return
        # the sampled cells first (time, channel, cells): a copy of a few hundred cells, never of the block (a
        # reshape of a band sliced from a larger block would copy it)
        here = local[sel]
        cells = block[:, :, here // self.width, here % self.width]
        for p, months in enumerate((times < self.lo, (times >= self.lo) & (times <= self.hi))):
            if not months.any():
                continue
            x = cells[months].astype(np.float64)
            ok = np.isfinite(x)
            x = np.where(ok, x, 0.0)
            self.acc[p, 0][:, sel] += ok.sum(0)
            self.acc[p, 1][:, sel] += x.sum(0)
            self.acc[p, 2][:, sel] += (x * x).sum(0)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, self.acc)
        tmp.replace(path)

    def restore(self, path: Path) -> bool:
        """Load the moments saved by :meth:`save`; False (and nothing changed) if absent or of another shape."""
        try:
            acc = np.load(path)
        except (OSError, ValueError):
            return False
        if acc.shape != self.acc.shape:
            return False
        self.acc = acc
        return True


def summarize(m: CellMoments, channels: Sequence[str], record_start: pd.Timestamp,
              norm_std: Sequence[float]) -> dict | None:
    """The manifest's ``predictor_shift`` (None when no month precedes the statistics period). ``norm_std``: each
    channel's normalisation std (the cube's ``stats``: the units the network sees)."""
    n, s, ss = m.acc[:, 0], m.acc[:, 1], m.acc[:, 2]  # (period, channel, cell)
    if not (n[0] > 0).any():
        return None
    scale = np.asarray(norm_std, float)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
        ok = (n[0] >= 12) & (n[1] >= 12)
        moved = np.where(ok, np.abs(mean[0] - mean[1]), np.nan)
        varies = ok & (std[1] >= MIN_CELL_STD * scale)  # a near-constant cell has no spread to compare
        ratio = np.where(varies, std[0] / std[1], np.nan)
        shift_cell = np.where(varies, moved / std[1], np.nan)
    out = {}
    for k, name in enumerate(channels):
        if not np.isfinite(moved[k]).any():
            out[name] = {"cells": 0}
            continue
        v = {"median_abs_shift_norm": float(np.nanmedian(moved[k] / scale[k])),
             "p90_abs_shift_norm": float(np.nanpercentile(moved[k] / scale[k], 90)),
             "cells": int(np.isfinite(moved[k]).sum())}
        if np.isfinite(ratio[k]).any():
            v |= {"median_abs_shift_cell": float(np.nanmedian(shift_cell[k])),
                  "median_std_ratio": float(np.nanmedian(ratio[k])), "cells_varying": int(np.isfinite(ratio[k]).sum())}
        out[name] = {key: round(x, 4) if isinstance(x, float) else x for key, x in v.items()}
    before_end = m.lo - pd.offsets.MonthBegin(1)
    return {"before": [f"{record_start:%Y-%m}", f"{before_end:%Y-%m}"],
            "period": [f"{m.lo:%Y-%m}", f"{m.hi:%Y-%m}"], "channels": out}


def warnings(shift: Mapping | None) -> list[str]:
    """One line per channel whose pre-period values leave the fitted distribution (empty: none, or no record)."""
    if not shift:
        return []
    lo, hi = STD_RATIO_RANGE
    lines = []
    for name, v in shift.get("channels", {}).items():
        if not v.get("cells") or name.endswith(AVAILABILITY):  # training drops LAI/SIF as before their records
            continue
        far = v["median_abs_shift_norm"] > SHIFT_LIMIT
        odd = (v.get("cells_varying", 0) >= v["cells"] / 2  # the spread of a mostly constant channel says little
               and not lo <= v["median_std_ratio"] <= hi)
        if far or odd:
            spread = (f", and their std is {v['median_std_ratio']:.2f}x that of {shift['period'][0]}.."
                      f"{shift['period'][1]}" if "median_std_ratio" in v else "")
            lines.append(f"{name}: over {shift['before'][0]}..{shift['before'][1]} its cells' mean moved by a median "
                         f"{v['median_abs_shift_norm']:.2f} normalisation std (90th percentile "
                         f"{v['p90_abs_shift_norm']:.2f}){spread}: the reconstruction extrapolates there")
    return lines
