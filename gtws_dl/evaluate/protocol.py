"""Evaluation protocol of the leaderboard: held-out GRACE months and the twin's truth, one set of metrics.

For a product (``gtws_dl_twsa_<centre>.nc``) and a reference (the cube's GRACE targets on the held-out months,
or the twin truth over a period), per-cell metrics — Pearson r, NSE, KGE, RMSE, bias, cyclostationary NSE — are
computed on the full signal and on the detrended+deseasonalized signal (each series' own linear trend and monthly
climatology over the evaluated months removed), then summarised by area-weighted medians over land excluding
Greenland and Antarctica and, separately, over the ice sheets. Calibration of a predicted ``twsa_std``: the
area-weighted fraction of cell-months with ``|error| < std`` (nominal 68.3 % for a Gaussian).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from gtws_dl.evaluate.skill import area_weighted_median, bias, cyclostationary_nse, kge, nse, pearson_r, rmse

METRICS = ("r", "nse", "kge", "rmse", "bias", "cnse")
REGIONS = {"land": "land excl. Greenland & Antarctica", "ice": "Greenland & Antarctica"}


def detrend_deseasonalize(y: np.ndarray, t_years: np.ndarray, months: np.ndarray) -> np.ndarray:
    """``y`` (time, ...) minus its per-cell least-squares linear trend + monthly means (NaN-aware)."""
    y = np.asarray(y, dtype=float)
    shp = y.shape
    Y = y.reshape(shp[0], -1)
    D = np.concatenate([np.eye(12)[months - 1], (t_years - t_years.mean())[:, None]], axis=1)
    D = D[:, D[:, :12].any(0).tolist() + [True]]  # calendar months present only
    ok = np.isfinite(Y)
    out = np.full_like(Y, np.nan)
    # cells with the same valid-month pattern share one least-squares solve (GRACE gaps are global)
    patterns, inv = np.unique(ok.T, axis=0, return_inverse=True)
    for p, pat in enumerate(patterns):
        cols = np.flatnonzero(inv.ravel() == p)
        if pat.sum() <= D.shape[1]:
            continue
        beta, *_ = np.linalg.lstsq(D[pat], Y[pat][:, cols], rcond=None)
        out[np.ix_(pat, cols)] = Y[pat][:, cols] - D[pat] @ beta
    return out.reshape(shp)


def cell_metrics(sim: np.ndarray, obs: np.ndarray, months: np.ndarray) -> dict[str, np.ndarray]:
    """Per-cell metric maps of ``sim`` against ``obs`` (time, lat, lon)."""
    return {"r": pearson_r(sim, obs), "nse": nse(sim, obs), "kge": kge(sim, obs), "rmse": rmse(sim, obs),
            "bias": bias(sim, obs), "cnse": cyclostationary_nse(sim, obs, months)}


def evaluate(sim: np.ndarray, obs: np.ndarray, times: pd.DatetimeIndex, *, cell_area: np.ndarray,
             regions: Mapping[str, np.ndarray], sim_std: np.ndarray | None = None) -> dict[str, float]:
    """Area-weighted medians ``{<region>_<signal>_<metric>: value}`` plus ``<region>_calib68``.

    sim, obs, sim_std : (time, lat, lon) mm on the evaluated months; signal ``full`` or ``dd``
    (detrended+deseasonalized).
    """
    times = pd.DatetimeIndex(times)
    months = times.month.values
    t_years = (times.year + (times.month - 0.5) / 12.0).values
    both = np.isfinite(sim) & np.isfinite(obs)
    sim, obs = np.where(both, sim, np.nan), np.where(both, obs, np.nan)
    out: dict[str, float] = {}
    for signal, (s, o) in {"full": (sim, obs),
                           "dd": (detrend_deseasonalize(sim, t_years, months),
                                  detrend_deseasonalize(obs, t_years, months))}.items():
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
