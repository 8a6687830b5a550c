"""Fit one baseline of :mod:`gtws_dl.models.baselines` on the cube's land cells and write its reconstruction store.

The models take arrays and return arrays; this runner reads the cube (:func:`gtws_dl.cells.load_cells`, unless
the caller passes the cells it already holds) and writes the store in the networks' layout
(:func:`gtws_dl.recon_store.write_reconstruction`), so the same products and skill code evaluate it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from gtws_dl.cells import CubeCells, load_cells
from gtws_dl.models.baselines import n_parameters, predictor
from gtws_dl.recon_store import write_reconstruction

LOGGER = logging.getLogger(__name__)


def run_baseline(kind: str, cube_dir: str | Path, out_path: str | Path, *, targets: list[str],
                 val_months: int = 24, gap_months: int = 24, val_block: str = "last", cells: CubeCells | None = None,
                 **kwargs) -> dict:
    """Fit baseline ``kind`` and write its reconstruction store; returns a summary (fit time, parameters)."""
    fn = predictor(kind)
    cells = cells or load_cells(cube_dir, targets, val_months=val_months, gap_months=gap_months, val_block=val_block)
    t0 = time.perf_counter()
    pred = fn(cells, **kwargs)
    wall = time.perf_counter() - t0
    K, nt, _ = pred.shape
    H, W = cells.land.shape
    full = np.full((K, nt, H, W), np.nan, np.float32)
    full[:, :, cells.land] = pred
    write_reconstruction(out_path, full, targets=cells.targets, times=cells.times, lat=cells.lat, lon=cells.lon,
                         attrs={"model": f"baseline:{kind}", "cube": str(cube_dir)})
    n_par = n_parameters(kind, n_cells=int(cells.land.sum()), n_targets=K, **kwargs)
    LOGGER.info("baseline %s fitted and predicted in %.0f s; split %s", kind, wall, cells.split.describe())
    return {"model": kind, "train_seconds": wall, "parameters": n_par, "split": cells.split.describe(),
            "recon": str(out_path)}
