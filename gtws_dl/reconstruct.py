"""Streaming, resumable reconstruction of every month of the cube with a trained network.

The record is cut into blocks of ``S = window - warmup`` months. Block k is predicted from the inputs of
months ``[kS - warmup, (k+1)S)``: the network starts from a zero state, spins up over ``warmup`` months
(as in training) and only the last ``S`` outputs are kept. The first block spins up on a repeat of the first
``warmup`` months. Blocks are independent, so memory is bounded by one batch of windows, and an interrupted
run resumes at the first unfinished batch with bit-identical results (batches are fixed groups of blocks).

Output ``<recon_dir>/<name>.zarr``: ``twsa`` (target, time, lat, lon) float32 mm, NaN over ocean.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
import zarr
from tqdm.auto import tqdm

from gtws_dl.cube import open_cube
from gtws_dl.lock import OutputLock

LOGGER = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """The checkpoint was trained on another grid or other predictor channels than the cube holds."""


def check_compatible(norm: dict, manifest: dict, ckpt: str) -> None:
    """Refuse a checkpoint whose channels or grid differ from the cube's."""
    if list(norm["channels"]) != list(manifest["channels"]):
        extra = sorted(set(norm["channels"]) ^ set(manifest["channels"]))
        raise CheckpointMismatchError(
            f"{ckpt}: trained on predictor channels that differ from the cube's (differences: {extra}); "
            "use a checkpoint trained on this cube or rebuild the cube with the same data config"
        )
    g1, g2 = norm["grid"], manifest["grid"]
    if abs(g1["res"] - g2["res"]) > 1e-9 or g1["shape"] != g2["shape"]:
        raise CheckpointMismatchError(
            f"{ckpt}: trained on a {g1['res']} deg grid of shape {g1['shape']}, the cube is {g2['res']} deg "
            f"{g2['shape']}; reconstruct with a cube on the training grid (grid.* overrides)"
        )


def _blocks(n_months: int, stride: int, warmup: int) -> list[tuple[np.ndarray, int, int]]:
    """(input month indices, first kept month, last kept month + 1) per block."""
    out = []
    for k0 in range(0, n_months, stride):
        k1 = min(n_months, k0 + stride)
        idx = np.arange(k0 - warmup, k1)
        idx[idx < 0] += warmup  # first block: spin up on a repeat of the first months
        out.append((idx, k0, k1))
    return out


