"""Decimal years, trend + seasonal designs and their per-cell fits: the package's one owner of them.

Torch-free floor of the package (numpy and pandas; of the package at most :mod:`gtws_dl.conventions`). Time is in
decimal years, mid-month (:func:`decimal_year`); the anomaly baseline period is
:data:`gtws_dl.conventions.BASELINE`. Three fits, each kept with its own arithmetic (products, baselines and the
leaderboard depend on them bit for bit); which to use:

``decompose`` / ``detrend_deseasonalize``  (products, report, target base)
    Trend (linear, quadratic, piecewise) + seasonal cycle (harmonics, or a sum-to-zero monthly climatology),
    fitted on the finite values inside ``fit_period`` and evaluated over the whole series; returns the
    components and coefficients (:class:`Decomposition`); :func:`detrend_deseasonalize` is its residual.
``fit_seasonal_trend``  (baselines)
    12 monthly means + a linear trend in decades, fitted on the ``train`` months by :func:`ridge_per_cell`
    (λ = 1e-6); outside them the trend is held flat (``"hold"``), extrapolated or absent. Returns the fit.
``remove_climatology_trend``  (leaderboard, :mod:`gtws_dl.evaluate.protocol`)
    A series minus its own monthly means + linear trend over exactly the months given (the "dd" signal of the
    evaluation), by least squares shared among cells with the same valid-month pattern. Returns the residual.

``decompose`` model, fitted per cell by least squares on the finite values inside ``fit_period``::

    y(t) = trend(t) + seasonal(t) + residual(t)
    trend      linear     a0 + a1 τ                       τ = t − t_ref (years), t_ref = mean fit time
               quadratic  a0 + a1 τ + a2 τ²
               piecewise  a0 + a1 τ + Σ_k b_k max(0, t − B_k)   (continuous, breakpoints B_k)
    seasonal   harmonic   Σ_{h=1..n} c_h cos(2π h t) + s_h sin(2π h t)    (annual, semi-annual, ...)
               climatology  12 monthly effects summing to zero over the year (sum-to-zero coding)

Components are evaluated over the whole series (also outside the fit period and at NaN months);
``residual = y − trend − seasonal`` (NaN where ``y`` is NaN). Per cell, the normal equations
``XᵀWX β = XᵀWy`` (W = 0/1 finite mask) are built with two BLAS matrix products for all cells at
once and solved in batch; cells with too few or degenerate samples get NaN components.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

LOGGER = logging.getLogger(__name__)
_COND_MAX = 1e12


@dataclass
class Decomposition:
    """Result of :func:`decompose`; arrays have the shape of ``y`` unless stated.

    Attributes
    ----------
    trend, seasonal, residual : ndarray (time, ...), units of ``y``
    coefficients : ndarray (ncoef, ...)
        Per-cell coefficients in the order of ``columns``; the slope ``tau`` is in units of y per year.
    columns : tuple of str
        Names of the design-matrix columns (``const``, ``tau``, ``tau2``, ``hinge_<B>``, ``cos1``,
        ``sin1``, ..., or ``month01``..``month11`` for the climatology).
    t_ref : float
        Reference time (decimal years) of the trend polynomial.
    n_fit : ndarray (...)
        Number of finite samples used per cell.
    """

    trend: np.ndarray
    seasonal: np.ndarray
    residual: np.ndarray
    coefficients: np.ndarray
    columns: tuple[str, ...]
    t_ref: float
    n_fit: np.ndarray

    def amplitude_phase(self, harmonic: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Amplitude (units of y) and phase (decimal-year fraction of the maximum, 0..1/h) of a harmonic."""
        c = self.coefficients[self.columns.index(f"cos{harmonic}")]
        s = self.coefficients[self.columns.index(f"sin{harmonic}")]
        phase = np.mod(np.arctan2(s, c) / (2 * np.pi * harmonic), 1.0 / harmonic)
        return np.hypot(c, s), phase


