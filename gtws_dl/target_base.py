"""Per-cell target base: what a network's output is added to (GRACE-era climatology + trend, or forcing memory).

With ``kind="seasonal_trend"`` a network learns ``(twsa − base) / scale`` instead of ``twsa / scale``, where,
per target centre and cell, fitted on the training months only (:func:`gtws_dl.seasonal.decompose`)::

    base(t) = a0 + a1 (clip(t, t_lo, t_hi) − t_ref) + clim(month(t))      mm

``clim`` is a monthly climatology (12 effects summing to zero) and the trend is held flat outside the fitted
months ``[t_lo, t_hi]`` (decimal years), the model of the climatology, GRACE-REC and tree baselines
(:func:`gtws_dl.seasonal.fit_seasonal_trend`, there by ridge on one-hot months; here the coefficients are
kept). ``kind="none"`` is a zero base (the network predicts the whole signal).

``kind="forcing_memory"`` is the per-cell linear model of GRACE-REC (Humphrey and Gudmundsson 2019) as the base,
ridge-fitted on the training months (with a linear trend that is fitted and dropped, see :func:`_fit_memory`)::

    base(t) = clim(month(t)) + Σ_j b_j m_j(t)
    m_j(t) = m_j(t−1) + a_j (z_c(t) − m_j(t−1)),  a_j = 1 − e^{−1/τ_j}

with ``z_c`` a predictor channel normalised by the cube's statistics (precipitation with e-folding times τ of
1–96 months, temperature 3–12 months, and the month's own top-layer soil moisture and snow, τ = 0 → a = 1:
:data:`MEMORY`), each memory starting from the cell's mean of the cube's first :data:`SPINUP_MONTHS` months. The
network then learns what the memories leave over: the base keeps the interannual-to-decadal amplitude that a network trained on short windows damps (issue 15). The
memories are causal and read from the cube (:class:`ForcingMemory`), so the same base is evaluated in training,
in reconstruction and in an update.

The coefficients travel in the checkpoint (buffer ``target_base`` of
:class:`gtws_dl.models.module.ReconstructionModule`), the kind, times and memories in its normalisation
dictionary, so reconstruction needs nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gtws_dl.seasonal import decimal_year, decompose, design_matrix

LOGGER = logging.getLogger(__name__)
KINDS = ("none", "seasonal_trend", "forcing_memory")
# forcing_memory: e-folding times (months) of the causal memories of each predictor channel
# (0 = the month's own value: ERA5's top-layer soil moisture and snow, state estimates of two of the stores)
MEMORY: dict[str, tuple[float, ...]] = {"tp": (1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0), "t2m": (3.0, 12.0),
                                        "swvl1": (0.0,), "sd": (0.0,)}
SPINUP_MONTHS = 120  # the memories start from each cell's mean of the cube's first months
SPINUP_STEP = 12  # months read at once for that mean
FIT_MEMORY_MB = 512.0  # the forcing_memory fit's float64 working set per latitude band
RIDGE = 1e-3  # λ of the per-cell ridge (× the cell's training months), on normalised memories


class TargetBaseMismatchError(ValueError):
    """The cube cannot give the base a checkpoint was trained with (a memory channel missing, another start)."""


def n_coefficients(kind: str, memory: dict | None = None) -> int:
    """Coefficients per cell: const + slope + 11 monthly effects (``seasonal_trend``); 12 monthly effects + one
    per memory (``forcing_memory``, ``memory`` = {channel: taus}, default :data:`MEMORY`); 0 for ``none``."""
    if kind not in KINDS:
        raise ValueError(f"datamodule.target_base={kind!r}; expected one of {KINDS}")
    if kind == "forcing_memory":
        return 12 + sum(len(t) for t in (MEMORY if memory is None else memory).values())
    return 0 if kind == "none" else 13


class ForcingMemory:
    """Causal decayed memories of normalised predictor channels, streamed through the cube's months.

    pred : (T, C, H, W) array-like (zarr or numpy) of raw predictors; ``channels`` their names; ``mean``,
    ``std`` (C,) the cube's statistics; ``memory`` {channel: e-folding times in months}. :meth:`months` returns
    (n, F, h, w) float32 over ``rows`` × ``cols``; calls in increasing month order continue the stream, an
    earlier month restarts it from the cube's first month (reads the cube from there).
    """

    def __init__(self, pred, channels: list[str], mean, std, memory: dict, *, rows: slice = slice(None),
                 cols: slice = slice(None), block: int = 120) -> None:
        missing = [c for c in memory if c not in channels]
        if missing:
            raise TargetBaseMismatchError(
                f"the forcing_memory base needs predictor channels {missing}, which the cube lacks (it has "
                f"{list(channels)}); use a cube with them, or train with datamodule.target_base=none or seasonal_trend")
        self.pred, self.rows, self.cols, self.block = pred, rows, cols, int(block)
        self.src = [list(channels).index(c) for c in memory]
        self.mean = np.asarray(mean, np.float32)[self.src][:, None, None]
        self.std = np.asarray(std, np.float32)[self.src][:, None, None]
        self.of = np.concatenate([[j] * len(t) for j, t in enumerate(memory.values())]).astype(int)
        self.alpha = np.concatenate([[1.0 - np.exp(-1.0 / float(x)) if float(x) > 0 else 1.0 for x in t]
                                     for t in memory.values()])
        self.alpha = self.alpha.astype(np.float32)[:, None, None]
        self.state: np.ndarray | None = None
        self.pos = 0
        self.keep_at: int | None = None  # month index whose state (memories of the months before it) to keep
        self.kept: np.ndarray | None = None

    def resume(self, pos: int, state: np.ndarray) -> None:
        """Continue the stream from month ``pos`` with ``state`` (F, h, w), the memories of months ``< pos`` as
        kept by an earlier stream (:attr:`kept`): months from ``pos`` on are then read, not the cube before."""
        self.pos, self.state = int(pos), np.asarray(state, np.float32).copy()

    def _read(self, i0: int, i1: int) -> np.ndarray:
        x = np.stack([np.asarray(self.pred[i0:i1, c, self.rows, self.cols], np.float32) for c in self.src], 1)
        x = (x - self.mean) / self.std
        x[~np.isfinite(x)] = 0.0
        return x

    def _spinup(self) -> np.ndarray:
        """(channel, h, w) mean of the first :data:`SPINUP_MONTHS` months, read :data:`SPINUP_STEP` months at a
        time and summed month by month in float32 (the order of ``mean(axis=0)``: the same numbers, a year of
        fields in memory instead of ten)."""
        n = min(SPINUP_MONTHS, int(self.pred.shape[0]))
        acc = None
        for t0 in range(0, n, SPINUP_STEP):
            for x in self._read(t0, min(n, t0 + SPINUP_STEP)):
                if acc is None:
                    acc = x.copy()
                else:
                    acc += x
        return acc / np.float32(n)

    def months(self, i0: int, i1: int) -> np.ndarray:
        """The memories of months ``i0 .. i1 - 1`` (indices into the cube's time axis): (n, F, h, w) float32."""
        if self.state is None or i0 < self.pos:
            self.state, self.pos = self._spinup()[self.of].copy(), 0
        out = None
        t = self.pos
        while t < i1:
            b1 = min(i1, t + self.block)
            x = self._read(t, b1)
            if out is None:
                out = np.empty((i1 - i0, len(self.of), *x.shape[2:]), np.float32)
            for j in range(b1 - t):
                if t + j == self.keep_at:
                    self.kept = self.state.copy()
                self.state += self.alpha * (x[j, self.of] - self.state)
                if t + j >= i0:
                    out[t + j - i0] = self.state
            if b1 == self.keep_at:  # the stream's end: the state of every month before it
                self.kept = self.state.copy()
            t = b1
        self.pos = i1  # the stream went on from pos (≤ i0) to i1, or restarted from 0
        if out is None:  # nothing to stream (i0 == i1)
            out = np.empty((0, len(self.of), *self.state.shape[1:]), np.float32)
        return out


@dataclass
class TargetBase:
    """Fitted base of K targets on an (H, W) grid.

    coef : (K, P, H, W) float32, zeros where a cell has no fit (ocean, too few months)
    t_ref, t_lo, t_hi : decimal years: trend origin and the fitted span (trend held flat outside)
    memory, start : ``forcing_memory`` only: {channel: taus} and the cube's first month ("YYYY-MM"), where the
        memories start
    """

    kind: str
    coef: np.ndarray
    t_ref: float = 0.0
    t_lo: float = 0.0
    t_hi: float = 0.0
    memory: dict | None = None
    start: str | None = None

    def design(self, times) -> np.ndarray:
        """Design rows (time, P) for month stamps ``times``; the slope column uses the clipped time."""
        t = decimal_year(times)
        if self.kind == "none":
            return np.zeros((len(t), 0))
        X, _, _ = design_matrix(t, t_ref=self.t_ref, seasonal="climatology")
        X[:, 1] = np.clip(t, self.t_lo, self.t_hi) - self.t_ref
        return X

    def evaluate(self, times, rows: slice = slice(None), cols: slice = slice(None), *,
                 memories: np.ndarray | None = None) -> np.ndarray:
        """Base in mm, shape (K, time, h, w), over the grid window ``rows`` × ``cols``.

        ``forcing_memory`` needs ``memories`` (time, F, h, w) of the same months (:class:`ForcingMemory`)."""
        c = self.coef[:, :, rows, cols]
        if self.kind == "none":
            return np.zeros((c.shape[0], len(times), *c.shape[2:]), np.float32)
        if self.kind == "forcing_memory":
            if memories is None:
                raise ValueError("a forcing_memory base is evaluated with the predictor memories (memories=)")
            month = np.eye(12, dtype=np.float32)[pd.DatetimeIndex(times).month.values - 1]
            return (np.einsum("tm,kmhw->kthw", month, c[:, :12])
                    + np.einsum("tfhw,kfhw->kthw", memories.astype(np.float32), c[:, 12:]))
        return np.einsum("tp,kphw->kthw", self.design(times).astype(np.float32), c)

    def over(self, pred, times: pd.DatetimeIndex, channels: list[str], mean, std, *, where: str = "the cube",
             rows: slice = slice(None), cols: slice = slice(None),
             memory: ForcingMemory | None = None) -> Callable[[int, int], np.ndarray]:
        """``f(i0, i1)`` → the base (K, i1 − i0, h, w) mm of months ``i0 .. i1 - 1`` of a cube (``pred`` raw
        predictors (T, C, H, W), ``times`` its axis); for ``forcing_memory`` the memories are streamed from the
        cube (calls in month order read it once), by ``memory`` if given (see :meth:`memory_stream`)."""
        if self.kind != "forcing_memory":
            return lambda i0, i1: self.evaluate(times[i0:i1], rows, cols)
        mem = memory or self.memory_stream(pred, times, channels, mean, std, where=where, rows=rows, cols=cols)
        return lambda i0, i1: self.evaluate(times[i0:i1], rows, cols, memories=mem.months(i0, i1))

    def memory_stream(self, pred, times: pd.DatetimeIndex, channels: list[str], mean, std, *,
                      where: str = "the cube", rows: slice = slice(None),
                      cols: slice = slice(None)) -> ForcingMemory | None:
        """The :class:`ForcingMemory` a ``forcing_memory`` base is evaluated with (None for other kinds): to keep
        or resume its state (the monthly update), then pass it to :meth:`over`."""
        if self.kind != "forcing_memory":
            return None
        if self.start is not None and f"{times[0]:%Y-%m}" != self.start:
            raise TargetBaseMismatchError(
                f"{where} starts in {times[0]:%Y-%m}, but the checkpoint's forcing_memory base was fitted with "
                f"memories starting in {self.start}; reconstruct from a cube with the same first month "
                f"(data.start={self.start}) or retrain on this cube")
        return ForcingMemory(pred, channels, mean, std, self.memory or MEMORY, rows=rows, cols=cols)

    def meta(self) -> dict:
        """JSON-able description (saved in the checkpoint's normalisation)."""
        out = {"kind": self.kind, "t_ref": self.t_ref, "t_lo": self.t_lo, "t_hi": self.t_hi}
        if self.kind == "forcing_memory":
            out.update(memory={k: list(v) for k, v in (self.memory or MEMORY).items()}, start=self.start)
        return out

    @classmethod
    def from_meta(cls, meta: dict | None, coef: np.ndarray | None) -> TargetBase:
        if not meta or meta.get("kind", "none") == "none" or coef is None:
            return cls("none", np.zeros((0, 0, 0, 0), np.float32))
        memory = meta.get("memory")
        return cls(meta["kind"], np.asarray(coef, np.float32), float(meta["t_ref"]), float(meta["t_lo"]),
                   float(meta["t_hi"]), memory={k: tuple(v) for k, v in memory.items()} if memory else None,
                   start=meta.get("start"))


def base_of_every_month(base: TargetBase, pred, times: pd.DatetimeIndex, channels: list[str], mean, std, *,
                        where: str = "the cube", memory_mb: float | None = None, block: int = 120) -> np.ndarray:
    """The base of every cube month, (K, T, H, W) float32 mm, evaluated in latitude bands of about ``memory_mb``
    (default :data:`FIT_MEMORY_MB`) and blocks of ``block`` months: the forcing memories of a whole field over a
    block are (block, F, H, W), 4 GB at global 0.25 deg, so they are never held for more than a band."""
    K, P, H, W = base.coef.shape
    T = len(times)
    out = np.empty((K, T, H, W), np.float32)
    n_mem = max(0, P - 12) if base.kind == "forcing_memory" else 0
    per_row = 4.0 * W * min(block, T) * (2 * n_mem + 3 * K + 1)  # memories, read channels, base and its sums
    rows = max(1, min(H, int((memory_mb or FIT_MEMORY_MB) * 2**20 // per_row)))
    for r0 in range(0, H, rows):
        band = slice(r0, min(H, r0 + rows))
        at = base.over(pred, times, channels, mean, std, where=where, rows=band)
        for i0 in range(0, T, block):
            out[:, i0:i0 + block, band] = at(i0, min(T, i0 + block))
    return out


def fit_target_base(targ: np.ndarray, times: pd.DatetimeIndex, train: np.ndarray, kind: str, *, pred=None,
                    channels: list[str] | None = None, mean=None, std=None, memory: dict | None = None,
                    memory_mb: float | None = None) -> TargetBase:
    """Fit the base per target and cell on the months ``train`` (indices into ``times``).

    targ : (K, T, H, W) mm, NaN where no solution (ocean, GRACE gaps)
    pred, channels, mean, std : the cube's raw predictors (T, C, H, W), channel names and statistics
        (``forcing_memory`` only); ``memory`` {channel: taus}, default :data:`MEMORY`; ``memory_mb`` the
        fit's float64 working set per latitude band (default :data:`FIT_MEMORY_MB`; the same coefficients)
    """
    p = n_coefficients(kind, memory)
    K, _, H, W = targ.shape
    if p == 0:
        return TargetBase("none", np.zeros((K, 0, H, W), np.float32))
    if kind == "forcing_memory":
        return _fit_memory(targ, times, np.asarray(train), pred, channels, mean, std, dict(memory or MEMORY),
                           memory_mb=memory_mb)
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


def _fit_memory(targ, times, train, pred, channels, mean, std, memory, *, memory_mb: float | None = None
                ) -> TargetBase:
    """Per-cell ridge of the targets on 12 monthly effects + the forcing memories + a linear trend, normal equations
    accumulated over blocks of months, in latitude bands of about ``memory_mb`` (default :data:`FIT_MEMORY_MB`) of
    float64: memory bounded in time and in area.

    The trend is fitted, not kept (GRACE-REC detrends before it regresses): the memories explain the variability
    about the GRACE-era trend, and that trend (ice sheets, glaciers, pumping: storage the forcing cannot explain)
    stays in the residual, for ``products.unforced`` to handle by its documented choice, instead of being tied to
    the warming of ``t2m`` and carried back in time by it."""
    K, T, H, W = targ.shape
    p = n_coefficients("forcing_memory", memory) + 1  # + the trend column (dropped after the fit)
    t = decimal_year(times)
    t_mid = 0.5 * (float(t[train[0]]) + float(t[train[-1]]))
    in_train = np.zeros(T, bool)
    in_train[train] = True
    last = int(train[-1]) + 1
    block = min(120, last)
    per_row = 8.0 * W * (K * p * (p + 2) + 2 * block * p)  # A, b, n and the design matrix D with its masked copy
    rows = max(1, min(H, int((memory_mb or FIT_MEMORY_MB) * 2**20 // per_row)))
    coef = np.zeros((K, p, H, W), np.float32)
    for r0 in range(0, H, rows):
        band = slice(r0, min(H, r0 + rows))
        mem = ForcingMemory(pred, channels, mean, std, memory, rows=band, block=block)
        coef[:, :, band] = _fit_memory_band(targ, times, t, t_mid, in_train, last, block, mem, p, band)
    coef = coef[:, :-1]  # the trend is not part of the base
    LOGGER.info("forcing_memory base fitted on %d training months (%s): memories %s",
                len(train), f"{times[train[0]]:%Y-%m}..{times[train[-1]]:%Y-%m}", memory)
    return TargetBase("forcing_memory", coef, 0.0, float(t[train[0]]), float(t[train[-1]]),
                      memory={k: tuple(float(x) for x in v) for k, v in memory.items()}, start=f"{times[0]:%Y-%m}")


def _fit_memory_band(targ, times, t, t_mid, in_train, last: int, block: int, mem: ForcingMemory, p: int,
                     rows: slice) -> np.ndarray:
    """The coefficients (K, p, h, W) float32 of :func:`_fit_memory` for the latitude ``rows`` (``mem``: their
    forcing memories)."""
    K, _, _, W = targ.shape
    h = rows.stop - rows.start
    A = np.zeros((K, h * W, p, p))
    b = np.zeros((K, h * W, p))
    n = np.zeros((K, h * W))
    for i0 in range(0, last, block):
        i1 = min(last, i0 + block)
        m = mem.months(i0, i1)
        sel = np.flatnonzero(in_train[i0:i1])
        if not len(sel):
            continue
        month = np.eye(12)[times[i0:i1].month.values - 1][sel]
        trend = ((t[i0:i1][sel] - t_mid) / 10.0)[:, None, None]  # decades
        D = np.concatenate([np.broadcast_to(month[:, :, None], (len(sel), 12, h * W)),
                            m[sel].reshape(len(sel), -1, h * W),
                            np.broadcast_to(trend, (len(sel), 1, h * W))], axis=1).astype(np.float64)  # (n, p, cells)
        for k in range(K):
            y = np.asarray(targ[k, i0:i1, rows], np.float64)[sel].reshape(len(sel), h * W)
            ok = np.isfinite(y)
            Dm = D * ok[:, None, :]
            A[k] += np.einsum("npc,nqc->cpq", Dm, D)
            b[k] += np.einsum("npc,nc->cp", Dm, np.where(ok, y, 0.0))
            n[k] += ok.sum(0)
    coef = np.zeros((K, p, h * W), np.float32)
    for k in range(K):
        fit = n[k] > p  # cells with more training months than coefficients
        if fit.any():
            Ak = A[k][fit] + (RIDGE * n[k][fit])[:, None, None] * np.eye(p)[None]
            coef[k][:, fit] = np.linalg.solve(Ak, b[k][fit][..., None])[..., 0].T
    return coef.reshape(K, p, h, W)
