"""Skill metrics reduced over time (axis 0), NaN-masked pairwise, returning per-cell arrays.

``sim`` and ``obs`` have shape (time, ...); a time step counts for a cell only where both are
finite. Each metric returns an array of shape ``obs.shape[1:]`` (a 0-d array for 1-D input);
cells with fewer than 2 valid pairs (or a zero denominator) are NaN. Area-weighted medians
summarise a per-cell metric map over a region.
"""

from __future__ import annotations

import logging

import numpy as np

LOGGER = logging.getLogger(__name__)


def _pairs(sim: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sim = np.asarray(sim, dtype=float)
    obs = np.asarray(obs, dtype=float)
    if sim.shape != obs.shape or sim.ndim < 1:
        raise ValueError(
            f"sim has shape {sim.shape} and obs has shape {obs.shape}; expected equal (time, ...) shapes"
        )
    valid = np.isfinite(sim) & np.isfinite(obs)
    n = valid.sum(axis=0).astype(float)
    return np.where(valid, sim, 0.0), np.where(valid, obs, 0.0), valid, n


def _mean(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, x.sum(axis=0) / np.where(n > 0, n, 1), np.nan)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def bias(sim: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Mean error ``mean(sim − obs)`` (units of the data)."""
    s, o, _, n = _pairs(sim, obs)
    return _mean(s - o, n)


def rmse(sim: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Root-mean-square error ``sqrt(mean((sim − obs)²))`` (units of the data)."""
    s, o, _, n = _pairs(sim, obs)
    return np.sqrt(_mean((s - o) ** 2, n))


def _moments(sim, obs):
    s, o, valid, n = _pairs(sim, obs)
    ms, mo = _mean(s, n), _mean(o, n)
    ds, do = np.where(valid, s - ms, 0.0), np.where(valid, o - mo, 0.0)
    return ds, do, ms, mo, n


def pearson_r(sim: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Pearson correlation ``Σ(s−s̄)(o−ō) / sqrt(Σ(s−s̄)² Σ(o−ō)²)``; invariant to scale and offset."""
    ds, do, _, _, _ = _moments(sim, obs)
    return _div((ds * do).sum(0), np.sqrt((ds**2).sum(0) * (do**2).sum(0)))


def nse(sim: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Nash–Sutcliffe efficiency ``1 − Σ(s−o)² / Σ(o−ō)²`` (Nash and Sutcliffe 1970, J. Hydrol. 10, 282–290).

    1 = perfect; 0 = as good as the observed mean; negative = worse.
    """
    s, o, valid, n = _pairs(sim, obs)
    _, do, _, _, _ = _moments(sim, obs)
    return np.where(n >= 2, 1.0 - _div(((s - o) ** 2).sum(0), (do**2).sum(0)), np.nan)


def kge(sim: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Kling–Gupta efficiency ``1 − sqrt((r−1)² + (α−1)² + (β−1)²)``, α = σs/σo, β = μs/μo.

    Gupta, H. V., Kling, H., Yilmaz, K. K., Martinez, G. F. (2009) J. Hydrol. 377, 80–91,
    doi:10.1016/j.jhydrol.2009.08.003. β is ill-defined for anomalies with μo ≈ 0 (NaN where μo = 0).
    """
    ds, do, ms, mo, n = _moments(sim, obs)
    r = pearson_r(sim, obs)
    alpha = _div(np.sqrt((ds**2).sum(0)), np.sqrt((do**2).sum(0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(mo != 0, ms / np.where(mo != 0, mo, 1.0), np.nan)
    return 1.0 - np.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2)


def _check_months(months: np.ndarray, ntime: int) -> np.ndarray:
    months = np.asarray(months).astype(int).ravel()
    if months.shape != (ntime,):
        raise ValueError(f"months has shape {months.shape}, expected ({ntime},)")
    if months.min() < 1 or months.max() > 12:
        raise ValueError(f"months must be calendar months 1..12, got {months.min()}..{months.max()}")
    return months


def climatology(y: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Monthly climatology (12, ...) of ``y`` (time, ...): NaN-aware mean per calendar month."""
    y = np.asarray(y, dtype=float)
    months = _check_months(months, y.shape[0])
    out = np.full((12,) + y.shape[1:], np.nan)
    for m in range(1, 13):
        sel = y[months == m]
        cnt = np.isfinite(sel).sum(0)
        if sel.shape[0]:
            out[m - 1] = np.where(cnt > 0, np.nansum(sel, 0) / np.maximum(cnt, 1), np.nan)
    return out


def deseasonalize(y: np.ndarray, months: np.ndarray) -> np.ndarray:
    """``y − clim(month)`` with the NaN-aware monthly climatology of ``y`` itself; shape of ``y``."""
    y = np.asarray(y, dtype=float)
    months = _check_months(months, y.shape[0])
    return y - climatology(y, months)[months - 1]


def cyclostationary_nse(sim: np.ndarray, obs: np.ndarray, months: np.ndarray) -> np.ndarray:
    """NSE against the observed seasonal cycle: ``1 − Σ(s−o)² / Σ(o − clim_o(month))²``.

    ``clim_o`` is the monthly climatology of ``obs`` over the valid pairs. > 0 means the
    simulation beats the observed mean seasonal cycle; the climatology itself scores 0
    (cf. the cyclostationary NSE of Humphrey and Gudmundsson 2019, ESSD 11, 1153–1170).
    """
    s, o, valid, n = _pairs(sim, obs)
    months = _check_months(months, s.shape[0])
    clim = climatology(np.where(valid, o, np.nan), months)
    dev = np.where(valid, o - np.nan_to_num(clim[months - 1]), 0.0)
    return np.where(n >= 2, 1.0 - _div(((s - o) ** 2).sum(0), (dev**2).sum(0)), np.nan)


def weighted_median(values: np.ndarray, weights: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Weighted median of the finite ``values`` (inside ``mask``) with non-negative ``weights``.

    The smallest value whose cumulative weight reaches half the total; where the cumulative
    weight equals exactly half, the mean of that value and the next (so equal weights give
    :func:`numpy.median`). NaN when nothing is selected or all weights are zero.
    """
    v = np.asarray(values, dtype=float)
    w = np.asarray(weights, dtype=float)
    if v.shape != w.shape:
        raise ValueError(f"values has shape {v.shape} and weights has shape {w.shape}; expected equal shapes")
    sel = np.isfinite(v) & np.isfinite(w)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != v.shape:
            raise ValueError(f"mask has shape {mask.shape}, expected {v.shape}")
        sel &= mask
    v, w = v[sel], w[sel]
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    total = w.sum()
    if v.size == 0 or total <= 0:
        return float("nan")
    order = np.argsort(v, kind="stable")
    v, cw = v[order], np.cumsum(w[order])
    half = total / 2.0
    i = int(np.searchsorted(cw, half * (1 - 1e-12)))
    j = int(np.searchsorted(cw, cw[i], side="right"))  # next value carrying weight
    if np.isclose(cw[i], half, rtol=1e-12, atol=0) and j < v.size:
        return float((v[i] + v[j]) / 2.0)
    return float(v[i])


def area_weighted_median(
    field: np.ndarray,
    cell_area: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    land_fraction: np.ndarray | None = None,
) -> float:
    """Median of a per-cell map (nlat, nlon) weighted by ``cell_area`` (m², × ``land_fraction``) over ``mask``."""
    w = np.asarray(cell_area, dtype=float)
    if land_fraction is not None:
        w = w * np.asarray(land_fraction, dtype=float)
    return weighted_median(field, np.broadcast_to(w, np.shape(field)), mask)


# ----------------------------------------------------------------------------------------- slow signals
LOWPASS_MONTHS = 12  # running-mean window of the low-pass signal (months)


def lowpass(y: np.ndarray, months: np.ndarray, window: int = LOWPASS_MONTHS) -> np.ndarray:
    """Centred ``window``-month running mean of the deseasonalized anomaly; (time, ...) like ``y``.

    NaN where the window is not complete (the record's ends, gaps): the interannual-to-decadal signal of a series.
    """
    d = deseasonalize(y, months)
    ok = np.isfinite(d)
    zero = np.zeros((1,) + d.shape[1:])
    cs = np.concatenate([zero, np.cumsum(np.where(ok, d, 0.0), 0)])
    cn = np.concatenate([zero, np.cumsum(ok, 0)])
    out = np.full(d.shape, np.nan)
    if d.shape[0] < window:
        return out
    lo = window // 2
    s = cs[window:] - cs[:-window]
    n = cn[window:] - cn[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[lo:lo + s.shape[0]] = np.where(n == window, s / window, np.nan)
    return out


def amplitude_ratio(sim: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """``std(sim) / std(obs)`` over the valid pairs (1 = the right amplitude; < 1 = damped)."""
    ds, do, _, _, _ = _moments(sim, obs)
    return _div(np.sqrt((ds**2).sum(0)), np.sqrt((do**2).sum(0)))
