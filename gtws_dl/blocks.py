"""One block of months in a reconstruction: its normalised inputs read from the cube, the network run on whole
fields or on tiles (with a recurrent state in and out), and its kept months scaled to mm and written.

Shared by the windowed reconstruction (:mod:`gtws_dl.reconstruct`, every block restarts after a warm-up) and the
carried one (:mod:`gtws_dl.carry`, the state runs through the record).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gtws_dl import tiling
from gtws_dl.models.module import split_output

Block = tuple[np.ndarray, int, int]  # (input month indices, first kept month, last kept month + 1)


@dataclass
class Run:
    """What every block of one reconstruction shares: the network, the cube's predictors and land mask, the
    training statistics, the output scaling and where the outputs go."""

    module: torch.nn.Module
    pred: Any  # the cube's (time, channel, lat, lon) predictors, physical units (Zarr or numpy)
    land: np.ndarray  # (H, W) bool
    mean: np.ndarray  # (C, 1, 1) training statistics
    std: np.ndarray
    likelihood: str  # mse | gaussian | laplace
    scale: np.ndarray  # (K, 1, H, W) mm per network unit
    base_at: Callable[[int, int], np.ndarray] | None  # the target base of months [i0, i1): (K, n, H, W) mm
    dev: torch.device
    autocast: Any  # a context manager
    writer: Any  # a recon_store.BlockWriter

    @property
    def net(self) -> torch.nn.Module:
        return getattr(self.module, "net", self.module)

    def read(self, group: list[Block], tile: tiling.Tile | None = None, *, pin: bool = False):
        """Normalised inputs of ``group`` (:func:`read_batch`), whole fields or the tile's read region."""
        if tile is None:
            return read_batch(self.pred, group, self.mean, self.std, pin=pin)
        return read_batch(self.pred, group, self.mean, self.std, rows=tile.read_rows, cols=tile.read_cols)

    def write(self, group: list[Block], y: np.ndarray, offsets: list[int], first: int = 0) -> None:
        write_group(self.writer, group, y, offsets, self.likelihood, self.scale, self.base_at, self.land, first)


def write_group(writer, group, y, offsets, likelihood, scale, base_at, land, first: int = 0) -> None:
    """Scale the outputs [B, L, K(, 2K), H, W] of one batch of blocks to mm, add the base, mask the ocean and
    write the kept months of each block (those from month index ``first`` on); ``offsets[j]``: where block
    ``j``'s kept months start in ``y``."""
    y, y_std = _split(y, likelihood)
    for j, (_, k0, k1) in enumerate(group):
        a = max(k0, first)  # an update writes only its months
        if a >= k1:
            continue
        sl = slice(offsets[j] + a - k0, offsets[j] + k1 - k0)
        keep = y[j, sl].transpose(1, 0, 2, 3) * scale  # (K, months, H, W)
        if base_at is not None:
            keep += base_at(a, k1)
        keep[:, :, ~land] = np.nan
        sd = None
        if y_std is not None:
            sd = y_std[j, sl].transpose(1, 0, 2, 3) * scale
            sd[:, :, ~land] = np.nan
        writer.write(a, keep, sd)


