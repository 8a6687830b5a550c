"""Honest baselines on the same cube and the same blocked split as the networks.

Every baseline takes the cube's land cells as arrays (a :class:`gtws_dl.cells.CubeCells`
from :func:`gtws_dl.cells.load_cells`), fits on the training GRACE months of :func:`gtws_dl.split.time_split`
only and returns its prediction of every month of the record, (target, time, cell) mm; it reads and writes no
file. :func:`gtws_dl.experiments.baselines.run_baseline` fits one and writes its reconstruction store in the
layout of :func:`gtws_dl.reconstruct.reconstruct`, so the same products and skill code evaluate it.

``climatology``
    Per cell: mean monthly cycle + linear trend (least squares on the training months).
``grace_rec``
    Per cell (Humphrey and Gudmundsson 2019, ESSD 11, 1153–1170, doi:10.5194/essd-11-1153-2019): the
    detrended and deseasonalized target is a linear function (ridge) of exponentially decayed antecedent
    precipitation and temperature anomalies with a few decay times; trend and seasonal cycle are added back.
``gbt``
    One global gradient-boosted tree model (LightGBM; scikit-learn's HistGradientBoostingRegressor if LightGBM
    is missing) over all land cells, on per-cell predictor vectors (current month, lags, decayed anomalies,
    the cell's fitted seasonal value), predicting the detrended+deseasonalized target in units of its per-cell
    standard deviation; trend and seasonal cycle are added back. It stands in for the tree ensembles of the
    ML literature.

Trend outside the fitted months: ``trend="hold"`` (default) keeps it flat at its value on the first/last
training month, ``"extrapolate"`` continues the line, ``"none"`` fits none.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from gtws_dl.cells import CubeCells
from gtws_dl.seasonal import fit_seasonal_trend, ridge_per_cell

LOGGER = logging.getLogger(__name__)
KINDS = ("climatology", "grace_rec", "gbt")


# ----------------------------------------------------------------------------------------- building blocks
# (per-cell monthly climatology + trend fits and the ridge solver: gtws_dl.seasonal)
def monthly_anomaly(x: np.ndarray, months: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``x`` (time, cell) minus its monthly climatology over the ``ref`` months."""
    clim = np.stack([x[ref & (months == m)].mean(0) for m in range(1, 13)])
    return (x - clim[months - 1]).astype(np.float32)


def decayed(x: np.ndarray, taus) -> np.ndarray:
    """Exponentially decayed antecedent sums ``s_t = a x_t + (1 − a) s_{t−1}``, a = 1 − e^{−1/τ}.

    x (time, cell) anomalies (starting from 0 = the mean state); returns (time, cell, len(taus)).
    """
    out = np.empty(x.shape + (len(taus),), np.float32)
    for j, tau in enumerate(taus):
        a = 1.0 - np.exp(-1.0 / float(tau))
        s = np.zeros(x.shape[1], np.float64)
        for t in range(x.shape[0]):
            s = a * x[t] + (1 - a) * s
            out[t, :, j] = s
    return out


def _stats_months(cells: CubeCells) -> np.ndarray:
    """Months used for predictor climatologies: the training period (predictors exist every month)."""
    s = cells.split
    ref = np.zeros(len(cells.times), bool)
    ref[s.train[0]:s.train_end + 1] = True
    return ref


def forcing_memory(cells: CubeCells, *, p_taus, t_taus, p_channel: str = "tp",
                   t_channel: str | None = "t2m") -> np.ndarray:
    """Decayed precipitation and temperature anomalies, normalised: (time, cell, features)."""
    ref = _stats_months(cells)
    feats = []
    for name, taus in ((p_channel, p_taus), (t_channel, t_taus)):
        if not taus or name is None:
            continue
        c = cells.channels.index(name)
        anom = monthly_anomaly(cells.X[:, c], cells.months, ref) / cells.std[c]
        feats.append(decayed(anom, taus))
    return np.concatenate(feats, axis=2)


