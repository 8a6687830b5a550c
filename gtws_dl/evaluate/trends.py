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

from gtws_dl.evaluate.bands import band, bands
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
    return _ratio(*_area_sums(y, cell_area, mask))


def series_trend(series: np.ndarray, times) -> float:
    """Linear trend (units per year) of one series (time,)."""
    return float(trend_map(np.asarray(series, float)[:, None, None], times)[0, 0])


def trend_agreement(sim, obs, times, *, cell_area: np.ndarray, regions: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``{<region>_trend_sim, <region>_trend_obs, <region>_trend_err_rel}``: area-mean trends (mm/yr) of ``sim`` and
    ``obs`` over the cells where both have values, and the per-cell median |trend error| ÷ median |obs trend|.

    sim, obs : (time, lat, lon) mm on ``times`` (numpy, xarray or a :class:`~gtws_dl.evaluate.bands.LazyField`,
    read in latitude bands); ``obs`` may have NaN months (GRACE gaps): both use the same months.
    """
    acc = TrendAgreement(times, sim.shape[1:], cell_area=cell_area, regions=regions)
    for r0, r1 in bands(sim.shape):
        acc.add(r0, band(sim, r0, r1), band(obs, r0, r1))
    return acc.result()


class TrendAgreement:
    """:func:`trend_agreement` accumulated band by band (:meth:`add` rows, then :meth:`result`): per-cell trend
    maps filled row by row, the area-mean series' weighted sums added up."""

    def __init__(self, times, shape: tuple[int, int], *, cell_area: np.ndarray,
                 regions: Mapping[str, np.ndarray]) -> None:
        self.times, self.cell_area, self.regions = times, cell_area, regions
        self.ts, self.to = np.full(shape, np.nan), np.full(shape, np.nan)
        self.have = np.zeros(shape, bool)
        self.sums = {r: np.zeros((4, len(times))) for r in regions}  # sim sum, sim weights, obs sum, obs weights

    def add(self, r0: int, sim: np.ndarray, obs: np.ndarray) -> None:
        """Rows ``r0 .. r0 + sim.shape[1]`` of ``sim`` and ``obs`` (time, rows, lon) mm."""
        r1 = r0 + sim.shape[1]
        both = np.isfinite(sim) & np.isfinite(obs)
        s, o = np.where(both, sim, np.nan), np.where(both, obs, np.nan)
        self.ts[r0:r1], self.to[r0:r1] = trend_map(s, self.times), trend_map(o, self.times)
        self.have[r0:r1] = both.any(0)
        for rname, mask in self.regions.items():
            cells = mask[r0:r1] & self.have[r0:r1]
            self.sums[rname][:2] += _area_sums(s, self.cell_area[r0:r1], cells)
            self.sums[rname][2:] += _area_sums(o, self.cell_area[r0:r1], cells)

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for rname, mask in self.regions.items():
            cells = mask & self.have
            ns, ws, no, wo = self.sums[rname]
            out[f"{rname}_trend_sim"] = series_trend(_ratio(ns, ws), self.times)
            out[f"{rname}_trend_obs"] = series_trend(_ratio(no, wo), self.times)
            ref = area_weighted_median(np.abs(self.to), self.cell_area, cells)
            err = area_weighted_median(np.abs(self.ts - self.to), self.cell_area, cells)
            out[f"{rname}_trend_err_rel"] = err / ref if ref > 0 else float("nan")
        return out


def _area_sums(y: np.ndarray, cell_area: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(2, time): the area-weighted sum of ``y`` (time, lat, lon) over ``mask`` and its finite cells, and the
    weights summed (:func:`area_mean` is their ratio; sums of bands add up)."""
    w = np.where(mask, np.broadcast_to(cell_area, mask.shape), 0.0)
    y = np.asarray(y, float)
    ok = np.isfinite(y) & (w > 0)
    return np.stack([np.where(ok, y, 0.0).reshape(len(y), -1) @ w.ravel(), ok.reshape(len(y), -1) @ w.ravel()])


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