def read_batch(
    pred,
    group: list[Block],
    mean: np.ndarray,
    std: np.ndarray,
    *,
    pin: bool = False,
    rows: tuple[int, int] | None = None,
    cols: np.ndarray | None = None,
) -> np.ndarray | torch.Tensor:
    """Normalised inputs of a batch of blocks: [B, L, C, h, w] float32, L = the longest block, NaN → 0.

    ``pred``: the cube's (time, channel, lat, lon) predictor array (Zarr or numpy), physical units; ``mean``,
    ``std``: (C, 1, 1) training statistics. Shorter blocks are left-aligned (zeros after them: a causal network's
    outputs over the block do not depend on them). ``rows``
    (r0, r1) and ``cols`` (column indices, e.g. a tile's across the dateline): read only that region (default
    the whole field). ``pin``: return a torch tensor in page-locked host memory, ready for an asynchronous copy
    to the GPU.
    """
    _, nc, H, W = pred.shape
    r0, r1 = rows if rows is not None else (0, H)
    runs = tiling.column_runs(np.arange(W) if cols is None else np.asarray(cols))
    L = max(len(b[0]) for b in group)
    x = np.zeros((len(group), L, nc, r1 - r0, sum(b - a for a, b in runs)), dtype=np.float32)
    for j, (idx, _, _) in enumerate(group):
        # contiguous read of the block's months, then the first-block repeat by fancy indexing
        lo, hi = int(idx.min()), int(idx.max()) + 1
        parts = [np.asarray(pred[lo:hi, :, r0:r1, a:b], dtype=np.float32) for a, b in runs]
        xb = (np.concatenate(parts, axis=-1)[idx - lo] if len(parts) > 1 else parts[0][idx - lo]) - mean
        x[j, : len(idx)] = xb / std  # left-aligned: the padding comes after the block's months
    x[~np.isfinite(x)] = 0.0
    return torch.from_numpy(x).pin_memory() if pin else x


def _split(y: np.ndarray, likelihood: str) -> tuple[np.ndarray, np.ndarray | None]:
    return split_output(y, likelihood) if likelihood != "mse" else (y, None)


def predict_tiled(
    module: torch.nn.Module,
    x: np.ndarray | torch.Tensor,
    dev: torch.device,
    *,
    tile: tuple[int, int] | None = None,
) -> np.ndarray:
    """Run the network on ``x`` [B, T, C, H, W] whole or in overlapping tiles; returns [B, T, K, H, W] float32.

    ``x``: a numpy array or a CPU tensor (pinned: copied to ``dev`` asynchronously). Tiles, halos and seams:
    :mod:`gtws_dl.tiling` (seams identical to the untiled result up to floating-point summation order).
    """
    B, T, C, H, W = x.shape
    net = getattr(module, "net", module)
    if tile is None or (tile[0] >= H and tile[1] >= W):
        y, _ = run_net(module, x, dev)
        return y
    if isinstance(x, torch.Tensor):
        x = x.numpy()
    out: np.ndarray | None = None
    for t in tiling.plan(net, T, (H, W), tile):
        lo, hi = t.read_rows
        y = forward_tile(module, x[:, :, :, lo:hi][..., t.read_cols], dev, t)
        if out is None:
            out = np.empty((B, T, y.shape[2], H, W), dtype=np.float32)
        out[..., slice(*t.rows), slice(*t.cols)] = y[(..., *t.core)]
    return out


def forward_tile(module: torch.nn.Module, x: np.ndarray, dev: torch.device, t: tiling.Tile) -> np.ndarray:
    """The network's outputs [B, T, K, h, w] on one tile's inputs [B, T, C, h, w] (halo included)."""
    return run_net(module, x, dev, wraps=t.wraps)[0]


def run_net(module: torch.nn.Module, x: np.ndarray | torch.Tensor, dev: torch.device, *,
            wraps: bool | None = None, state=None) -> tuple[np.ndarray, Any]:
    """(outputs [B, T, K, h, w] float32 numpy, the net's end state) for inputs ``x`` [B, T, C, h, w].

    ``wraps``: the inputs are a tile (``None``: whole fields) that spans the whole (global) longitude, so the net
    wraps around in longitude only then. ``state``: the recurrent net's start state (``None``: zeros); a CPU
    tensor from :func:`read_batch` (``pin=True``) is copied to ``dev`` asynchronously."""
    net = getattr(module, "net", module)
    circular = bool(getattr(net, "lon_circular", False))
    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if wraps is not None:
        net.lon_circular = circular and wraps
    try:
        xt = xt.to(dev, non_blocking=True)  # asynchronous from pinned memory (read_batch(pin=True))
        y, state = module(xt) if state is None else module(xt, state)
        return y.float().cpu().numpy(), state
    finally:
        net.lon_circular = circular