def month_starts(times) -> pd.DatetimeIndex:
    """The first day of each stamp's month (``1999-12-16T12:00`` -> ``1999-12-01``), named ``time``. Shape (time,)."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(times).ravel()).to_period("M").to_timestamp(), name="time")


def decimal_year(times) -> np.ndarray:
    """Mid-month decimal years ``year + (month − 0.5) / 12`` of monthly time stamps.

    Any stamp inside a month (month start, mid-month) gives the same value. Shape (time,).
    """
    idx = pd.DatetimeIndex(np.asarray(times).ravel())
    return idx.year.to_numpy(float) + (idx.month.to_numpy(float) - 0.5) / 12.0


def _month_index(t: np.ndarray) -> np.ndarray:
    frac = t - np.floor(t)
    return np.clip(np.floor(frac * 12.0 + 1e-6).astype(int), 0, 11)


def _period_mask(t: np.ndarray, fit_period) -> np.ndarray:
    if fit_period is None:
        return np.ones(t.shape, bool)
    if len(fit_period) != 2:
        raise ValueError(f"fit_period must be (start, end), got {fit_period!r}")
    bounds = []
    for k, v in enumerate(fit_period):
        if isinstance(v, str):  # "YYYY" or "YYYY-MM", inclusive months
            p = pd.Period(v, freq="M") if "-" in v else pd.Period(f"{v}-{'01' if k == 0 else '12'}", freq="M")
            v = p.year + (p.month - 1.0) / 12.0 if k == 0 else p.year + p.month / 12.0
        bounds.append(float(v))
    if bounds[0] >= bounds[1]:
        raise ValueError(f"fit_period start must be before its end, got {fit_period!r}")
    return (t >= bounds[0]) & (t <= bounds[1])


def design_matrix(
    t: np.ndarray,
    *,
    t_ref: float,
    trend: Literal["linear", "quadratic", "piecewise"] = "linear",
    seasonal: Literal["harmonic", "climatology", "none"] = "harmonic",
    n_harmonics: int = 2,
    breakpoints: tuple[float, ...] = (),
) -> tuple[np.ndarray, tuple[str, ...], int]:
    """Design matrix (time, ncoef), column names and the number of trend columns."""
    tau = t - t_ref
    cols, names = [np.ones_like(t), tau], ["const", "tau"]
    if trend == "quadratic":
        cols.append(tau**2)
        names.append("tau2")
    elif trend == "piecewise":
        if not breakpoints:
            raise ValueError("trend='piecewise' needs breakpoints (decimal years)")
        for b in breakpoints:
            cols.append(np.maximum(0.0, t - b))
            names.append(f"hinge_{b:g}")
    elif trend != "linear":
        raise ValueError(f"trend must be 'linear', 'quadratic' or 'piecewise', got {trend!r}")
    n_trend = len(cols)
    if seasonal == "harmonic":
        if n_harmonics < 1:
            raise ValueError(f"n_harmonics must be >= 1, got {n_harmonics}")
        for h in range(1, n_harmonics + 1):
            cols += [np.cos(2 * np.pi * h * t), np.sin(2 * np.pi * h * t)]
            names += [f"cos{h}", f"sin{h}"]
    elif seasonal == "climatology":
        m = _month_index(t)
        for k in range(11):  # sum-to-zero coding: month 12 effect = −Σ others
            cols.append((m == k).astype(float) - (m == 11))
            names.append(f"month{k + 1:02d}")
    elif seasonal != "none":
        raise ValueError(f"seasonal must be 'harmonic', 'climatology' or 'none', got {seasonal!r}")
    return np.stack(cols, axis=1), tuple(names), n_trend


def decompose(
    y: np.ndarray,
    t: np.ndarray,
    *,
    fit_period: tuple[float | str, float | str] | None = None,
    trend: Literal["linear", "quadratic", "piecewise"] = "linear",
    seasonal: Literal["harmonic", "climatology", "none"] = "harmonic",
    n_harmonics: int = 2,
    breakpoints: tuple[float, ...] = (),
    block: int = 65536,
) -> Decomposition:
    """Fit trend + seasonal cycle per cell and split ``y`` into components.

    Parameters
    ----------
    y : array (time, ...)
        Monthly values (e.g. TWSA in mm), NaN allowed.
    t : array (time,)
        Decimal years (see :func:`decimal_year`), mid-month for ``seasonal='climatology'``.
    fit_period : (start, end), optional
        Fit only on samples with ``start <= t <= end``: floats are decimal years, strings
        ``"YYYY"``/``"YYYY-MM"`` are inclusive months (``("2002", "2020")`` = 2002-01..2020-12).
    trend, seasonal, n_harmonics, breakpoints
        See the module docstring.
    block : int
        Cells solved per batch (bounds the temporaries; results do not depend on it).

    Returns
    -------
    Decomposition
    """
    y = np.asarray(y, dtype=float)
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or y.ndim < 1 or y.shape[0] != t.shape[0]:
        raise ValueError(
            f"y has shape {y.shape} and t has shape {t.shape}; expected y (time, ...) and t (time,)"
        )
    if not np.all(np.isfinite(t)):
        raise ValueError("t (decimal years) must be finite")
    in_fit = _period_mask(t, fit_period)
    if not in_fit.any():
        raise ValueError(f"fit_period {fit_period!r} holds no time step of t ({t.min():.3f}..{t.max():.3f})")
    t_ref = fit_reference_time(t, fit_period)
    X, names, n_trend = design_matrix(
        t,
        t_ref=t_ref,
        trend=trend,
        seasonal=seasonal,
        n_harmonics=n_harmonics,
        breakpoints=tuple(breakpoints),
    )
    ntime, p = X.shape
    cells = y.reshape(ntime, -1)
    Xf = X * in_fit[:, None]
    scale = np.sqrt((Xf**2).sum(0) / max(1, in_fit.sum()))  # column scaling for conditioning
    scale[scale == 0] = 1.0
    Xs = X / scale
    XX = (Xs[:, :, None] * Xs[:, None, :]).reshape(ntime, p * p)
    beta = np.full((cells.shape[1], p), np.nan)
    n_fit = np.zeros(cells.shape[1])
    for c0 in range(0, cells.shape[1], block):  # bounded temporaries on 0.25 deg grids
        sl = slice(c0, c0 + block)
        W = (np.isfinite(cells[:, sl]) & in_fit[:, None]).astype(float)  # (time, n)
        A = (W.T @ XX).reshape(-1, p, p)  # normal matrices, (n, p, p)
        rhs = np.where(W > 0, cells[:, sl], 0.0).T @ Xs  # (n, p)
        n_fit[sl] = W.sum(0)
        ok = n_fit[sl] >= p
        if ok.any():
            ev = np.linalg.eigvalsh(A[ok])
            ok[np.flatnonzero(ok)[ev[:, 0] <= ev[:, -1] / _COND_MAX]] = False
        if ok.any():
            beta[c0 + np.flatnonzero(ok)] = np.linalg.solve(A[ok], rhs[ok][..., None])[..., 0]
    n_bad = int(np.isnan(beta[:, 0]).sum())
    if n_bad:
        LOGGER.debug(
            "%d of %d cells have too few/degenerate samples for %d coefficients", n_bad, beta.shape[0], p
        )
    beta = beta / scale  # back to unscaled coefficients
    trend_c, seas_c = _components(X, beta, n_trend)
    shape = y.shape
    trend_a = trend_c.reshape(shape)
    seas_a = seas_c.reshape(shape)
    return Decomposition(
        trend=trend_a,
        seasonal=seas_a,
        residual=y - trend_a - seas_a,
        coefficients=beta.T.reshape((p,) + shape[1:]),
        columns=names,
        t_ref=t_ref,
        n_fit=n_fit.reshape(shape[1:]),
    )


def detrend_deseasonalize(y: np.ndarray, t: np.ndarray, **kwargs) -> np.ndarray:
    """Residual of :func:`decompose` (same keyword options), shape of ``y``."""
    return decompose(y, t, **kwargs).residual


def fit_reference_time(t: np.ndarray, fit_period) -> float:
    """``t_ref`` of :func:`decompose`: the mean decimal year of the months of ``t`` inside ``fit_period``."""
    t = np.asarray(t, dtype=float)
    return float(t[_period_mask(t, fit_period)].mean())


def _components(X: np.ndarray, beta: np.ndarray, n_trend: int) -> tuple[np.ndarray, np.ndarray]:
    """Trend and seasonal (time, cells) of coefficients ``beta`` (cells, p) on the design ``X`` (time, p)."""
    trend_c = X[:, :n_trend] @ beta[:, :n_trend].T
    seas_c = X[:, n_trend:] @ beta[:, n_trend:].T if X.shape[1] > n_trend else np.zeros_like(trend_c)
    return trend_c, seas_c


def residual_of_fit(y: np.ndarray, t: np.ndarray, coefficients: np.ndarray, *, t_ref: float,
                    n_harmonics: int = 2) -> np.ndarray:
    """``y`` (time, ...) less a linear trend + harmonic seasonal cycle fitted earlier by :func:`decompose`
    (its ``coefficients`` (ncoef, ...) and ``t_ref``): the residual of months ``t`` outside the fit's series with
    the fit's own arithmetic, so equal to what ``decompose`` gives at the same months (the monthly update)."""
    y = np.asarray(y, dtype=float)
    t = np.asarray(t, dtype=float)
    X, _, n_trend = design_matrix(t, t_ref=t_ref, n_harmonics=n_harmonics)
    if coefficients.shape[0] != X.shape[1] or coefficients.shape[1:] != y.shape[1:]:
        raise ValueError(f"coefficients have shape {coefficients.shape}, expected {(X.shape[1],) + y.shape[1:]} "
                         f"(linear trend + {n_harmonics} harmonics for y of shape {y.shape})")
    beta = np.asarray(coefficients, dtype=float).reshape(X.shape[1], -1).T
    trend_c, seas_c = _components(X, beta, n_trend)
    return y - trend_c.reshape(y.shape) - seas_c.reshape(y.shape)


