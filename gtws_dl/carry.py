"""Reconstruction with the recurrent state carried through the record (``carry_state=true``).

The windowed reconstruction (:mod:`gtws_dl.reconstruct`) restarts every block of ``S = window - warmup`` months
from a zero state and spins it up over ``warmup`` months, so with the default 24-month windows every month is
computed twice and the network's memory never reaches back more than a window. Here the state at the end of
block k starts block k+1: each month is computed once and the memory runs through the record. The first block
spins up on a repeat of the first ``warmup`` months, as the windowed one does. The numbers differ from the
windowed reconstruction's (a different state, not a rounding), so this is judged by skill.

State beyond ``reach = S × receptive_per_step`` cells of land is reset to zero at each block's start (it feeds
only ocean), whole-field or tiled alike; tiles whose core lies wholly beyond are not computed. A block needs
a halo of ``S × receptive_per_step`` cells around a tile and the state over the tile and halo at its start:
the state is kept in the store in two buffers that alternate by block (:func:`gtws_dl.recon_store.state_array`),
each tile reads its region of the previous one and writes its core into the next, so tiled and whole-field runs
agree up to summation order.

One block runs as a batch of one, whose CPU convolutions round differently with the number of torch threads
(≈ 1e-7 relative): a run resumed with another thread count is equal within that, not bit for bit.

Resume: the store keeps the state after the last block written, so an interrupted run goes on at the next
block. Update: the state at the start of the block holding the first ERA5T month is kept too
(``recurrent_state_kept``), so an update computes only the blocks from there.
"""

from __future__ import annotations

import logging
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
import zarr
from scipy import ndimage
from tqdm.auto import tqdm

from gtws_dl import recon_store, tiling
from gtws_dl.blocks import Block, Run, run_net
from gtws_dl.hashing import sha256_path
from gtws_dl.prefetch import prefetched

LOGGER = logging.getLogger(__name__)
BUFFERS = ("recurrent_state_0", "recurrent_state_1")  # the state after the last block, by its parity
KEPT = "recurrent_state_kept"  # the state at the start of the block holding the first ERA5T month
PROGRESS_KEY = 0  # batch_windows recorded in the progress file of a carried run (one block per batch)


def supports(net: torch.nn.Module) -> bool:
    """Whether ``net`` has a recurrent state to carry (a ConvLSTM: ``init_state`` and ``cells``)."""
    return hasattr(net, "init_state") and hasattr(net, "cells") and int(getattr(net, "receptive_per_step", 0)) > 0


def schedule(n_months: int, stride: int, warmup: int) -> list[Block]:
    """Blocks of ``stride`` months, run in order with the state carried; the first spins up on a repeat of
    the first ``warmup`` months (its kept months start after them)."""
    out = []
    for k0 in range(0, n_months, stride):
        k1 = min(n_months, k0 + stride)
        idx = np.arange(k0, k1) if k0 else np.concatenate([np.arange(min(warmup, n_months)), np.arange(k0, k1)])
        out.append((idx, k0, k1))
    return out


def token(ckpt_path: str | Path, stride: int, warmup: int) -> str:
    """What a carried state was computed with: the checkpoint's bytes and the block schedule."""
    return sha256_path(ckpt_path, salt=f"carry stride={stride} warmup={warmup}")


def has_kept(out_path: str | Path, ckpt_path: str | Path, stride: int, warmup: int) -> bool:
    """Whether the store keeps a carried state for an update with this checkpoint and schedule."""
    group = zarr.open_group(out_path, mode="r")
    return KEPT in group and recon_store.state_index(group[KEPT], token(ckpt_path, stride, warmup)) is not None


def active_cells(land: np.ndarray, reach: int, circular: bool) -> np.ndarray:
    """(H, W) bool: cells within ``reach`` cells (Chebyshev distance, as 3x3 convolutions spread) of land,
    wrapping in longitude on a global grid."""
    size = 2 * int(reach) + 1
    return ndimage.maximum_filter(land.astype(np.uint8), size=size,
                                  mode=("constant", "wrap" if circular else "constant"), cval=0).astype(bool)


def pack(state) -> torch.Tensor:
    """A ConvLSTM state [(h, c) per layer], each [B, hidden, h, w] → [B, V, h, w] float32 (V = Σ 2 hidden)."""
    return torch.cat([t.float() for hc in state for t in hc], dim=1)


def unpack(x: torch.Tensor, net: torch.nn.Module):
    """The inverse of :func:`pack` for ``net``'s layers."""
    out, i = [], 0
    for cell in net.cells:
        h = x[:, i : i + cell.hidden]
        c = x[:, i + cell.hidden : i + 2 * cell.hidden]
        out.append((h.contiguous(), c.contiguous()))
        i += 2 * cell.hidden
    return out


def n_state(net: torch.nn.Module) -> int:
    return sum(2 * cell.hidden for cell in net.cells)


def _read_region(arr, rows: tuple[int, int], cols: np.ndarray) -> np.ndarray:
    parts = [np.asarray(arr[:, rows[0] : rows[1], a:b]) for a, b in tiling.column_runs(cols)]
    return np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def _copy(src, dst, index: int, tok: str, rows: int = 64) -> None:
    dst.attrs["month_index"] = -1
    for r in range(0, src.shape[1], rows):
        dst[:, r : r + rows] = src[:, r : r + rows]
    dst.attrs.update({"month_index": int(index), "token": tok})


