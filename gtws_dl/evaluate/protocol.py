"""Evaluation protocol of the leaderboard: held-out GRACE months and the twin's truth, one set of metrics.

For a product (``gtws_dl_twsa_<centre>.nc``) and a reference (the cube's GRACE targets on the held-out months,
or the twin truth over a period), per-cell metrics — Pearson r, NSE, KGE, RMSE, bias, cyclostationary NSE — are
computed on the full signal, on the detrended+deseasonalized signal (each series' own linear trend and monthly
climatology over the evaluated months removed: :func:`gtws_dl.seasonal.remove_climatology_trend`) and on the low-pass
signal (12-month running mean of the deseasonalized anomaly, :func:`gtws_dl.evaluate.skill.lowpass`: droughts,
decades and trends), with the amplitude ratio ``amp`` = std(sim) ÷ std(obs) of each signal, then summarised
by area-weighted medians over land excluding Greenland and Antarctica and, separately, over the ice sheets.
Calibration of a predicted ``twsa_std``: the area-weighted fraction of cell-months with ``|error| < std``
(nominal 68.3 % for a Gaussian).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from gtws_dl.evaluate.bands import band, bands
from gtws_dl.evaluate.skill import (
    amplitude_ratio,
    area_weighted_median,
    bias,
    cyclostationary_nse,
    kge,
    lowpass,
    nse,
    pearson_r,
    rmse,
)
from gtws_dl.post.regions import EVALUATION_REGIONS
from gtws_dl.seasonal import decimal_year, remove_climatology_trend

METRICS = ("r", "nse", "kge", "rmse", "bias", "cnse", "amp")
SIGNALS = ("full", "dd", "lp")  # full, detrended+deseasonalized, low-pass
REGIONS = EVALUATION_REGIONS  # defined once, with their masks, in gtws_dl.post.regions


def cell_metrics(sim: np.ndarray, obs: np.ndarray, months: np.ndarray) -> dict[str, np.ndarray]:
    """Per-cell metric maps of ``sim`` against ``obs`` (time, lat, lon)."""
    return {"r": pearson_r(sim, obs), "nse": nse(sim, obs), "kge": kge(sim, obs), "rmse": rmse(sim, obs),
            "bias": bias(sim, obs), "cnse": cyclostationary_nse(sim, obs, months), "amp": amplitude_ratio(sim, obs)}


def evaluate(sim, obs, times: pd.DatetimeIndex, *, cell_area: np.ndarray, regions: Mapping[str, np.ndarray],
             sim_std=None) -> dict[str, float]:
    """Area-weighted medians ``{<region>_<signal>_<metric>: value}`` plus ``<region>_calib68``.

    sim, obs, sim_std : (time, lat, lon) mm on the evaluated months (numpy, xarray or a lazy
    :class:`~gtws_dl.evaluate.bands.LazyField`), read in latitude bands; signal ``full`` or ``dd``
    (detrended+deseasonalized) or ``lp`` (low-pass).
    """
    ev = Evaluation(times, sim.shape[1:], cell_area=cell_area, regions=regions)
    for r0, r1 in bands(sim.shape):
        ev.add(r0, band(sim, r0, r1), band(obs, r0, r1), None if sim_std is None else band(sim_std, r0, r1))
    return ev.result()


class Evaluation:
    """:func:`evaluate` accumulated band by band: :meth:`add` the latitude rows of each field, in any order,
    then :meth:`result`. The per-cell maps are filled row by row, the calibration sums added up."""

    def __init__(self, times: pd.DatetimeIndex, shape: tuple[int, int], *, cell_area: np.ndarray,
                 regions: Mapping[str, np.ndarray]) -> None:
        times = pd.DatetimeIndex(times)
        self.months, self.t_years = times.month.values, decimal_year(times)
        self.cell_area, self.regions = cell_area, regions
        self.maps = {signal: {m: np.full(shape, np.nan) for m in METRICS} for signal in SIGNALS}
        self.calib = {r: [0.0, 0.0, []] for r in regions}  # sum of weights inside, sum of weights, the stds
        self.with_std = False

    def add(self, r0: int, sim: np.ndarray, obs: np.ndarray, sim_std: np.ndarray | None = None) -> None:
        """Rows ``r0 .. r0 + sim.shape[1]`` of ``sim``, ``obs`` (and ``sim_std``), (time, rows, lon) mm."""
        months, r1 = self.months, r0 + sim.shape[1]
        both = np.isfinite(sim) & np.isfinite(obs)
        s, o = np.where(both, sim, np.nan), np.where(both, obs, np.nan)
        for signal, (ss, oo) in {"full": (s, o),
                                 "dd": (remove_climatology_trend(s, self.t_years, months),
                                        remove_climatology_trend(o, self.t_years, months)),
                                 "lp": (lowpass(s, months), lowpass(o, months))}.items():
            for m, v in cell_metrics(ss, oo, months).items():
                self.maps[signal][m][r0:r1] = v
        if sim_std is None:
            return
        self.with_std = True
        inside = np.abs(s - o) < sim_std
        for rname, mask in self.regions.items():
            sel = both & mask[None, r0:r1]
            w = np.broadcast_to(self.cell_area[r0:r1], s.shape)[sel]
            self.calib[rname][0] += float((inside[sel] * w).sum())
            self.calib[rname][1] += float(w.sum())
            self.calib[rname][2].append(sim_std[sel])

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for signal in SIGNALS:
            for rname, mask in self.regions.items():
                for m, v in self.maps[signal].items():
                    out[f"{rname}_{signal}_{m}"] = area_weighted_median(v, self.cell_area, mask)
        if self.with_std:
            for rname, (inside_w, w, stds) in self.calib.items():
                out[f"{rname}_calib68"] = inside_w / w if w > 0 else float("nan")
                stds = np.concatenate(stds) if stds else np.zeros(0)
                out[f"{rname}_median_std_mm"] = float(np.median(stds)) if stds.size else float("nan")
        return out
