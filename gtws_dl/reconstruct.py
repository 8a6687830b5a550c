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

from gtws_dl import carry, recon_store, tiling
from gtws_dl.blocks import Run, forward_tile, predict_tiled, read_batch  # noqa: F401  (read_batch: re-exported)
from gtws_dl.checkpoint import check_compatible, load_checkpoint
from gtws_dl.cube.store import open_cube
from gtws_dl.diskspace import check_free_space, float32_bytes
from gtws_dl.hashing import sha256_json
from gtws_dl.lock import OutputLock
from gtws_dl.models.accel import accelerate, decelerate
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
    carry_state: bool = False,
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
                carry_state=carry_state,
            )
        finally:  # the caller's module comes back as it was given (but on the inference device)
            if channels_last or compile:
                decelerate(net)


def _reconstruct(
    module, cube_dir, out_path, *, ckpt_path, device, amp, batch_windows, tile, memory_gb, progress, prefetch,
    first_month=None, carry_state=False,
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
    carry_state : carry the recurrent state from block to block instead of a warm-up per block
        (:mod:`gtws_dl.carry`; each month computed once); ignored (logged) for a net without a state
    channels_last, compile : see :func:`gtws_dl.models.accel.accelerate` (applied by :func:`reconstruct`)
    """
    manifest, pred_g, _ = open_cube(cube_dir)
    norm = module.hparams.normalisation
    check_compatible(norm, manifest, str(ckpt_path))
    window, warmup = int(norm["window"]), int(norm["warmup"])
    stride = window - warmup
    net = getattr(module, "net", module)
    if carry_state and not carry.supports(net):
        LOGGER.info("carry_state: %s has no recurrent state to carry; windows as usual", type(net).__name__)
        carry_state = False
    if carry_state and first_month is not None and not carry.has_kept(out_path, ckpt_path, stride, warmup):
        LOGGER.warning("carry_state: %s keeps no carried state for this checkpoint (reconstructed in windows, or by "
                       "an earlier version): the update goes on in windows, as the store was made (re-run "
                       "infer.py for a record with the state carried)", out_path)
        carry_state = False
    if getattr(net, "lags", None) and int(getattr(net, "receptive_per_step", 1)) == 0:
        # a stateless net (U-Net) sees only its last `lags` months: any blocking gives the same outputs, so
        # longer blocks with the minimal spin-up read the cube fewer times and waste fewer months
        warmup = min(warmup, int(net.lags) - 1)
        stride = max(stride, 24)
    pred = pred_g["predictors"]
    land = np.asarray(pred_g["land_mask"][:], dtype=bool)
    nt, nc, H, W = pred.shape
    targets = list(norm["targets"])
    likelihood = str(getattr(module, "likelihood", "mse"))
    times = pd.date_range(manifest["time"]["start"], periods=nt, freq="MS")
    prelim = sorted(manifest.get("era5t_months") or [])
    keep_at = int(times.get_loc(pd.Timestamp(prelim[0]))) if prelim else nt  # states kept here for updates
    base = module.base() if hasattr(module, "base") else None  # per-cell base (gtws_dl.target_base), mm
    base_at = None  # f(i0, i1) -> the base of those months (K, n, H, W) mm, memories streamed from the cube
    memory = None  # its stream of forcing memories, kept at the first ERA5T month for the next update
    if base is not None and base.kind != "none":
        args = (pred, times, list(norm["channels"]), norm["mean"], norm["std"])
        memory = base.memory_stream(*args, where=str(cube_dir))
        if memory is not None:
            memory_token = sha256_json([base.meta(), norm["channels"], norm["mean"], norm["std"]])
            memory.keep_at = keep_at
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
    blocks = carry.schedule(nt, stride, warmup) if carry_state else _blocks(nt, stride, warmup)
    per_batch = carry.PROGRESS_KEY if carry_state else batch_windows  # what the progress file records
    per = 1 if carry_state else batch_windows  # blocks per batch: the carried state runs one block after another
    groups = [blocks[i : i + per] for i in range(0, len(blocks), per)]
    if first_month is not None:  # an update: only the groups holding months >= first_month are computed
        recon_store.extend(out_path, times)
        done = {gi for gi, g in enumerate(groups) if max(k1 for _, _, k1 in g) <= first_month}
    else:
        done = recon_store.read_progress(out_path, fingerprint=fp, batch_windows=per_batch)
    if done and first_month is None:
        LOGGER.info("resuming %s: %d batches already done", out_path, len(done))
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
    scale = module.target_scale.detach().cpu().numpy().astype(np.float32)[:, None]  # (K, 1, H, W) mm
    run = Run(module, pred, land, np.asarray(norm["mean"], dtype=np.float32)[:, None, None],
              np.asarray(norm["std"], dtype=np.float32)[:, None, None], likelihood, scale, base_at, dev, autocast,
              recon_store.BlockWriter(out_path))
    if carry_state:
        carry.reconstruct_carried(run, out_path, blocks=blocks, done=done, stride=stride, tile=tile,
                                  memory_gb=memory_gb, tok=carry.token(ckpt_path, stride, warmup), fingerprint=fp,
                                  keep_at=keep_at, first_month=first_month, progress=progress, prefetch=prefetch)
    else:
        _reconstruct_windows(run, out_path, groups, done, tile=tile, memory_gb=memory_gb, fingerprint=fp,
                             batch_windows=batch_windows, first_month=first_month, progress=progress,
                             prefetch=prefetch)
    if memory is not None and memory.kept is not None:
        recon_store.write_memory_state(out_path, memory.keep_at, memory.kept, memory_token)
    if first_month is not None:  # the extended store is complete for this checkpoint and the updated cube
        recon_store.write_progress(out_path, set(range(len(groups))), fingerprint=fp, batch_windows=per_batch)
    recon_store.mark_complete(out_path)  # readers refuse a store without it
    return out_path


def _reconstruct_windows(run: Run, out_path: Path, groups, done: set[int], *, tile, memory_gb, fingerprint: str,
                         batch_windows: int, first_month: int | None, progress: bool, prefetch: bool) -> None:
    """The windowed loop: each batch of blocks restarts from a zero state after its warm-up."""
    net, pred, land = run.net, run.pred, run.land
    _, nc, H, W = pred.shape
    if done and len(done) == len(groups):
        LOGGER.info("%s is already complete for this checkpoint and cube", out_path)
    todo = [gi for gi in range(len(groups)) if gi not in done]
    pin = run.dev.type == "cuda"
    L = max(len(b[0]) for g in groups for b in g)
    if tile is None and memory_gb is not None:
        tile = tiling.auto_tile(net, L, nc, (H, W), windows=batch_windows, memory_gb=memory_gb)
    tiles = None if tile is None or (tile[0] >= H and tile[1] >= W) else tiling.plan(net, L, (H, W), tile, land)
    if tiles is not None:
        LOGGER.info("%d tiles of up to %dx%d cells hold land (ocean-only tiles are not computed)", len(tiles), *tile)
    items = [(gi, ti) for gi in todo for ti in range(1 if tiles is None else len(tiles))]

    def load(item: tuple[int, int]) -> np.ndarray | torch.Tensor:
        gi, ti = item
        return run.read(groups[gi], None if tiles is None else tiles[ti], pin=pin and tiles is None)

    y = None
    # closing(): an error in the forward pass stops the reader thread at once, not when the traceback is freed
    with torch.inference_mode(), closing(prefetched(load, items, enabled=prefetch)) as batches:
        bar = tqdm(desc=f"reconstruct {out_path.stem}", unit="batch", total=len(groups),
                   initial=len(groups) - len(todo), disable=not progress)
        for (gi, ti), x in batches:
            group = groups[gi]
            with run.autocast:
                if tiles is None:
                    y = predict_tiled(run.module, x, run.dev)
                else:  # one window per forward: the budget holds one window's activations
                    t = tiles[ti]
                    keep = max(k1 - k0 for _, k0, k1 in group)  # only the kept months are assembled
                    if ti == 0:
                        y = None
                    for j, (idx, k0, k1) in enumerate(group):
                        yt = forward_tile(run.module, x[j : j + 1], run.dev, t)
                        if y is None:
                            y = np.full((len(group), keep, yt.shape[2], H, W), np.nan, dtype=np.float32)
                        n = len(idx)  # the block's months; the padding after them is not kept
                        y[j, : k1 - k0, ..., slice(*t.rows), slice(*t.cols)] = yt[(0, slice(n - (k1 - k0), n),
                                                                                   ..., *t.core)]
                    if ti < len(tiles) - 1:
                        continue
            # where each block's kept months start in y: after its spin-up (whole fields), at 0 (tiles)
            offsets = [0 if tiles is not None else len(idx) - (k1 - k0) for idx, k0, k1 in group]
            run.write(group, y, offsets, first_month or 0)
            y = None
            done.add(gi)
            if first_month is None:
                recon_store.write_progress(out_path, done, fingerprint=fingerprint, batch_windows=batch_windows)
            bar.update()
        bar.close()


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