def _fingerprint(ckpt_path: Path, manifest: dict) -> str:
    h = hashlib.sha256()
    with open(ckpt_path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    h.update(manifest["fingerprint"].encode())
    return h.hexdigest()


def reconstruct(module: torch.nn.Module, cube_dir: str | Path, out_path: str | Path, *, ckpt_path: str | Path,
                device: str = "auto", amp: bool = True, batch_windows: int = 4, tile: tuple[int, int] | None = None,
                progress: bool = True) -> Path:
    """Predict every month of the cube into ``out_path`` (Zarr); resumes an unfinished run.

    A second process writing the same ``out_path`` is refused (:class:`~gtws_dl.lock.OutputLockedError`).
    See :func:`_reconstruct` for the parameters.
    """
    with OutputLock(out_path):
        return _reconstruct(module, cube_dir, out_path, ckpt_path=ckpt_path, device=device, amp=amp,
                            batch_windows=batch_windows, tile=tile, progress=progress)


def _reconstruct(module, cube_dir, out_path, *, ckpt_path, device, amp, batch_windows, tile, progress) -> Path:
    """Predict every month of the cube into ``out_path`` (Zarr); resumes an unfinished run.

    Parameters
    ----------
    module : a :class:`~gtws_dl.models.module.ReconstructionModule` (its ``hparams.normalisation`` is used)
    batch_windows : windows per forward pass (memory vs. throughput)
    tile : (lat, lon) cells per tile when a whole field does not fit in device memory; see :func:`predict_tiled`
    """
    manifest, pred_g, _ = open_cube(cube_dir)
    norm = module.hparams.normalisation
    check_compatible(norm, manifest, str(ckpt_path))
    window, warmup = int(norm["window"]), int(norm["warmup"])
    stride = window - warmup
    pred = pred_g["predictors"]
    land = np.asarray(pred_g["land_mask"][:], dtype=bool)
    nt, nc, H, W = pred.shape
    targets = list(norm["targets"])
    mean = np.asarray(norm["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(norm["std"], dtype=np.float32)[:, None, None]
    scale = module.target_scale.detach().cpu().numpy().astype(np.float32)[:, None]  # (K, 1, H, W) mm
    times = pd.date_range(manifest["time"]["start"], periods=nt, freq="MS")

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    module = module.to(dev).eval()
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if (amp and dev.type == "cuda") else nullcontext())

    out_path = Path(out_path)
    prog_path = out_path.with_name(out_path.name + ".progress.json")
    fp = _fingerprint(Path(ckpt_path), manifest)
    done: set[int] = set()
    if out_path.exists() and prog_path.exists():
        prog = json.loads(prog_path.read_text())
        if prog.get("fingerprint") == fp and prog.get("batch_windows") == batch_windows:
            done = set(prog["done"])
            LOGGER.info("resuming %s: %d batches already done", out_path, len(done))
    if done and len(done) == -(-len(_blocks(nt, stride, warmup)) // batch_windows):
        LOGGER.info("%s is already complete for this checkpoint and cube", out_path)
    if not done:
        shutil.rmtree(out_path, ignore_errors=True)
        ds = xr.Dataset(
            {"twsa": (("target", "time", "lat", "lon"),
                      _lazy_nan((len(targets), nt, H, W), (1, stride, H, W)),
                      {"units": "mm", "long_name": "reconstructed terrestrial water storage anomaly"})},
            coords={"target": np.array(targets, dtype=object), "time": times,
                    "lat": np.asarray(pred_g["lat"][:]), "lon": np.asarray(pred_g["lon"][:])},
            attrs={"checkpoint": str(ckpt_path), "cube": str(cube_dir)},
        )
        ds.to_zarr(out_path, mode="w", compute=False, consolidated=False, zarr_format=3,
                   encoding={"twsa": {"chunks": (1, stride, H, W)}})
    out = zarr.open_group(out_path, mode="r+")["twsa"]

    blocks = _blocks(nt, stride, warmup)
    groups = [blocks[i:i + batch_windows] for i in range(0, len(blocks), batch_windows)]
    with torch.inference_mode():
        for gi, group in enumerate(tqdm(groups, desc=f"reconstruct {out_path.stem}", unit="batch",
                                        disable=not progress)):
            if gi in done:
                continue
            L = max(len(b[0]) for b in group)
            x = np.zeros((len(group), L, nc, H, W), dtype=np.float32)
            for j, (idx, _, _) in enumerate(group):
                # contiguous read of the block's months, then the first-block repeat by fancy indexing
                lo, hi = int(idx.min()), int(idx.max()) + 1
                xb = (np.asarray(pred[lo:hi], dtype=np.float32)[idx - lo] - mean) / std
                x[j, L - len(idx):] = xb  # right-align: a short last block keeps its full spin-up
            x[~np.isfinite(x)] = 0.0
            with autocast:
                y = predict_tiled(module, x, dev, tile=tile)
            for j, (_, k0, k1) in enumerate(group):
                keep = y[j, L - (k1 - k0):].transpose(1, 0, 2, 3) * scale  # (K, months, H, W)
                keep[:, :, ~land] = np.nan
                out[:, k0:k1] = keep
            done.add(gi)
            _write_json(prog_path, {"fingerprint": fp, "batch_windows": batch_windows, "done": sorted(done)})
    zarr.open_group(out_path, mode="r+").attrs["complete"] = True  # readers refuse a store without it
    return out_path


def predict_tiled(module: torch.nn.Module, x: np.ndarray, dev: torch.device, *,
                  tile: tuple[int, int] | None = None) -> np.ndarray:
    """Run the network on ``x`` [B, T, C, H, W] whole or in overlapping tiles; returns [B, T, K, H, W] float32.

    A ConvLSTM's output at a cell depends on inputs within ``T × layers × (kernel // 2)`` cells (its halo):
    each tile is computed with that halo of real neighbours around it (wrapping in longitude on a global grid,
    zero padding only at the grid's true edges, as untiled) and only its core is kept, so seams are identical to
    the untiled result up to floating-point summation order.
    """
    B, T, C, H, W = x.shape
    net = getattr(module, "net", module)
    if tile is None or (tile[0] >= H and tile[1] >= W):
        y, _ = module(torch.from_numpy(x).to(dev, non_blocking=True))
        return y.float().cpu().numpy()
    halo = T * int(net.receptive_per_step)
    th, tw = min(tile[0], H), min(tile[1], W)
    circular = bool(getattr(net, "lon_circular", False))
    out: np.ndarray | None = None
    try:
        for i0 in range(0, H, th):
            i1 = min(H, i0 + th)
            lo, hi = max(0, i0 - halo), min(H, i1 + halo)
            for j0 in range(0, W, tw):
                j1 = min(W, j0 + tw)
                if tw >= W:  # full longitude: the network wraps by itself
                    cols, net.lon_circular = np.arange(W), circular
                elif circular:  # neighbours across the dateline are real data
                    cols, net.lon_circular = np.arange(j0 - halo, j1 + halo) % W, False
                else:
                    cols, net.lon_circular = np.arange(max(0, j0 - halo), min(W, j1 + halo)), False
                xt = torch.from_numpy(np.ascontiguousarray(x[:, :, :, lo:hi][..., cols])).to(dev)
                y, _ = module(xt)
                y = y.float().cpu().numpy()
                if out is None:
                    out = np.empty((B, T, y.shape[2], H, W), dtype=np.float32)
                c0 = int(np.flatnonzero(cols == j0)[0])
                out[..., i0:i1, j0:j1] = y[..., i0 - lo:i1 - lo, c0:c0 + (j1 - j0)]
    finally:
        net.lon_circular = circular
    return out


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _lazy_nan(shape, chunks):
    import dask.array as dsa

    return dsa.full(shape, np.nan, dtype=np.float32, chunks=chunks)


def open_reconstruction(path: str | Path) -> xr.DataArray:
    """The ``twsa`` of a finished reconstruction; refuses an unfinished one."""
    ds = xr.open_zarr(path, consolidated=False)
    if not ds.attrs.get("complete"):
        raise RuntimeError(f"{path} is an unfinished reconstruction; re-run infer.py to complete it")
    return ds["twsa"]
