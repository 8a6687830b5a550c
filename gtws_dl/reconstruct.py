"""Streaming, resumable reconstruction of every month of the cube with a trained network.

The record is cut into blocks of ``S = window - warmup`` months. Block k is predicted from the inputs of
months ``[kS - warmup, (k+1)S)``: the network starts from a zero state, spins up over ``warmup`` months
(as in training) and only the last ``S`` outputs are kept. The first block spins up on a repeat of the first
``warmup`` months. Blocks are independent, so memory is bounded by one batch of windows, and an interrupted
run resumes at the first unfinished batch with bit-identical results (batches are fixed groups of blocks).
A short last block is padded *after* its months: the networks are causal, so its outputs do not depend on the
padding, and a record extended by an update (``first_month``) gets the same numbers as one reconstructed whole.

Output ``<recon_dir>/<name>.zarr``, a store of :mod:`gtws_dl.recon_store`: ``twsa`` (target, time, lat, lon)
float32 mm, NaN over ocean; with a heteroscedastic head (``model.likelihood`` gaussian/laplace) also ``twsa_std``
(same layout, mm), the predicted standard deviation. :func:`reconstruct_ensemble` merges the reconstructions of a
deep ensemble into one store of the same layout (mean and total spread,
:func:`gtws_dl.recon_store.combine_ensemble`).
"""

from __future__ import annotations

import logging
from contextlib import closing, nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gtws_dl import recon_store, tiling
from gtws_dl.checkpoint import check_compatible, load_checkpoint
from gtws_dl.cube.store import open_cube
from gtws_dl.diskspace import check_free_space, float32_bytes
from gtws_dl.hashing import sha256_json
from gtws_dl.lock import OutputLock
from gtws_dl.models.accel import accelerate, decelerate
from gtws_dl.models.module import split_output
from gtws_dl.prefetch import prefetched

LOGGER = logging.getLogger(__name__)


def _blocks(n_months: int, stride: int, warmup: int) -> list[tuple[np.ndarray, int, int]]:
    """(input month indices, first kept month, last kept month + 1) per block."""
    out = []
    for k0 in range(0, n_months, stride):
        k1 = min(n_months, k0 + stride)
        idx = np.arange(k0 - warmup, k1)
        idx[idx < 0] += warmup  # first block: spin up on a repeat of the first months
        out.append((idx, k0, k1))
    return out


def reconstruct(
    module: torch.nn.Module,
    cube_dir: str | Path,
    out_path: str | Path,
    *,
    ckpt_path: str | Path,
    device: str = "auto",
    amp: bool = True,
    batch_windows: int = 4,
    tile: tuple[int, int] | None = None,
    memory_gb: float | None = None,
    progress: bool = True,
    prefetch: bool = True,
    channels_last: bool = False,
    compile: bool = False,
    first_month: int | None = None,
) -> Path:
    """Predict every month of the cube into ``out_path`` (Zarr); resumes an unfinished run.

    A second process writing the same ``out_path`` is refused (:class:`~gtws_dl.lock.OutputLockedError`).
    ``first_month``: extend a finished reconstruction of a shorter (or partly preliminary) record to the cube's
    months, writing months ``first_month ..`` only (the update; earlier months are not touched). See
    :func:`_reconstruct` for the other parameters.
    """
    with OutputLock(out_path):
        net = getattr(module, "net", module)
        accelerate(net, channels_last=channels_last, compile=compile)
        try:
            return _reconstruct(
                module,
                cube_dir,
                out_path,
                ckpt_path=ckpt_path,
                device=device,
                amp=amp,
                batch_windows=batch_windows,
                tile=tile,
                memory_gb=memory_gb,
                progress=progress,
                prefetch=prefetch,
                first_month=first_month,
            )
        finally:  # the caller's module comes back as it was given (but on the inference device)
            if channels_last or compile:
                decelerate(net)


