"""Shared fixtures: tiny synthetic cubes with known answers, CPU-only settings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("GTWS_DL_CACHE", str(Path.home() / ".cache" / "gtws_dl"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]


def make_synthetic_cube(out_dir: Path, *, res: float = 10.0, start="1995-01", end="2012-12", seed=0,
                        centres=("jpl", "csr", "gsfc")):
    """A cube whose target is a known causal function of its predictors.

    twsa = 40 * ewma(p, 6 months) + 25 * sin(2 pi month / 12 + lon) over land, in mm; predictors are
    p (white noise, channel ``tp``), the monthly phase as sin/cos, and a static channel. GRACE-like months from
    2002-04.
    """
    from gtws_dl.cube.writer import CubeWriter
    from gtws_dl.grid import Grid

    rng = np.random.default_rng(seed)
    grid = Grid(res)
    times = pd.date_range(start, end, freq="MS")
    nt, (H, W) = len(times), grid.shape
    lat2, lon2 = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    landfrac = ((np.sin(np.deg2rad(lon2) * 2) + np.cos(np.deg2rad(lat2) * 3)) > 0).astype(np.float32)
    p = rng.standard_normal((nt, H, W)).astype(np.float32)
    phase = 2 * np.pi * times.month.values[:, None, None] / 12 + np.deg2rad(lon2)[None]
    mem = np.zeros_like(p)
    acc = np.zeros((H, W), np.float32)
    for t in range(nt):
        acc += (p[t] - acc) / 6.0
        mem[t] = acc
    truth = 40 * mem + 25 * np.sin(phase)
    channels = ["tp", "sin_phase", "cos_phase", "static"]  # "tp": the precipitation-like driver
    block = np.stack([p, np.sin(phase), np.cos(phase), np.broadcast_to(lat2 / 90, (nt, H, W))], axis=1)
    w = CubeWriter(out_dir, grid, times, channels, land_fraction=landfrac, stats_period=("2002-04", "2009-12"),
                   chunk_months=12, units={c: "1" for c in channels})
    for i0 in range(0, nt, 24):
        w.write_block(i0, block[i0:i0 + 24])
    targets = np.full((len(centres), nt, H, W), np.nan, np.float32)
    grace = times >= "2002-04"
    for k in range(len(centres)):
        targets[k, grace] = truth[grace] + rng.normal(0, 2.0, truth[grace].shape)
    w.write_targets(list(centres), targets, baseline=("2004-01", "2009-12"))
    w.finish(fingerprint=f"synthetic-{seed}")
    return grid, times, truth, landfrac >= 0.5


@pytest.fixture(scope="session")
def synthetic_cube(tmp_path_factory):
    out = tmp_path_factory.mktemp("cube")
    grid, times, truth, land = make_synthetic_cube(out)
    return {"dir": out, "grid": grid, "times": times, "truth": truth, "land": land}
