"""Linear trends of TWSA fields and their agreement: per cell and of area means, in mm/yr.

The trend of a series is the slope of a linear trend + monthly climatology fitted by least squares over its finite
months (:func:`gtws_dl.seasonal.decompose`), so the seasonal cycle and gaps do not bias it. Agreement of a
simulation with a reference (e.g. a reconstruction with the GRACE target it was trained on, over the GRACE era):
the area-mean trends of both, and the area-weighted median of the per-cell ``|trend error|`` relative to the
area-weighted median ``|trend|`` of the reference.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from gtws_dl.evaluate.skill import area_weighted_median
from gtws_dl.post.regions import EVALUATION_REGIONS
from gtws_dl.seasonal import decimal_year, decompose

MIN_MONTHS = 36  # fewer valid months: no trend (NaN)
# the regions whose GRACE-era trends are compared (skill_vs_truth, the leaderboard): short name -> (mask of
# gtws_dl.post.regions.region_masks, label)
TREND_REGIONS: dict[str, tuple[str, str]] = {
    "land": ("global_land_excl_greenland_antarctica", EVALUATION_REGIONS["land"]),
    "greenland": ("greenland", "Greenland"),
    "antarctica": ("antarctica", "Antarctica"),
}


def trend_map(y: np.ndarray, times) -> np.ndarray:
    """Per-cell linear trend (lat, lon) in units of ``y`` per year, of ``y`` (time, lat, lon) on ``times``."""
    t = decimal_year(pd.DatetimeIndex(times))
    d = decompose(np.asarray(y, float), t, trend="linear", seasonal="climatology")
    slope = d.coefficients[d.columns.index("tau")]
    return np.where(d.n_fit >= MIN_MONTHS, slope, np.nan)


def area_mean(y: np.ndarray, cell_area: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Area-weighted mean series (time,) of ``y`` (time, lat, lon) over ``mask`` and the finite cells of each month;
    NaN for a month with no finite cell."""
    w = np.where(mask, np.broadcast_to(cell_area, mask.shape), 0.0)
    y = np.asarray(y, float)
    ok = np.isfinite(y) & (w > 0)
    num = np.where(ok, y, 0.0).reshape(len(y), -1) @ w.ravel()
    den = ok.reshape(len(y), -1) @ w.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def series_trend(series: np.ndarray, times) -> float:
    """Linear trend (units per year) of one series (time,)."""
    return float(trend_map(np.asarray(series, float)[:, None, None], times)[0, 0])


def trend_agreement(sim: np.ndarray, obs: np.ndarray, times, *, cell_area: np.ndarray,
                    regions: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``{<region>_trend_sim, <region>_trend_obs, <region>_trend_err_rel}``: area-mean trends (mm/yr) of ``sim`` and
    ``obs`` over the cells where both have values, and the per-cell median |trend error| ÷ median |obs trend|.

    sim, obs : (time, lat, lon) mm on ``times``; ``obs`` may have NaN months (GRACE gaps): both use the same months.
    """
    both = np.isfinite(sim) & np.isfinite(obs)
    sim, obs = np.where(both, sim, np.nan), np.where(both, obs, np.nan)
    ts, to = trend_map(sim, times), trend_map(obs, times)
    out: dict[str, float] = {}
    for rname, mask in regions.items():
        cells = mask & both.any(0)
        out[f"{rname}_trend_sim"] = series_trend(area_mean(sim, cell_area, cells), times)
        out[f"{rname}_trend_obs"] = series_trend(area_mean(obs, cell_area, cells), times)
        ref = area_weighted_median(np.abs(to), cell_area, cells)
        err = area_weighted_median(np.abs(ts - to), cell_area, cells)
        out[f"{rname}_trend_err_rel"] = err / ref if ref > 0 else float("nan")
    return out
