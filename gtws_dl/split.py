"""The blocked train/validation split in time, defined once (numpy/pandas only; no torch, no I/O).

Every consumer — the networks' DataModule (:mod:`gtws_dl.data`), the baselines' land cells
(:mod:`gtws_dl.cells`) and the leaderboard's held-out evaluation (:mod:`gtws_dl.experiments.leaderboard`) —
computes its split with :func:`available_months` and :func:`time_split`, so all of them hold out the same months.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    """Month indices (into the cube's time axis) of each role.

    ``train`` GRACE months used for the loss; ``val`` the ``val_months`` GRACE months held out at the end of the
    record (``block="last"``) or at its start (``block="first"``, backward: the months nearest the decades
    before GRACE); ``gap`` months between them that neither uses, so that no training window's loss months sit
    next to validation months.
    """

    train: np.ndarray
    val: np.ndarray
    train_end: int  # last month index a training window may touch
    times: pd.DatetimeIndex
    block: str = "last"

    def describe(self) -> str:
        t = self.times
        return (f"train {t[self.train[0]]:%Y-%m}..{t[self.train[-1]]:%Y-%m} ({len(self.train)} months), "
                f"val {t[self.val[0]]:%Y-%m}..{t[self.val[-1]]:%Y-%m} ({len(self.val)} months)")


def available_months(targets: Iterable[np.ndarray], land: np.ndarray | None = None) -> np.ndarray:
    """bool (time,): True in a month where any requested centre has a solution over land.

    ``targets`` holds one array per centre (a (K, time, ...) array iterates as such): (time, lat, lon) fields
    with ``land`` the (lat, lon) land mask, or (time, cell) land cells already (``land=None``).
    """
    avail = None
    for y in targets:
        y = np.asarray(y)
        cells = y[:, land] if land is not None else y.reshape(len(y), -1)
        a = np.isfinite(cells).any(axis=1)
        avail = a if avail is None else avail | a
    if avail is None:
        raise ValueError("available_months needs at least one target")
    return avail


VAL_BLOCKS = ("last", "first")


def time_split(times: pd.DatetimeIndex, available: np.ndarray, *, val_months: int, gap_months: int,
               block: str = "last") -> Split:
    """Blocked split: ``val_months`` available months validate, ``gap_months`` separate them from training.

    ``block="last"``: the last months validate, training ends ``gap_months`` before them (forward: skill after
    the training months). ``block="first"``: the first months validate, training starts ``gap_months`` after
    them (backward: skill before the training months, what a reconstruction of the decades before GRACE
    needs).

    Parameters
    ----------
    times : month-start axis of the cube, length N
    available : bool (N,), True where the target has a solution (:func:`available_months`)
    """
    if block not in VAL_BLOCKS:
        raise ValueError(f"val_block={block!r}; expected one of {VAL_BLOCKS}")
    idx = np.flatnonzero(available)
    if len(idx) <= val_months:
        raise ValueError(f"only {len(idx)} target months available; need more than val_months={val_months}")
    if block == "first":
        val = idx[:val_months]
        first = (val[-1] + gap_months + 1) if len(val) else idx[0]
        train = idx[idx >= first]
        if len(train) == 0:
            raise ValueError(
                f"no target months after {times[min(first, len(times)) - 1]:%Y-%m}: the training window is empty "
                f"(val_months={val_months}, gap_months={gap_months}, val_block=first)"
            )
        return Split(train=train, val=val, train_end=int(idx[-1]), times=times, block=block)
    val = idx[-val_months:] if val_months > 0 else np.array([], dtype=int)
    train_end = (val[0] - gap_months - 1) if len(val) else idx[-1]
    train = idx[idx <= train_end]
    if len(train) == 0:
        raise ValueError(
            f"no target months before {times[train_end + 1]:%Y-%m}: the training window is empty "
            f"(val_months={val_months}, gap_months={gap_months})"
        )
    return Split(train=train, val=val, train_end=int(train_end), times=times, block=block)