# ------------------------------------------------------------ monthly means + linear trend (baselines, leaderboard)
def ridge_per_cell(F: np.ndarray, y: np.ndarray, mask: np.ndarray, lam: float = 1e-3) -> np.ndarray:
    """Per-cell ridge regression ``argmin_b Σ_t m (y − F b)² + λ n ‖b‖²`` (intercept penalised alike).

    F (time, cell, p); y, mask (time, cell). Returns b (cell, p); cells without data get zeros.
    """
    m = (mask & np.isfinite(y)).astype(np.float64)
    Fm = F.astype(np.float64) * m[..., None]
    A = np.einsum("tcp,tcq->cpq", Fm, F.astype(np.float64))
    b = np.einsum("tcp,tc->cp", Fm, np.where(m > 0, y, 0.0).astype(np.float64))
    n = np.maximum(m.sum(0), 1.0)
    A += (lam * n)[:, None, None] * np.eye(F.shape[-1])[None]
    return np.linalg.solve(A, b[..., None])[..., 0]


def seasonal_trend_design(t_years: np.ndarray, months: np.ndarray, *, t_range: tuple[float, float] | None,
                          trend: str) -> np.ndarray:
    """Design (time, 13 or 12): monthly means (12 one-hot columns) + centred time (unless ``trend="none"``).

    ``t_range`` = (first, last) fitted time: with ``trend="hold"`` time is clipped to it.
    """
    cols = [np.eye(12)[months - 1]]
    if trend != "none":
        t0, t1 = t_range
        t = np.clip(t_years, t0, t1) if trend == "hold" else t_years
        cols.append(((t - 0.5 * (t0 + t1)) / 10.0)[:, None])  # decades
    return np.concatenate(cols, axis=1)


