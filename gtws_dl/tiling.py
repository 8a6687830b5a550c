"""Spatial tiles for reconstruction: where each tile's core and halo lie, which tiles hold land, how big they
may be for a memory budget.

An output cell depends on inputs within the net's halo: ``T × layers × (kernel // 2)`` cells for a ConvLSTM (it
grows every month), the fixed receptive field for a U-Net (``net.spatial_halo(T)``). A tile is computed with
that halo of real neighbours around it (wrapping in longitude on a global grid, zero padding only at the grid's
true edges, as untiled) and only its core is kept, so seams are identical to the untiled result up to
floating-point summation order. A tile whose core holds no land cell produces only ocean (NaN) outputs and is
not computed. Nets that pool (``net.align`` > 1) get tile origins and halos rounded to multiples of ``align``
so tiles pool on the whole field's grid; on a global grid whose longitude count is not a multiple of
``align``, tiles span the full longitude (latitude bands).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from gtws_dl.models.module import spatial_halo

LOGGER = logging.getLogger(__name__)

MIN_TILE = 32  # cells: below it the halo dominates the compute
_OVERHEAD = 1.15  # allocator slack over the counted activations (calibrated on the CPU, bench/area.py)


@dataclass(frozen=True)
class Tile:
    """One tile: the core it writes and the (halo-extended) region it reads."""

    rows: tuple[int, int]  # core latitude rows [i0, i1)
    cols: tuple[int, int]  # core longitude columns [j0, j1)
    read_rows: tuple[int, int]  # rows read: the core plus the halo, clipped at the grid's edges
    read_cols: np.ndarray  # columns read, in order (modulo W across the dateline on a global grid)
    wraps: bool  # the tile spans the full longitude: the network wraps around by itself

    @property
    def col_runs(self) -> list[slice]:
        """The columns read as contiguous slices (a tile across the dateline has two)."""
        return [slice(a, b) for a, b in column_runs(self.read_cols)]

    @property
    def core(self) -> tuple[slice, slice]:
        """Where the core lies inside the tile's output (rows, cols)."""
        c0 = int(np.flatnonzero(self.read_cols == self.cols[0])[0])
        r0 = self.rows[0] - self.read_rows[0]
        return slice(r0, r0 + self.rows[1] - self.rows[0]), slice(c0, c0 + self.cols[1] - self.cols[0])


def column_runs(cols: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs [a, b) of a column index list (a tile across the dateline has two)."""
    cols = np.asarray(cols)
    cut = np.flatnonzero(np.diff(cols) != 1) + 1
    return [(int(c[0]), int(c[-1]) + 1) for c in np.split(cols, cut)]


def plan(net: torch.nn.Module, T: int, shape: tuple[int, int], tile: tuple[int, int],
         land: np.ndarray | None = None) -> list[Tile]:
    """Tiles of ``tile`` = (lat, lon) cells covering ``shape`` = (H, W) for windows of ``T`` months.

    ``land`` (H, W) bool: tiles whose core holds no land are left out (their outputs are ocean, NaN)."""
    H, W = shape
    align = int(getattr(net, "align", 1))
    up = lambda v: -(-int(v) // align) * align  # noqa: E731
    halo = up(spatial_halo(net, T))
    th, tw = min(up(tile[0]), H), min(up(tile[1]), W)
    circular = bool(getattr(net, "lon_circular", False))
    if circular and W % align:
        tw = W
    out = []
    for i0 in range(0, H, th):
        i1 = min(H, i0 + th)
        lo, hi = max(0, i0 - halo), min(H, i1 + halo)
        for j0 in range(0, W, tw):
            j1 = min(W, j0 + tw)
            if land is not None and not land[i0:i1, j0:j1].any():
                continue
            if tw >= W:  # full longitude: the network wraps by itself
                cols = np.arange(W)
            elif circular:  # neighbours across the dateline are real data
                cols = np.arange(j0 - halo, j1 + halo) % W
            else:
                cols = np.arange(max(0, j0 - halo), min(W, j1 + halo))
            out.append(Tile((i0, i1), (j0, j1), (lo, hi), cols, tw >= W))
    return out


def bytes_per_cell(net: torch.nn.Module, T: int, n_channels: int, windows: int = 1) -> float:
    """Estimated peak bytes per grid cell of a forward pass over ``windows`` windows of ``T`` months:
    the float32 inputs plus every convolution's output, each held once per month."""
    conv = sum(m.out_channels for m in net.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))
    return _OVERHEAD * 4.0 * windows * T * (n_channels + conv)


def auto_tile(net: torch.nn.Module, T: int, n_channels: int, shape: tuple[int, int], *, windows: int,
              memory_gb: float) -> tuple[int, int] | None:
    """``None`` when a whole-field forward of ``windows`` windows fits ``memory_gb``; otherwise square tiles
    (one window per forward) whose core plus halo fit it. Logs the choice and the halo's compute overhead."""
    H, W = shape
    budget = float(memory_gb) * 2**30
    if bytes_per_cell(net, T, n_channels, windows) * H * W <= budget:
        return None
    per = bytes_per_cell(net, T, n_channels, 1) + 4.0 * windows * T * n_channels  # + the group's input read
    halo = spatial_halo(net, T)
    side = int(math.sqrt(budget / per)) - 2 * halo
    if side < MIN_TILE:
        LOGGER.warning("memory_gb=%g leaves tiles of %d cells for a halo of %d: using %d-cell tiles (more "
                       "memory); raise memory_gb or lower the window", memory_gb, max(side, 0), halo, MIN_TILE)
        side = MIN_TILE
    side = min(side, max(H, W))
    core_area = min(side, H) * min(side, W)
    read_area = min(side + 2 * halo, H) * min(side + 2 * halo, W)
    LOGGER.info("memory_gb=%g: tiles of %dx%d cells plus a %d-cell halo (%.2fx the core's compute)",
                memory_gb, side, side, halo, read_area / core_area)
    return side, side
