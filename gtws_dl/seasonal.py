"""Trend + seasonal + residual decomposition of monthly fields, NaN-aware and vectorised over cells.

Model, fitted per cell by least squares on the finite values inside ``fit_period``::

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
    t_ref = float(t[in_fit].mean())
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
    trend_c = X[:, :n_trend] @ beta[:, :n_trend].T
    seas_c = X[:, n_trend:] @ beta[:, n_trend:].T if p > n_trend else np.zeros_like(trend_c)
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