def fit_seasonal_trend(y: np.ndarray, t_years: np.ndarray, months: np.ndarray, train: np.ndarray, *,
                       trend: str = "hold") -> np.ndarray:
    """Per-cell monthly climatology + linear trend fitted on ``train`` months; the fit (time, cell) everywhere.

    y (time, cell); train (time,) bool. ``trend``: ``"hold"`` flat at its value on the first/last fitted
    month outside them, ``"extrapolate"`` continues the line, ``"none"`` fits monthly means only. Solved by
    :func:`ridge_per_cell` (λ = 1e-6); float32.
    """
    tt = t_years[train & np.isfinite(y).any(1)]
    D = seasonal_trend_design(t_years, months, t_range=(tt.min(), tt.max()), trend=trend)
    F = np.broadcast_to(D[:, None, :], (len(t_years), y.shape[1], D.shape[1]))
    beta = ridge_per_cell(F, y, np.broadcast_to(train[:, None], y.shape), lam=1e-6)
    return np.einsum("tp,cp->tc", D, beta).astype(np.float32)


def remove_climatology_trend(y: np.ndarray, t_years: np.ndarray, months: np.ndarray) -> np.ndarray:
    """``y`` (time, ...) minus its per-cell least-squares linear trend + monthly means (NaN-aware).

    Fitted on every finite value of the months given (the series' own climatology and trend over exactly
    these months); cells with no more finite months than coefficients are NaN.
    """
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