# ----------------------------------------------------------------------------------------- models
def predict_climatology(cells: CubeCells, *, trend: str = "hold") -> np.ndarray:
    """(target, time, cell) mm: per-cell monthly climatology + linear trend."""
    train = cells.train_mask()
    return np.stack([fit_seasonal_trend(y, cells.t_years, cells.months, train, trend=trend) for y in cells.Y])


def predict_grace_rec(cells: CubeCells, *, trend: str = "hold", p_taus=(1, 3, 6, 12, 24), t_taus=(3, 12),
                      lam: float = 1e-2, p_channel: str = "tp", t_channel: str | None = "t2m") -> np.ndarray:
    """(target, time, cell) mm: seasonal + trend + ridge on decayed P/T anomalies of the residual."""
    train = cells.train_mask()
    F = forcing_memory(cells, p_taus=p_taus, t_taus=t_taus, p_channel=p_channel, t_channel=t_channel)
    F = np.concatenate([F, np.ones(F.shape[:2] + (1,), np.float32)], axis=2)
    out = []
    for y in cells.Y:
        base = fit_seasonal_trend(y, cells.t_years, cells.months, train, trend=trend)
        resid = y - base
        mask = np.broadcast_to(train[:, None], y.shape)
        beta = ridge_per_cell(F, resid, mask, lam=lam)
        out.append(base + np.einsum("tcp,cp->tc", F, beta).astype(np.float32))
    return np.stack(out)


def _gbt_features(cells: CubeCells, mem: np.ndarray, base: np.ndarray, scale: np.ndarray, sl,
                  lags=(1, 2, 3), p_channel: str = "tp") -> np.ndarray:
    """Rows (time × cell, features) for months ``sl``: normalised predictors, lagged tp, decayed P/T
    anomalies, calendar month, the cell's fitted seasonal+trend value in units of its scale, lat/lon."""
    t_idx = np.arange(len(cells.times))[sl]
    n = cells.X.shape[2]
    xn = (cells.X[t_idx] - cells.mean[None, :, None]) / cells.std[None, :, None]  # (t, C, cell)
    parts = [xn.transpose(0, 2, 1)]
    ctp = cells.channels.index(p_channel)
    for lag in lags:
        li = np.clip(t_idx - lag, 0, None)
        parts.append(((cells.X[li, ctp] - cells.mean[ctp]) / cells.std[ctp])[..., None])
    parts.append(mem[t_idx])
    ang = 2 * np.pi * cells.months[t_idx] / 12.0
    parts.append(np.broadcast_to(np.stack([np.sin(ang), np.cos(ang)], 1)[:, None, :], (len(t_idx), n, 2)))
    parts.append((base[t_idx] / scale)[..., None])
    ii, jj = np.nonzero(cells.land)
    geo = np.stack([cells.lat[ii] / 90.0, np.sin(np.deg2rad(cells.lon[jj])), np.cos(np.deg2rad(cells.lon[jj]))], 1)
    parts.append(np.broadcast_to(geo[None], (len(t_idx), n, 3)))
    return np.concatenate(parts, axis=2).reshape(len(t_idx) * n, -1).astype(np.float32)