def _reconstruct(
    module, cube_dir, out_path, *, ckpt_path, device, amp, batch_windows, tile, memory_gb, progress, prefetch,
    first_month=None,
) -> Path:
    """Predict every month of the cube into ``out_path`` (Zarr); resumes an unfinished run.

    Parameters
    ----------
    module : a :class:`~gtws_dl.models.module.ReconstructionModule` (its ``hparams.normalisation`` is used)
    batch_windows : windows per forward pass (memory vs. throughput)
    tile : (lat, lon) cells per tile when a whole field does not fit in memory (:mod:`gtws_dl.tiling`); each tile
        reads only its region (plus halo) of the cube, and tiles whose core holds no land are not computed
    memory_gb : with ``tile=None``, tiles are chosen so one forward pass fits this many GB
        (:func:`gtws_dl.tiling.auto_tile`); ``None``: whole fields
    prefetch : read and normalise batch i+1 on a background thread during the forward pass of batch i
        (:func:`~gtws_dl.prefetch.prefetched`); on CUDA the batch is staged in pinned host memory and copied
        asynchronously. The outputs are bit-identical either way.
    channels_last, compile : see :func:`gtws_dl.models.accel.accelerate` (applied by :func:`reconstruct`)
    """
    manifest, pred_g, _ = open_cube(cube_dir)
    norm = module.hparams.normalisation
    check_compatible(norm, manifest, str(ckpt_path))
    window, warmup = int(norm["window"]), int(norm["warmup"])
    stride = window - warmup
    net = getattr(module, "net", module)
    if getattr(net, "lags", None) and int(getattr(net, "receptive_per_step", 1)) == 0:
        # a stateless net (U-Net) sees only its last `lags` months: any blocking gives the same outputs, so
        # longer blocks with the minimal spin-up read the cube fewer times and waste fewer months
        warmup = min(warmup, int(net.lags) - 1)
        stride = max(stride, 24)
    pred = pred_g["predictors"]
    land = np.asarray(pred_g["land_mask"][:], dtype=bool)
    nt, nc, H, W = pred.shape
    targets = list(norm["targets"])
    mean = np.asarray(norm["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(norm["std"], dtype=np.float32)[:, None, None]
    scale = module.target_scale.detach().cpu().numpy().astype(np.float32)[:, None]  # (K, 1, H, W) mm
    base = module.base() if hasattr(module, "base") else None  # per-cell base (gtws_dl.target_base), mm
    likelihood = str(getattr(module, "likelihood", "mse"))
    times = pd.date_range(manifest["time"]["start"], periods=nt, freq="MS")
    base_at = None  # f(i0, i1) -> the base of those months (K, n, H, W) mm, memories streamed from the cube
    memory = None  # its stream of forcing memories, kept at the first ERA5T month for the next update
    if base is not None and base.kind != "none":
        args = (pred, times, list(norm["channels"]), norm["mean"], norm["std"])
        memory = base.memory_stream(*args, where=str(cube_dir))
        if memory is not None:
            memory_token = sha256_json([base.meta(), norm["channels"], norm["mean"], norm["std"]])
            prelim = sorted(manifest.get("era5t_months") or [])
            memory.keep_at = int(times.get_loc(pd.Timestamp(prelim[0]))) if prelim else nt
            kept = recon_store.read_memory_state(out_path, memory_token) if first_month is not None else None
            if kept is not None and kept[0] <= first_month:  # an update: months before it are unchanged
                memory.resume(*kept)
        base_at = base.over(*args, where=str(cube_dir), memory=memory)

    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    module = module.to(dev).eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (amp and dev.type == "cuda") else nullcontext()

    out_path = Path(out_path)
    fp = recon_store.fingerprint(ckpt_path, manifest)
    blocks = _blocks(nt, stride, warmup)
    groups = [blocks[i : i + batch_windows] for i in range(0, len(blocks), batch_windows)]
    if first_month is not None:  # an update: only the groups holding months >= first_month are computed
        recon_store.extend(out_path, times)
        done = {gi for gi, g in enumerate(groups) if max(k1 for _, _, k1 in g) <= first_month}
    else:
        done = recon_store.read_progress(out_path, fingerprint=fp, batch_windows=batch_windows)
    if done and first_month is None:
        LOGGER.info("resuming %s: %d batches already done", out_path, len(done))
    if done and len(done) == len(groups):
        LOGGER.info("%s is already complete for this checkpoint and cube", out_path)
    if not done and first_month is None:
        check_free_space(
            out_path.parent,
            float32_bytes(len(targets), nt, H, W),
            what=f"reconstruction {out_path}",
            config_key="paths.recon_dir",
        )
        recon_store.create_template(
            out_path,
            targets=targets,
            times=times,
            lat=np.asarray(pred_g["lat"][:]),
            lon=np.asarray(pred_g["lon"][:]),
            chunk_months=stride,
            std_long_name=None if likelihood == "mse" else f"predicted standard deviation ({likelihood} head)",
            attrs={"checkpoint": str(ckpt_path), "cube": str(cube_dir)},
        )
    writer = recon_store.BlockWriter(out_path)
    todo = [gi for gi in range(len(groups)) if gi not in done]
    pin = dev.type == "cuda"
    L = max(len(b[0]) for b in blocks)
    if tile is None and memory_gb is not None:
        tile = tiling.auto_tile(net, L, nc, (H, W), windows=batch_windows, memory_gb=memory_gb)
    tiles = None if tile is None or (tile[0] >= H and tile[1] >= W) else tiling.plan(net, L, (H, W), tile, land)
    if tiles is not None:
        LOGGER.info("%d tiles of up to %dx%d cells hold land (ocean-only tiles are not computed)", len(tiles), *tile)
    items = [(gi, ti) for gi in todo for ti in range(1 if tiles is None else len(tiles))]

    def load(item: tuple[int, int]) -> np.ndarray | torch.Tensor:
        gi, ti = item
        if tiles is None:
            return read_batch(pred, groups[gi], mean, std, pin=pin)
        t = tiles[ti]
        return read_batch(pred, groups[gi], mean, std, rows=t.read_rows, cols=t.read_cols)

    y = None
    # closing(): an error in the forward pass stops the reader thread at once, not when the traceback is freed
    with torch.inference_mode(), closing(prefetched(load, items, enabled=prefetch)) as batches:
        bar = tqdm(desc=f"reconstruct {out_path.stem}", unit="batch", total=len(groups),
                   initial=len(groups) - len(todo), disable=not progress)
        for (gi, ti), x in batches:
            group = groups[gi]
            with autocast:
                if tiles is None:
                    y = predict_tiled(module, x, dev)
                else:  # one window per forward: the budget holds one window's activations
                    t = tiles[ti]
                    keep = max(k1 - k0 for _, k0, k1 in group)  # only the kept months are assembled
                    if ti == 0:
                        y = None
                    for j, (idx, k0, k1) in enumerate(group):
                        yt = forward_tile(module, x[j : j + 1], dev, t)
                        if y is None:
                            y = np.full((len(group), keep, yt.shape[2], H, W), np.nan, dtype=np.float32)
                        n = len(idx)  # the block's months; the padding after them is not kept
                        y[j, : k1 - k0, ..., slice(*t.rows), slice(*t.cols)] = yt[(0, slice(n - (k1 - k0), n),
                                                                                   ..., *t.core)]
                    if ti < len(tiles) - 1:
                        continue
            # where each block's kept months start in y: after its spin-up (whole fields), at 0 (tiles)
            offsets = [0 if tiles is not None else len(idx) - (k1 - k0) for idx, k0, k1 in group]
            _write_group(writer, group, y, offsets, likelihood, scale, base_at, land, first_month or 0)
            y = None
            done.add(gi)
            if first_month is None:
                recon_store.write_progress(out_path, done, fingerprint=fp, batch_windows=batch_windows)
            bar.update()
        bar.close()
    if memory is not None and memory.kept is not None:
        recon_store.write_memory_state(out_path, memory.keep_at, memory.kept, memory_token)
    if first_month is not None:  # the extended store is complete for this checkpoint and the updated cube
        recon_store.write_progress(out_path, set(range(len(groups))), fingerprint=fp, batch_windows=batch_windows)
    recon_store.mark_complete(out_path)  # readers refuse a store without it
    return out_path


def _write_group(writer, group, y, offsets, likelihood, scale, base_at, land, first: int = 0) -> None:
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
    group: list[tuple[np.ndarray, int, int]],
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
        xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(x)
        y, _ = module(xt.to(dev, non_blocking=True))  # asynchronous from pinned memory (read_batch(pin=True))
        return y.float().cpu().numpy()
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
    """The network's outputs [B, T, K, h, w] on one tile's inputs [B, T, C, h, w] (halo included): wrapping in
    longitude only where the tile spans the whole (global) longitude."""
    net = getattr(module, "net", module)
    circular = bool(getattr(net, "lon_circular", False))
    net.lon_circular = circular and t.wraps
    try:
        y, _ = module(torch.from_numpy(np.ascontiguousarray(x)).to(dev))
        return y.float().cpu().numpy()
    finally:
        net.lon_circular = circular


def reconstruct_ensemble(
    ckpt_paths: list[str | Path],
    cube_dir: str | Path,
    out_path: str | Path,
    *,
    modules: list[torch.nn.Module] | None = None,
    **kwargs,
) -> Path:
    """Reconstruct with every member checkpoint (``<out>.member<i>.zarr``, resumable) and merge them with
    :func:`gtws_dl.recon_store.combine_ensemble` into ``out_path`` (``twsa`` = ensemble mean, ``twsa_std`` =
    total spread).

    ``modules``: the members' modules, already loaded (in the order of ``ckpt_paths``); default: each is loaded
    with :func:`gtws_dl.checkpoint.load_checkpoint` when its turn comes. ``kwargs`` go to :func:`reconstruct`.
    """
    out_path = Path(out_path)
    if modules is not None and len(modules) != len(ckpt_paths):
        raise ValueError(f"{len(modules)} modules for {len(ckpt_paths)} member checkpoints")
    members = []
    for i, ckpt in enumerate(ckpt_paths):
        module = modules[i] if modules is not None else load_checkpoint(ckpt)
        member = out_path.with_name(f"{out_path.stem}.member{i}.zarr")
        members.append(reconstruct(module, cube_dir, member, ckpt_path=ckpt, **kwargs))
    return recon_store.combine_ensemble(members, out_path)
