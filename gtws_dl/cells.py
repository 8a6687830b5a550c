"""The cube over its land cells, in memory, with the networks' split: what the baselines fit (no torch).

Data floor, beside :mod:`gtws_dl.data` (the networks' windows): :func:`load_cells` reads the cube
(:func:`gtws_dl.cube.store.open_cube`) into a :class:`CubeCells` of plain arrays, which the models of
:mod:`gtws_dl.models.baselines` take without reading any file themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gtws_dl.cube.store import open_cube
from gtws_dl.seasonal import decimal_year
from gtws_dl.split import Split, available_months, time_split


@dataclass
class CubeCells:
    """The cube over land cells: ``X`` (time, channel, cell) raw predictors, ``Y`` (target, time, cell) mm."""

    X: np.ndarray
    Y: np.ndarray
    channels: list[str]
    targets: list[str]
    times: pd.DatetimeIndex
    land: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    split: Split

    @property
    def t_years(self) -> np.ndarray:
        return decimal_year(self.times)

    @property
    def months(self) -> np.ndarray:
        return self.times.month.values

    def train_mask(self) -> np.ndarray:
        m = np.zeros(len(self.times), bool)
        m[self.split.train] = True
        return m


def load_cells(cube_dir: str | Path, targets: list[str], *, val_months: int = 24, gap_months: int = 24,
               val_block: str = "last", block: int = 120) -> CubeCells:
    """Read the cube's land cells (time blocks, bounded memory) and the split the networks use."""
    manifest, pred_g, targ_g = open_cube(cube_dir)
    times = pd.date_range(manifest["time"]["start"], periods=manifest["time"]["n"], freq="MS")
    land = np.asarray(pred_g["land_mask"][:], bool)
    pred = pred_g["predictors"]
    X = np.empty((len(times), pred.shape[1], int(land.sum())), np.float32)
    for i0 in range(0, len(times), block):
        X[i0:i0 + block] = np.asarray(pred[i0:i0 + block], np.float32)[:, :, land]
    cube_targets = [str(t) for t in targ_g["target"][:]]
    missing = [t for t in targets if t not in cube_targets]
    if missing:
        raise ValueError(f"{cube_dir}/targets.zarr has targets {cube_targets}; requested {missing}")
    Y = np.stack([np.asarray(targ_g["twsa"][cube_targets.index(t)], np.float32)[:, land] for t in targets])
    split = time_split(times, available_months(Y), val_months=val_months, gap_months=gap_months, block=val_block)
    return CubeCells(X=X, Y=Y, channels=list(manifest["channels"]), targets=list(targets), times=times, land=land,
                     lat=np.asarray(pred_g["lat"][:]), lon=np.asarray(pred_g["lon"][:]),
                     mean=np.asarray(manifest["stats"]["mean"], np.float32),
                     std=np.asarray(manifest["stats"]["std"], np.float32), split=split)
