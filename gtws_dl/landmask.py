"""Land fraction and land mask on any :class:`~gtws_dl.grid.Grid`, offline.

Derived from the 30-arc-second GLOBE land/sea mask shipped by the ``global-land-mask``
package (Greenland and Antarctica included). Importing that package costs ~4 s and
~1 GB of RAM, so coarse fractions are derived once per grid and cached as ``.npy``
under ``$GTWS_DL_CACHE`` (default ``~/.cache/gtws_dl``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from gtws_dl.grid import Grid

LOGGER = logging.getLogger(__name__)
_PIX_PER_DEG = 120  # the GLOBE mask is 1/120 deg


def cache_dir() -> Path:
    return Path(os.environ.get("GTWS_DL_CACHE", Path.home() / ".cache" / "gtws_dl"))


def _global_fraction(res: float) -> np.ndarray:
    """Land fraction on the global grid of ``res`` deg, lat ascending, shape (180/res, 360/res)."""
    from global_land_mask import globe  # heavy import, deliberately local

    water = globe._mask  # (21600, 43200), True over water; row 0 at 90N, col 0 at 180W
    block = res * _PIX_PER_DEG
    if abs(block - round(block)) < 1e-9:
        b = int(round(block))
        nlat, nlon = water.shape[0] // b, water.shape[1] // b
        frac = np.empty((nlat, nlon), dtype=np.float32)
        rows_per = max(1, 2048 // b)  # keep the temporary small
        for i0 in range(0, nlat, rows_per):
            i1 = min(nlat, i0 + rows_per)
            sub = water[i0 * b : i1 * b].reshape(i1 - i0, b, nlon, b)
            frac[i0:i1] = 1.0 - sub.mean(axis=(1, 3), dtype=np.float32)
    else:  # resolution not a multiple of 30": sample a 10x10 sub-lattice per cell
        grid = Grid(res)
        sub = (np.arange(10) + 0.5) / 10 - 0.5
        lat = (grid.lat[::-1, None] + sub[None, :] * res).ravel()  # descending like the mask
        lon = (grid.lon[:, None] + sub[None, :] * res).ravel()
        ii = np.clip(((90 - lat) * _PIX_PER_DEG).astype(int), 0, water.shape[0] - 1)
        jj = np.clip(((lon + 180) * _PIX_PER_DEG).astype(int), 0, water.shape[1] - 1)
        pts = water[np.ix_(ii, jj)].reshape(grid.nlat, 10, grid.nlon, 10)
        frac = 1.0 - pts.mean(axis=(1, 3), dtype=np.float32)
    return frac[::-1].copy()  # to latitude ascending


def land_fraction(grid: Grid) -> np.ndarray:
    """Fraction of each cell that is land (0..1), float32, shape ``grid.shape``."""
    key = hashlib.sha1(f"{grid.res:.10g}".encode()).hexdigest()[:10]
    path = cache_dir() / f"landfrac_{grid.res:g}deg_{key}.npy"
    if path.exists():
        glob = np.load(path)
    else:
        LOGGER.info("deriving %g deg land fraction from the 30'' GLOBE mask (once per resolution)", grid.res)
        glob = _global_fraction(grid.res)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, glob)
        os.replace(tmp, path)
    lon0, _, lat0, _ = grid.bounds
    i0 = int(round((lat0 + 90) / grid.res))
    j0 = int(round((lon0 + 180) / grid.res))
    return glob[i0 : i0 + grid.nlat, j0 : j0 + grid.nlon].copy()


def land_mask(grid: Grid, threshold: float = 0.5) -> np.ndarray:
    """Boolean land mask (land fraction >= ``threshold``), shape ``grid.shape``."""
    return land_fraction(grid) >= threshold
