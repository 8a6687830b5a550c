"""Per-cell target base: the GRACE-era seasonal cycle and linear trend a network's output is added to.

With ``kind="seasonal_trend"`` a network learns ``(twsa − base) / scale`` instead of ``twsa / scale``, where,
per target centre and cell, fitted on the training months only (:func:`gtws_dl.seasonal.decompose`)::

    base(t) = a0 + a1 (clip(t, t_lo, t_hi) − t_ref) + clim(month(t))      mm

``clim`` is a monthly climatology (12 effects summing to zero) and the trend is held flat outside the fitted
months ``[t_lo, t_hi]`` (decimal years), the model of the climatology, GRACE-REC and tree baselines
(:func:`gtws_dl.seasonal.fit_seasonal_trend`, there by ridge on one-hot months; here the coefficients are
kept). ``kind="none"`` is a zero base (the network predicts the whole signal). The coefficients travel in the
checkpoint (buffer ``target_base`` of :class:`gtws_dl.models.module.ReconstructionModule`), the kind and times
in its normalisation dictionary, so reconstruction needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gtws_dl.seasonal import decimal_year, decompose, design_matrix

KINDS = ("none", "seasonal_trend")


def n_coefficients(kind: str) -> int:
    """Coefficients per cell: const + slope + 11 monthly effects; 0 for ``none``."""
    if kind not in KINDS:
        raise ValueError(f"datamodule.target_base={kind!r}; expected one of {KINDS}")
    return 0 if kind == "none" else 13


@dataclass
class TargetBase:
    """Fitted base of K targets on an (H, W) grid.

    coef : (K, P, H, W) float32, zeros where a cell has no fit (ocean, too few months)
    t_ref, t_lo, t_hi : decimal years: trend origin and the fitted span (trend held flat outside)
    """

    kind: str
    coef: np.ndarray
    t_ref: float = 0.0
    t_lo: float = 0.0
    t_hi: float = 0.0

    def design(self, times) -> np.ndarray:
        """Design rows (time, P) for month stamps ``times``; the slope column uses the clipped time."""
        t = decimal_year(times)
        if self.kind == "none":
            return np.zeros((len(t), 0))
        X, _, _ = design_matrix(t, t_ref=self.t_ref, seasonal="climatology")
        X[:, 1] = np.clip(t, self.t_lo, self.t_hi) - self.t_ref
        return X

    def evaluate(self, times, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """Base in mm, shape (K, time, h, w), over the grid window ``rows`` × ``cols``."""
        c = self.coef[:, :, rows, cols]
        if self.kind == "none":
            return np.zeros((c.shape[0], len(times), *c.shape[2:]), np.float32)
        return np.einsum("tp,kphw->kthw", self.design(times).astype(np.float32), c)

    def meta(self) -> dict:
        """JSON-able description (saved in the checkpoint's normalisation)."""
        return {"kind": self.kind, "t_ref": self.t_ref, "t_lo": self.t_lo, "t_hi": self.t_hi}

    @classmethod
    def from_meta(cls, meta: dict | None, coef: np.ndarray | None) -> TargetBase:
        if not meta or meta.get("kind", "none") == "none" or coef is None:
            return cls("none", np.zeros((0, 0, 0, 0), np.float32))
        return cls(meta["kind"], np.asarray(coef, np.float32), float(meta["t_ref"]), float(meta["t_lo"]),
                   float(meta["t_hi"]))


def fit_target_base(targ: np.ndarray, times: pd.DatetimeIndex, train: np.ndarray, kind: str) -> TargetBase:
    """Fit the base per target and cell on the months ``train`` (indices into ``times``).

    targ : (K, T, H, W) mm, NaN where no solution (ocean, GRACE gaps)
    """
    p = n_coefficients(kind)
    K, _, H, W = targ.shape
    if p == 0:
        return TargetBase("none", np.zeros((K, 0, H, W), np.float32))
    t = decimal_year(times)
    sub = np.asarray(train)
    lo, hi = float(t[sub[0]]), float(t[sub[-1]])
    coef = np.zeros((K, p, H, W), np.float32)
    t_ref = 0.0
    for k in range(K):
        y = np.full((len(t), H, W), np.nan)
        y[sub] = targ[k, sub]  # only training months enter the fit
        d = decompose(y, t, fit_period=(lo, hi), trend="linear", seasonal="climatology")
        coef[k] = np.nan_to_num(d.coefficients).astype(np.float32)
        t_ref = d.t_ref
    return TargetBase(kind, coef, float(t_ref), lo, hi)
