"""Training-loader benchmarks: step time reading from Zarr vs. from memory, and the cube-chunking study.

A *step* is what Lightning runs per batch: forward, masked MSE, backward, AdamW step (``training_step``
without the logging). The in-memory baseline replays the very same batches, materialised beforehand.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from bench.cubes import predictor_encoding, rewrite_predictors, store_bytes
from gtws_dl.data import CubeDataModule
from gtws_dl.models.module import masked_mse

LOGGER = logging.getLogger(__name__)


def _step(module, opt, b) -> None:
    pred, _ = module(b["x"])
    loss = masked_mse(pred.float(), b["y"], b["mask"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _datamodule(cfg, in_memory, **kw) -> CubeDataModule:
    dm = instantiate(cfg.datamodule, in_memory=in_memory, **kw)
    dm.setup("fit")
    return dm


def loader_overhead(
    module, cfg, *, n_batches: int = 4, repeats: int = 2, num_workers: int = 0, composed: bool = False
) -> dict:
    """Training-step time through the Zarr ``CubeDataModule`` ÷ the same steps on pre-materialised batches.

    ``composed``: for models whose step takes many seconds, time one step on a materialised batch and add the
    measured loading time per batch (exact for ``num_workers=0``, where loading and step run in sequence).

    Returns seconds per step for ``memory`` (pre-materialised), ``zarr`` (``in_memory=False``), ``auto``
    (``in_memory="auto"``, loads the cube into RAM when small) and the loading-only seconds per batch.
    """
    module = module.cpu().train()
    bs = int(cfg.datamodule.batch_size)
    kw = {"samples_per_epoch": n_batches * bs, "num_workers": num_workers}
    dms = {"zarr": _datamodule(cfg, False, **kw), "auto": _datamodule(cfg, "auto", **kw)}
    opt = instantiate(module.hparams.optimizer, params=module.parameters())

    load = {}
    for name, dm in dms.items():
        t0 = time.perf_counter()
        batches = list(dm.train_dataloader())
        load[name] = (time.perf_counter() - t0) / len(batches)
    # same batches from both loaders: the dataset's RNG is keyed by (seed, epoch, index)
    again = list(dms["zarr"].train_dataloader())
    if not all(torch.equal(a["x"], b["x"]) for a, b in zip(batches, again, strict=True)):
        raise RuntimeError(
            "the Zarr and in-memory loaders produced different batches; the comparison is void"
        )
    _step(module, opt, batches[0])  # warm-up (allocator, thread pools)
    if composed:
        t0 = time.perf_counter()
        _step(module, opt, batches[-1])
        step = time.perf_counter() - t0
        per = {"memory": step, **{k: step + v for k, v in load.items()}}
        repeats = 0
    # interleaved batch by batch, the order rotating: machine noise and drift hit every mode alike
    total = {"memory": 0.0, "zarr": 0.0, "auto": 0.0}
    modes = list(total)
    for _ in range(repeats):
        iters = {name: iter(dm.train_dataloader()) for name, dm in dms.items()}
        for i, mem_batch in enumerate(batches):
            for name in modes[i % 3 :] + modes[: i % 3]:
                t0 = time.perf_counter()
                _step(module, opt, mem_batch if name == "memory" else next(iters[name]))
                total[name] += time.perf_counter() - t0
    if not composed:
        per = {k: v / (len(batches) * repeats) for k, v in total.items()}
    return {
        "n_batches": len(batches),
        "batch_size": bs,
        "num_workers": num_workers,
        "composed": composed,
        "step_s": per,
        "load_s_per_batch": load,
        "ratio_zarr": per["zarr"] / per["memory"],
        "ratio_auto": per["auto"] / per["memory"],
        "auto_in_memory": isinstance(dms["auto"].pred, np.ndarray),
    }


def _sample_read_seconds(cube_dir: Path, cfg, *, n_samples: int, in_memory) -> float:
    """Seconds per training sample of ``WindowDataset.__getitem__`` (read + normalise + mask)."""
    dm = _datamodule(cfg, in_memory, samples_per_epoch=n_samples, num_workers=0, cube_dir=str(cube_dir))
    ds = dm._dataset(dm.train_starts(), dm.split.train, patch=dm.patch, epoch_len=n_samples)
    ds[0]
    t0 = time.perf_counter()
    for i in range(n_samples):
        ds[i]
    return (time.perf_counter() - t0) / n_samples


def chunking_study(cube_dir: Path, cfg, work: Path, *, n_samples: int = 16) -> list[dict]:
    """Per-sample read time of the training loader for several encodings of the same predictor cube.

    The baseline is the cube as ``CubeWriter`` writes it (time chunk ``chunk_months``, ``chunk_lat`` latitude
    rows, Blosc zstd level 3 + byte shuffle). Every variant is read through the real ``CubeDataModule``
    (``in_memory=False``) with the same random windows and patches.
    """
    work = Path(work)
    src = Path(cube_dir)
    import zarr

    arr = zarr.open_group(src / "predictors.zarr", mode="r")["predictors"]
    T, C, H, W = arr.shape
    ct = arr.chunks[0]
    lat = max(1, H // 6)
    variants = [
        (f"as written: {predictor_encoding(src)[1]}", None),
        ("whole-field chunks, no compression", {"chunks": (ct, C, H, W), "compressor": None}),
        ("whole-field chunks, lz4-1", {"chunks": (ct, C, H, W), "compressor": "lz4", "clevel": 1}),
        (f"whole-field chunks ({ct}, C, H, W), zstd-3", {"chunks": (ct, C, H, W)}),
        (
            f"whole-field chunks ({ct}, C, H, W), zstd-3 bitshuffle (the encoding before 2026-11-27)",
            {"chunks": (ct, C, H, W), "shuffle": "bitshuffle"},
        ),
        (
            f"shards ({ct}, C, H, W) of chunks (1, C, {lat}, W), zstd-3",
            {"chunks": (1, C, lat, W), "shards": (ct, C, H, W)},
        ),
    ]
    mem = _sample_read_seconds(src, cfg, n_samples=n_samples, in_memory=True)
    rows = []
    for i, (name, enc) in enumerate(variants):
        path = src if enc is None else rewrite_predictors(src, work / f"variant{i}", **enc)
        sec = _sample_read_seconds(path, cfg, n_samples=n_samples, in_memory=False)
        rows.append(
            {
                "variant": name,
                "store_mb": store_bytes(path / "predictors.zarr") / 2**20,
                "ms_per_sample": 1e3 * sec,
                "ratio_vs_memory": sec / mem,
                "memory_ms_per_sample": 1e3 * mem,
            }
        )
    return rows