def reconstruct_carried(
    run: Run,
    out_path: Path,
    *,
    blocks: list[Block],
    done: set[int],
    stride: int,
    tile: tuple[int, int] | None,
    memory_gb: float | None,
    tok: str,
    fingerprint: str,
    keep_at: int,
    first_month: int | None = None,
    progress: bool = True,
    prefetch: bool = True,
) -> None:
    """Predict the months of the store ``out_path`` (made by :func:`gtws_dl.recon_store.create_template`)
    with the state carried: ``blocks`` of :func:`schedule`, ``done`` those the progress file records as
    written; ``first_month``: an update (only months from it are written); ``keep_at``: the first ERA5T month
    (the state at the start of its block is kept for the next update)."""
    net = run.net
    _, nc, H, W = run.pred.shape
    reach = stride * int(net.receptive_per_step)
    active = active_cells(run.land, reach, bool(getattr(net, "lon_circular", False)))
    V = n_state(net)
    bufs = [recon_store.state_array(out_path, name, V, (H, W)) for name in BUFFERS]
    kept = recon_store.state_array(out_path, KEPT, V, (H, W))
    keep_index = (keep_at // stride) * stride  # a block boundary at or before the first ERA5T month

    start, prev = 0, None  # the first block to compute, the state before it (None: zeros)
    if first_month is not None:
        index = recon_store.state_index(kept, tok)
        if index is not None and 0 < index <= first_month and index % stride == 0:
            start, prev = index // stride, kept
        else:
            LOGGER.warning("%s keeps no carried state for this checkpoint before month %d: the update recomputes "
                           "the record from its start", out_path, first_month)
    elif done:  # a resume: the finished blocks must be a prefix whose end state is kept, else start again
        last = max(done)
        if done == set(range(last + 1)) and recon_store.state_index(bufs[last % 2], tok) == blocks[last][2]:
            start, prev = last + 1, bufs[last % 2]
            LOGGER.info("resuming %s at block %d of %d (carried state)", out_path, start, len(blocks))
    if start >= len(blocks):
        return

    lengths = sorted({len(b[0]) for b in blocks[start:]})  # months per block: the spin-up block's, the others'
    sizes = {L: tile if tile is not None or memory_gb is None else
             tiling.auto_tile(net, L, nc, (H, W), windows=1, memory_gb=memory_gb) for L in lengths}
    whole = all(t is None or (t[0] >= H and t[1] >= W) for t in sizes.values())
    plans = {} if whole else {L: tiling.plan(net, L, (H, W), sizes[L] or (H, W), active) for L in lengths}
    for L, p in plans.items():  # each tiling writes the whole state, so blocks of different lengths may differ
        LOGGER.info("carried state, blocks of %d months: %d tiles of up to %dx%d cells within %d cells of land",
                    L, len(p), *(sizes[L] or (H, W)), reach)
    todo = list(range(start, len(blocks)))
    items = [(k, ti) for k in todo for ti in range(1 if whole else len(plans[len(blocks[k][0])]))]

    def load(item):
        k, ti = item
        return run.read([blocks[k]], None if whole else plans[len(blocks[k][0])][ti], pin=whole and
                        run.dev.type == "cuda")

    act = torch.from_numpy(active.astype(np.float32)).to(run.dev)
    state = None if prev is None or not whole else unpack(torch.from_numpy(np.asarray(prev[:]))[None].to(run.dev), net)
    y = None
    with torch.inference_mode(), closing(prefetched(load, items, enabled=prefetch)) as batches:
        bar = tqdm(desc=f"reconstruct {out_path.stem} (carried)", unit="block", total=len(blocks), initial=start,
                   disable=not progress)
        for (k, ti), x in batches:
            idx, k0, k1 = blocks[k]
            n, cur = len(idx), bufs[k % 2]
            if ti == 0:
                cur.attrs["month_index"] = -1  # invalid until the block's state is whole
            with run.autocast:
                if whole:
                    y, state = run_net(run.module, x, run.dev, state=state)
                    state = [(h * act, c * act) for h, c in state]
                    cur[:] = pack(state)[0].cpu().numpy()
                else:
                    t = plans[n][ti]
                    s0 = None
                    if prev is not None:
                        s0 = unpack(torch.from_numpy(_read_region(prev, t.read_rows, t.read_cols))[None]
                                    .to(run.dev), net)
                    yt, st = run_net(run.module, x, run.dev, wraps=t.wraps, state=s0)
                    if y is None:
                        y = np.full((1, n, yt.shape[2], H, W), np.nan, dtype=np.float32)
                    y[..., slice(*t.rows), slice(*t.cols)] = yt[(..., *t.core)]
                    core = pack(st)[0].cpu().numpy()[(slice(None), *t.core)]
                    cur[:, slice(*t.rows), slice(*t.cols)] = core * active[slice(*t.rows), slice(*t.cols)]
                    if ti < len(plans[n]) - 1:
                        continue
            run.write([blocks[k]], y, [n - (k1 - k0)], first_month or 0)
            y, prev = None, cur
            cur.attrs.update({"month_index": int(k1), "token": tok})
            if k1 == keep_index:
                _copy(cur, kept, k1, tok)
            if first_month is None:
                recon_store.write_progress(out_path, set(range(k + 1)), fingerprint=fingerprint,
                                           batch_windows=PROGRESS_KEY)
            bar.update()
        bar.close()
