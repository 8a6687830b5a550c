"""Mass- and water-budget diagnostics of a TWSA reconstruction, pure numpy/pandas on plain arrays.

Land–ocean mass budget
    A land mass anomaly ``M`` (Gt) is expressed as barystatic sea level ``SLE = −M / GT_PER_MM_SLE`` (mm):
    water leaving the land raises the sea. ``GT_PER_MM_SLE = ρ_w · A_ocean = 1000 kg m⁻³ × 3.618e14 m² ×
    1e-3 m / 1e12 = 361.8 Gt`` per mm (the usual "362 Gt ≈ 1 mm", e.g. Cazenave et al. 2018, ESSD 10, 1551).

Basin water balance
    ``dS/dt = P − E − R``. Storage anomalies are monthly *means*, so the centred difference
    ``(S[i+1] − S[i−1]) / 2`` (mm month⁻¹) of mean storage equals the flux filtered by the same operator,
    ``(F[i−1] + 2 F[i] + F[i+1]) / 4`` (mm month⁻¹) — exactly, when ``S`` is the monthly mean of the storage
    accumulated from ``F`` (see :func:`storage_from_flux`). Both are NaN at the first and last month.
    ERA5 sign: ``e`` is negative for evaporation, so ``P − E = tp + e``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from gtws_dl.evaluate.skill import deseasonalize, pearson_r, rmse
from gtws_dl.seasonal import decimal_year, month_starts

LOGGER = logging.getLogger(__name__)

OCEAN_AREA_M2 = 3.618e14  # global ocean area (Cazenave et al. 2018), m²
GT_PER_MM_SLE = 1000.0 * OCEAN_AREA_M2 * 1e-3 / 1e12  # 361.8 Gt of water = 1 mm of global mean sea level


def gt_to_sle_mm(gt: np.ndarray | float) -> np.ndarray:
    """Land mass anomaly (Gt) → sea-level equivalent (mm); land loss (negative Gt) = sea-level rise (positive)."""
    return -np.asarray(gt, dtype=float) / GT_PER_MM_SLE


def sle_mm_to_gt(sle: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`gt_to_sle_mm`."""
    return -np.asarray(sle, dtype=float) * GT_PER_MM_SLE


def days_in_month(times) -> np.ndarray:
    """Days in the month of each stamp, shape (time,)."""
    return pd.DatetimeIndex(np.asarray(times).ravel()).days_in_month.to_numpy(float)


def per_month(flux_mm_day: np.ndarray, times) -> np.ndarray:
    """Flux in mm day⁻¹ (time, ...) → mm month⁻¹ (× days in each month)."""
    f = np.asarray(flux_mm_day, dtype=float)
    d = days_in_month(times)
    return f * d.reshape((-1,) + (1,) * (f.ndim - 1))


def centred_difference(storage: np.ndarray) -> np.ndarray:
    """``(S[i+1] − S[i−1]) / 2`` along axis 0 (units of S per month); NaN at both ends, shape of S."""
    s = np.asarray(storage, dtype=float)
    out = np.full(s.shape, np.nan)
    if s.shape[0] >= 3:
        out[1:-1] = (s[2:] - s[:-2]) / 2.0
    return out


def centred_flux(flux: np.ndarray) -> np.ndarray:
    """``(F[i−1] + 2 F[i] + F[i+1]) / 4`` along axis 0: the flux seen by :func:`centred_difference` of mean storage."""
    f = np.asarray(flux, dtype=float)
    out = np.full(f.shape, np.nan)
    if f.shape[0] >= 3:
        out[1:-1] = (f[:-2] + 2.0 * f[1:-1] + f[2:]) / 4.0
    return out


def storage_from_flux(flux: np.ndarray, s0: float = 0.0) -> np.ndarray:
    """Monthly-mean storage of a store filled by ``flux`` (mm month⁻¹, axis 0) from ``s0`` at the first month's start.

    End-of-month storage is ``s0 + cumsum(F)``; the monthly mean is the mean of the month's start and end
    (linear filling within the month). Used to build known answers for :func:`water_balance`.
    """
    f = np.asarray(flux, dtype=float)
    end = s0 + np.cumsum(f, axis=0)
    start = np.concatenate([np.full((1,) + f.shape[1:], s0), end[:-1]], axis=0)
    return 0.5 * (start + end)


def water_balance(storage_mm: np.ndarray, p_mm_day: np.ndarray, e_mm_day: np.ndarray, r_mm_day: np.ndarray,
                  times) -> pd.DataFrame:
    """Storage change vs ``P − E − R`` for one basin series.

    Parameters
    ----------
    storage_mm : (time,) basin-mean TWSA, mm.
    p_mm_day, e_mm_day, r_mm_day : (time,) basin-mean precipitation, evaporation (ERA5 sign: negative =
        evaporation) and runoff, mm day⁻¹.
    times : (time,) month stamps.

    Returns
    -------
    DataFrame indexed by month start with ``dsdt`` (centred difference, mm month⁻¹) and ``p_e_r``
    (``P + e − R`` filtered by :func:`centred_flux`, mm month⁻¹).
    """
    fl = per_month(np.asarray(p_mm_day, float) + np.asarray(e_mm_day, float) - np.asarray(r_mm_day, float), times)
    idx = month_starts(times)
    return pd.DataFrame({"dsdt": centred_difference(storage_mm), "p_e_r": centred_flux(fl)}, index=idx)


def linear_trend(y: np.ndarray, times) -> float:
    """Least-squares slope of a series per year (units of y per year), NaN-aware; NaN if < 3 valid values."""
    y = np.asarray(y, dtype=float)
    t = decimal_year(times)
    ok = np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    return float(np.polyfit(t[ok], y[ok], 1)[0])


def mass_budget_numbers(rec_gt: pd.Series, truth_gt: pd.Series, period: tuple[str, str]) -> dict[str, float]:
    """Land–ocean budget figures of a reconstructed global land mass series against a reference.

    Both series are Gt, indexed by month start. Over the months of ``period`` (inclusive "YYYY-MM") common to
    both: Pearson r of the monthly series, r after removing each series' mean seasonal cycle, the linear
    trends (Gt yr⁻¹), the trend error ``rec − truth`` (Gt yr⁻¹ and mm SLE yr⁻¹, sign as :func:`gt_to_sle_mm`)
    and the RMSE (Gt).
    """
    a, b = period
    common = rec_gt.index.intersection(truth_gt.index)
    common = common[(common >= pd.Timestamp(a)) & (common <= pd.Timestamp(b))]
    s = rec_gt.reindex(common).to_numpy(float)
    o = truth_gt.reindex(common).to_numpy(float)
    if len(common) < 3:
        nan = float("nan")
        return {"n_months": len(common), "r": nan, "r_deseasonalized": nan, "trend_rec_gt_yr": nan,
                "trend_ref_gt_yr": nan, "trend_error_gt_yr": nan, "trend_error_mm_sle_yr": nan, "rmse_gt": nan}
    months = common.month.to_numpy()
    tr, tt = linear_trend(s, common), linear_trend(o, common)
    return {
        "n_months": int(len(common)),
        "r": float(pearson_r(s, o)),
        "r_deseasonalized": float(pearson_r(deseasonalize(s, months), deseasonalize(o, months))),
        "trend_rec_gt_yr": tr,
        "trend_ref_gt_yr": tt,
        "trend_error_gt_yr": tr - tt,
        "trend_error_mm_sle_yr": float(gt_to_sle_mm(tr - tt)),
        "rmse_gt": float(rmse(s - np.nanmean(s), o - np.nanmean(o))),
    }
