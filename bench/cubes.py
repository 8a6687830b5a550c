"""Synthetic cubes and untrained modules, built the way ingest and training build the real ones.

Predictors are smooth random fields (coarse noise upsampled, plus 5 % white noise) with per-channel offsets and
scales, so that the Zarr compressor sees data about as compressible as ERA5-like fields rather than pure noise.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from gtws_dl.config import conf_dir
from gtws_dl.cube.writer import CubeWriter
from gtws_dl.grid import Grid

LOGGER = logging.getLogger(__name__)

VAL_MONTHS = 12  # blocked validation split of the synthetic targets (the bench never trains to convergence)


@dataclass(frozen=True)
class CubeSize:
    """Size of a synthetic cube: ``nlat`` even (global grid of res 180/nlat deg, nlon = 2 nlat)."""

    nlat: int = 90
    months: int = 120
    channels: int = 25
    start: str = "1940-01"
    chunk_months: int = 12

    @property
    def res(self) -> float:
        return 180.0 / self.nlat

    @property
    def grid(self) -> Grid:
        return Grid(self.res)

    @property
    def cells(self) -> int:
        return 2 * self.nlat * self.nlat


def even(n: float, minimum: int = 4) -> int:
    """Nearest even integer ≥ ``minimum`` (global grids need an even number of latitudes)."""
    return max(minimum, int(round(n / 2.0)) * 2)


def _land_fraction(grid: Grid) -> np.ndarray:
    lat2, lon2 = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    return ((np.sin(np.deg2rad(lon2) * 2) + np.cos(np.deg2rad(lat2) * 3)) > 0).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], factor: int = 6) -> np.ndarray:
    *lead, H, W = shape
    coarse = rng.standard_normal((*lead, -(-H // factor), -(-W // factor)), dtype=np.float32)
    field = np.repeat(np.repeat(coarse, factor, axis=-2), factor, axis=-1)[..., :H, :W]
    return field + 0.05 * rng.standard_normal(shape, dtype=np.float32)


def build_cube(out_dir: str | Path, size: CubeSize, *, seed: int = 0, block_months: int = 120) -> Path:
    """Write ``predictors.zarr``, ``targets.zarr`` (one centre, ``csr``) and ``manifest.json`` into ``out_dir``.

    Targets exist from month ``months // 4``; the normalisation period ends where the blocked split of
    :func:`build_module` (``VAL_MONTHS`` validation months, no gap) starts validating.
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    grid, nt, nc = size.grid, size.months, size.channels
    times = pd.date_range(size.start, periods=nt, freq="MS")
    first_target, train_end = nt // 4, nt - VAL_MONTHS - 1
    if train_end - first_target < 1:
        raise ValueError(f"{nt} months are too few for a synthetic cube (need > {VAL_MONTHS + 2 + nt // 4})")
    # the first two named like ERA5's precipitation and temperature: the default network base reads their memories
    channels = ["tp", "t2m", *[f"c{i:02d}" for i in range(2, nc)]][:nc]
    offset = rng.uniform(-300, 300, nc).astype(np.float32)[None, :, None, None]
    scale = rng.uniform(0.1, 30, nc).astype(np.float32)[None, :, None, None]
    w = CubeWriter(
        out_dir,
        grid,
        times,
        channels,
        land_fraction=_land_fraction(grid),
        stats_period=(f"{times[first_target]:%Y-%m}", f"{times[train_end]:%Y-%m}"),
        chunk_months=size.chunk_months,
        units=dict.fromkeys(channels, "1"),
    )
    step = max(size.chunk_months, block_months // size.chunk_months * size.chunk_months)
    for i0 in range(0, nt, step):
        n = min(step, nt - i0)
        w.write_block(i0, offset + scale * _smooth_noise(rng, (n, nc, *grid.shape)))
    twsa = np.full((1, nt, *grid.shape), np.nan, np.float32)
    twsa[0, first_target:] = 50 * _smooth_noise(rng, (nt - first_target, *grid.shape))
    w.write_targets(["csr"], twsa, baseline=(f"{times[first_target]:%Y-%m}", f"{times[-1]:%Y-%m}"))
    w.finish(fingerprint=f"bench-{size.nlat}-{nt}-{nc}-{seed}")
    return out_dir


def compose_train(
    cube_dir: str | Path,
    size: CubeSize,
    *,
    window: int | None = None,
    warmup: int | None = None,
    hidden: list[int] | None = None,
    encoder: int | None = None,
    overrides: list[str] | tuple[str, ...] = (),
):
    """The real ``conf/train.yaml`` with the bench's cube and grid; None keeps the config's value."""
    ov = [
        f"paths.cube_dir={cube_dir}",
        f"paths.output_dir={Path(cube_dir).parent / 'out'}",
        f"grid.res={size.res!r}",
        "grid.bbox=null",
        "target=csr",
        f"datamodule.val_months={VAL_MONTHS}",
        "datamodule.gap_months=0",
    ]
    if window is not None:
        ov += [f"datamodule.window={window}", f"datamodule.warmup={warmup}"]
    if hidden is not None:
        ov.append(f"model.net.hidden=[{','.join(str(h) for h in hidden)}]")
    if encoder is not None:
        ov.append(f"model.net.encoder={encoder}")
    ov += list(overrides)
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("train", overrides=ov)


def build_module(cfg, *, in_memory: bool | str = False):
    """(untrained ReconstructionModule, set-up CubeDataModule), instantiated exactly as ``training.train``."""
    dm = instantiate(cfg.datamodule, in_memory=in_memory)
    dm.setup("fit")
    grid = Grid.from_config(cfg.grid.res, cfg.grid.get("bbox"))
    lon_circular = grid.nlon * grid.res >= 360 - 1e-9  # global: convolutions wrap at the dateline
    model = instantiate(
        cfg.model,
        in_channels=len(dm.channels),
        targets=dm.targets,
        normalisation=dm.normalisation(),
        lon_circular=bool(lon_circular),
        _convert_="all",
    )
    if hasattr(model, "target_scale"):  # per-cell target scale (K, H, W) mm, as train() fills it
        sc = np.asarray(dm.scale, dtype=np.float32)
        sc = sc.reshape(sc.shape + (1,) * (model.target_scale.ndim - sc.ndim))
        model.target_scale.copy_(torch.from_numpy(np.broadcast_to(sc, model.target_scale.shape).copy()))
    return model, dm


def rewrite_predictors(
    src: Path,
    dst: Path,
    *,
    chunks: tuple[int, int, int, int],
    shards: tuple[int, int, int, int] | None = None,
    compressor: str | None = "zstd",
    clevel: int = 3,
    shuffle: str = "shuffle",
) -> Path:
    """Copy the cube ``src`` to ``dst`` with ``predictors`` re-encoded (chunks, optional shards, compressor).

    ``compressor``: ``"zstd"``/``"lz4"`` (Blosc, ``shuffle`` = ``"shuffle"`` or ``"bitshuffle"``) or ``None``.
    Used by the chunking study only.
    """
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    g = zarr.open_group(dst / "predictors.zarr", mode="r+")
    old = zarr.open_group(src / "predictors.zarr", mode="r")["predictors"]
    attrs = dict(old.attrs)
    del g["predictors"]
    comp = (
        []
        if compressor is None
        else [zarr.codecs.BloscCodec(cname=compressor, clevel=clevel, shuffle=shuffle)]
    )
    new = g.create_array(
        "predictors",
        shape=old.shape,
        dtype=old.dtype,
        chunks=chunks,
        shards=shards,
        compressors=comp,
        fill_value=np.nan,
        dimension_names=("time", "channel", "lat", "lon"),
    )
    new.attrs.update(attrs)
    step = (shards or chunks)[0]
    for i0 in range(0, old.shape[0], step):
        new[i0 : i0 + step] = old[i0 : i0 + step]
    return dst


def predictor_encoding(cube_dir: Path) -> tuple[tuple[int, ...], str]:
    """Chunks of the cube's ``predictors`` and how they are stored, e.g. ``chunks (12, C, 15, W), Blosc zstd-3
    shuffle``."""
    arr = zarr.open_group(Path(cube_dir) / "predictors.zarr", mode="r")["predictors"]
    ct, _, lat, _ = arr.chunks
    H = arr.shape[2]
    codecs = [
        f"Blosc {c.cname.value}-{c.clevel} {c.shuffle.value}" if hasattr(c, "cname") else type(c).__name__
        for c in arr.compressors
    ]
    return arr.chunks, f"chunks ({ct}, C, {'H' if lat >= H else lat}, W), {', '.join(codecs) or 'uncompressed'}"


def store_bytes(path: Path) -> int:
    """Bytes on disk under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