def predict_gbt(cells: CubeCells, *, trend: str = "hold", p_taus=(1, 3, 6, 12, 24), t_taus=(3, 12),
                max_rows: int = 300_000, n_estimators: int = 150, learning_rate: float = 0.1,
                num_leaves: int = 31, seed: int = 0, n_jobs: int = 2, min_scale_mm: float = 10.0,
                block: int = 120, p_channel: str = "tp", t_channel: str | None = "t2m") -> np.ndarray:
    """(target, time, cell) mm: per-target seasonal + trend fits plus one global tree model of the residual.

    The tree model learns the residual in units of its per-cell scale, averaged over the targets (the centres
    differ mostly by noise, and one network serves all centres alike), so it is fitted and evaluated once:
    prediction over every cell-month (millions of rows × trees) dominates the cost.
    """
    train = cells.train_mask()
    mem = forcing_memory(cells, p_taus=p_taus, t_taus=t_taus, p_channel=p_channel, t_channel=t_channel)
    rng = np.random.default_rng(seed)
    bases, scales, z = [], [], []
    for y in cells.Y:
        base = fit_seasonal_trend(y, cells.t_years, cells.months, train, trend=trend)
        resid = y - base
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scale = np.maximum(np.nanstd(np.where(train[:, None], resid, np.nan), axis=0), min_scale_mm)
        scale = np.where(np.isfinite(scale), scale, min_scale_mm).astype(np.float32)
        bases.append(base)
        scales.append(scale)
        z.append(resid / scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # months without any centre
        z = np.nanmean(np.stack(z), axis=0)
    base0 = np.mean(np.stack([b / s for b, s in zip(bases, scales, strict=True)]), axis=0)  # scaled seasonal
    tr = np.flatnonzero(train)
    Xtr = _gbt_features(cells, mem, base0, 1.0, tr, p_channel=p_channel)
    ytr = z[tr].ravel()
    ok = np.flatnonzero(np.isfinite(ytr))
    ok = rng.choice(ok, size=min(max_rows, len(ok)), replace=False)
    model = _regressor(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                       seed=seed, n_jobs=n_jobs)
    model.fit(Xtr[ok], ytr[ok])
    del Xtr
    pred = np.empty(z.shape, np.float32)
    for i0 in range(0, len(cells.times), block):
        sl = slice(i0, min(len(cells.times), i0 + block))
        feats = _gbt_features(cells, mem, base0, 1.0, sl, p_channel=p_channel)
        pred[sl] = model.predict(feats).reshape(sl.stop - sl.start, -1)
    return np.stack([b + pred * s for b, s in zip(bases, scales, strict=True)])


class _LGBM:
    """LightGBM through its native API (its scikit-learn wrapper needs scikit-learn)."""

    def __init__(self, params: dict, n_estimators: int) -> None:
        self.params, self.n_estimators, self.booster = params, n_estimators, None

    def fit(self, X: np.ndarray, y: np.ndarray) -> _LGBM:
        import lightgbm as lgb  # optional heavy dependency: only a gbt fit needs it (see _regressor)

        self.booster = lgb.train(self.params, lgb.Dataset(X, y), num_boost_round=self.n_estimators)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(X)


def _regressor(*, n_estimators, learning_rate, num_leaves, seed, n_jobs):
    try:
        import lightgbm  # noqa: F401
    except ImportError:  # the fallback named in the module docstring
        from sklearn.ensemble import HistGradientBoostingRegressor

        LOGGER.warning("lightgbm is not installed; using sklearn HistGradientBoostingRegressor")
        return HistGradientBoostingRegressor(max_iter=n_estimators, learning_rate=learning_rate,
                                             max_leaf_nodes=num_leaves, random_state=seed)
    params = {"objective": "regression", "learning_rate": learning_rate, "num_leaves": num_leaves,
              "bagging_fraction": 0.8, "bagging_freq": 1, "feature_fraction": 0.8, "min_data_in_leaf": 50,
              "seed": seed, "num_threads": n_jobs, "verbose": -1}
    return _LGBM(params, n_estimators)


def predictor(kind: str):
    """The ``predict_<kind>`` function of baseline ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"baseline {kind!r}; expected one of {KINDS}")
    return {"climatology": predict_climatology, "grace_rec": predict_grace_rec, "gbt": predict_gbt}[kind]


def n_parameters(kind: str, *, n_cells: int, n_targets: int, **kwargs) -> int:
    """Fitted parameters of baseline ``kind`` with ``kwargs`` (gbt: leaves of all trees, a rough size)."""
    K = n_targets
    n_par = {"climatology": 13 * n_cells * K,
             "grace_rec": (13 + len(kwargs.get("p_taus", (1, 3, 6, 12, 24)))
                           + len(kwargs.get("t_taus", (3, 12)) if kwargs.get("t_channel", "t2m") else ()) + 1)
             * n_cells * K,
             "gbt": None}[kind]
    if kind == "gbt":  # leaves of all trees as a rough size, plus the per-cell seasonal+trend fits
        n_par = kwargs.get("n_estimators", 150) * kwargs.get("num_leaves", 31) + 13 * n_cells * K
    return int(n_par)
