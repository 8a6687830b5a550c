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


def evaluate(sim: np.ndarray, obs: np.ndarray, times: pd.DatetimeIndex, *, cell_area: np.ndarray,
             regions: Mapping[str, np.ndarray], sim_std: np.ndarray | None = None) -> dict[str, float]:
    """Area-weighted medians ``{<region>_<signal>_<metric>: value}`` plus ``<region>_calib68``.

    sim, obs, sim_std : (time, lat, lon) mm on the evaluated months; signal ``full`` or ``dd``
    (detrended+deseasonalized) or ``lp`` (low-pass).
    """
    times = pd.DatetimeIndex(times)
    months = times.month.values
    t_years = decimal_year(times)
    both = np.isfinite(sim) & np.isfinite(obs)
    sim, obs = np.where(both, sim, np.nan), np.where(both, obs, np.nan)
    out: dict[str, float] = {}
    for signal, (s, o) in {"full": (sim, obs),
                           "dd": (remove_climatology_trend(sim, t_years, months),
                                  remove_climatology_trend(obs, t_years, months)),
                           "lp": (lowpass(sim, months), lowpass(obs, months))}.items():
        maps = cell_metrics(s, o, months)
        for rname, mask in regions.items():
            for m, v in maps.items():
                out[f"{rname}_{signal}_{m}"] = area_weighted_median(v, cell_area, mask)
    if sim_std is not None:
        inside = np.abs(sim - obs) < sim_std
        for rname, mask in regions.items():
            sel = both & mask[None]
            w = np.broadcast_to(cell_area, sim.shape)[sel]
            out[f"{rname}_calib68"] = float((inside[sel] * w).sum() / w.sum()) if w.sum() > 0 else float("nan")
            out[f"{rname}_median_std_mm"] = float(np.median(sim_std[sel])) if sel.any() else float("nan")
    return out
