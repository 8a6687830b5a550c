"""Zarr chunk layout and codec of the predictor cube, chosen by measurement: ``python -m bench.chunks [--scale N]``.

One synthetic predictor array (time, channel, lat, lon) float32 — smooth large-scale fields (bilinear upsampling
of coarse noise, a latitude gradient and a seasonal cycle) with 2 % small-scale noise, per-channel offsets and
scales, NaN over ocean (30 % of the cells are land) — is written with every (layout, codec) variant and read back
two ways:

- *whole read*: every month, one time chunk after another (what :func:`gtws_dl.reconstruct.reconstruct` reads);
- *patch reads*: ``patches`` random windows of ``window`` months × a ``patch`` (lat, lon) crop centred on a
  random land cell and clipped to the grid, all channels (what ``WindowDataset.__getitem__`` reads with
  ``in_memory=False``); the same windows for every variant.

Every time is also given as a ratio to the same read of the uncompressed whole-field layout in the same run.
The store is read just after it was written, from the OS page cache: the times are decode + Zarr overhead, not
disk bandwidth; on a cold or network file system the smaller stores gain in proportion to their size.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import zarr

from bench.cubes import even, store_bytes

NONE = "none"


@dataclass(frozen=True)
class ChunkParams:
    """Sizes of the chunk/codec benchmark (defaults: a 2° global grid, about 40 s on 2 CPU cores)."""

    nlat: int = 90  # 2 deg global grid: 90 x 180
    months: int = 120
    channels: int = 31
    time_chunk: int = 12
    window: int = 24  # months per training window (conf/train.yaml)
    patch: tuple[int, int] = (16, 48)  # (lat, lon) cells per training crop (conf/train.yaml)
    patches: int = 100
    land_share: float = 0.3
    # (lat rows per chunk or None = whole field, codec); codecs: see `compressors`
    variants: tuple[tuple[int | None, str], ...] = field(
        default_factory=lambda: (
            (None, NONE),
            (None, "zstd-1"),
            (None, "zstd-3"),
            (None, "zstd-5"),
            (None, "zstd-3-bitshuffle"),
            (None, "lz4"),
            (15, NONE),
            (15, "zstd-1"),
            (15, "zstd-3"),
            (15, "lz4"),
            (30, "zstd-3"),
            (30, "lz4"),
        )
    )
    seed: int = 0

    def scaled(self, scale: float) -> ChunkParams:
        """Months × scale, grid cells × scale (latitudes × √scale)."""
        return replace(
            self, nlat=even(self.nlat * math.sqrt(scale)), months=max(self.window, round(self.months * scale))
        )


def compressors(codec: str) -> list:
    """Zarr v3 compressors for a codec name: ``none``, ``zstd-<level>`` (Blosc, byte shuffle),
    ``zstd-<level>-bitshuffle`` (what :mod:`gtws_dl.cube.build` writes today) or ``lz4`` (Blosc, level 5, byte shuffle)."""
    if codec == NONE:
        return []
    parts = codec.split("-")
    cname, level = parts[0], int(parts[1]) if len(parts) > 1 else 5
    shuffle = "bitshuffle" if codec.endswith("bitshuffle") else "shuffle"
    return [zarr.codecs.BloscCodec(cname=cname, clevel=level, shuffle=shuffle)]


def _interp_matrix(n: int, m: int) -> np.ndarray:
    """(n, m) linear interpolation from m evenly spaced nodes to n evenly spaced points."""
    xs = np.linspace(0, m - 1, n)
    i = np.clip(np.floor(xs).astype(int), 0, max(m - 2, 0))
    f = (xs - i).astype(np.float32)
    a = np.zeros((n, m), np.float32)
    a[np.arange(n), i] = 1 - f
    a[np.arange(n), np.minimum(i + 1, m - 1)] += f
    return a


def synthetic_predictors(
    nlat: int, months: int, channels: int, *, land_share: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(predictors (time, channel, lat, lon) float32 in arbitrary physical units, NaN over ocean; land (lat, lon)).

    Fields: per-channel offset + scale × (latitude gradient + seasonal cycle + smooth anomaly of ~10-cell scale
    + 2 % white noise). Land: the ``land_share`` of cells where a smooth pattern is highest.
    """
    rng = np.random.default_rng(seed)
    H, W = nlat, 2 * nlat
    h, w = max(2, H // 6), max(2, W // 6)
    anom = np.einsum(
        "hi,tcij,wj->tchw",
        _interp_matrix(H, h),
        rng.standard_normal((months, channels, h, w), dtype=np.float32),
        _interp_matrix(W, w),
        optimize=True,
    )
    lat = np.deg2rad(np.linspace(-90 + 90 / H, 90 - 90 / H, H, dtype=np.float32))
    lon = np.deg2rad(np.linspace(-180 + 180 / W, 180 - 180 / W, W, dtype=np.float32))
    season = np.sin(2 * np.pi * np.arange(months, dtype=np.float32) / 12)
    x = anom + np.cos(2 * lat)[:, None] + 0.5 * season[:, None, None, None] * np.sin(lat)[:, None]
    x += 0.02 * rng.standard_normal(x.shape, dtype=np.float32)
    x *= rng.uniform(0.1, 30, channels).astype(np.float32)[None, :, None, None]
    x += rng.uniform(-300, 300, channels).astype(np.float32)[None, :, None, None]
    pattern = np.sin(2 * lon)[None, :] + np.cos(3 * lat)[:, None]
    land = pattern > np.quantile(pattern, 1 - land_share)
    x[:, :, ~land] = np.nan
    return x.astype(np.float32, copy=False), land


def patch_origins(
    land: np.ndarray, months: int, *, n: int, window: int, patch: tuple[int, int], seed: int = 0
) -> list[tuple[int, int, int, int, int]]:
    """``n`` training reads (t0, la, lo, ph, pw): a random window start and a crop centred on a random land cell,
    clipped to the grid as ``WindowDataset._crop`` does."""
    rng = np.random.default_rng(seed)
    H, W = land.shape
    ph, pw = min(patch[0], H), min(patch[1], W)
    cells = np.argwhere(land)
    out = []
    for _ in range(n):
        t0 = int(rng.integers(0, months - window + 1))
        ci, cj = cells[rng.integers(len(cells))]
        out.append((t0, int(np.clip(ci - ph // 2, 0, H - ph)), int(np.clip(cj - pw // 2, 0, W - pw)), ph, pw))
    return out


def write_variant(x: np.ndarray, path: Path, *, chunks: tuple[int, int, int, int], codec: str) -> float:
    """Write ``x`` to a Zarr v3 array at ``path`` time chunk by time chunk; returns seconds."""
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    arr = zarr.create_array(
        path,
        shape=x.shape,
        dtype="float32",
        chunks=chunks,
        compressors=compressors(codec),
        fill_value=np.nan,
        dimension_names=("time", "channel", "lat", "lon"),
        zarr_format=3,
    )
    for i0 in range(0, x.shape[0], chunks[0]):
        arr[i0 : i0 + chunks[0]] = x[i0 : i0 + chunks[0]]
    return time.perf_counter() - t0


def read_whole(arr) -> float:
    """Seconds to read every month, one time chunk after another."""
    step = arr.chunks[0]
    t0 = time.perf_counter()
    for i0 in range(0, arr.shape[0], step):
        np.asarray(arr[i0 : i0 + step])
    return time.perf_counter() - t0


def read_patches(arr, origins, window: int) -> float:
    """Seconds to read every (t0, la, lo, ph, pw) window of ``origins``, all channels."""
    t0 = time.perf_counter()
    for t, la, lo, ph, pw in origins:
        np.asarray(arr[t : t + window, :, la : la + ph, lo : lo + pw])
    return time.perf_counter() - t0


def run_chunks(p: ChunkParams, work: Path) -> dict:
    """Write and read every variant of ``p``; returns ``{"rows": [...], "params": ..., "notes": [...]}``.

    Each row: layout, chunks, codec, store bytes, ratio (raw / stored), write/whole/patch seconds and the whole and
    patch read times ÷ those of the uncompressed whole-field layout (the first variant must be it).
    """
    if p.variants[0] != (None, NONE):
        raise ValueError("the first variant must be (None, 'none'): the uncompressed whole-field reference")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    window = min(p.window, p.months)
    x, land = synthetic_predictors(p.nlat, p.months, p.channels, land_share=p.land_share, seed=p.seed)
    T, C, H, W = x.shape
    origins = patch_origins(land, T, n=p.patches, window=window, patch=p.patch, seed=p.seed + 1)
    rows = []
    for i, (rows_per_chunk, codec) in enumerate(p.variants):
        lat_rows = min(rows_per_chunk or H, H)
        chunks = (p.time_chunk, C, lat_rows, W)
        path = work / f"variant{i}.zarr"
        write_s = write_variant(x, path, chunks=chunks, codec=codec)
        arr = zarr.open_array(path, mode="r")
        whole_s = read_whole(arr)
        patch_s = read_patches(arr, origins, window)
        rows.append(
            {
                "layout": "whole field" if rows_per_chunk is None else f"{lat_rows} lat rows",
                "chunks": f"({p.time_chunk}, C, {'H' if rows_per_chunk is None else lat_rows}, W)",
                "codec": codec,
                "store_bytes": store_bytes(path),
                "raw_bytes": x.nbytes,
                "write_s": write_s,
                "whole_s": whole_s,
                "patch_s": patch_s,
                "ms_per_patch": 1e3 * patch_s / max(len(origins), 1),
            }
        )
        shutil.rmtree(path, ignore_errors=True)
        print(
            f"  {rows[-1]['chunks']} {codec}: {rows[-1]['store_bytes'] / 2**20:.1f} MB, whole {whole_s:.2f} s, "
            f"patches {patch_s:.2f} s",
            flush=True,
        )
    ref = rows[0]
    for r in rows:
        r["ratio_size"] = r["raw_bytes"] / r["store_bytes"]
        r["ratio_whole"] = r["whole_s"] / ref["whole_s"]
        r["ratio_patch"] = r["patch_s"] / ref["patch_s"]
    params = {
        "nlat": H,
        "nlon": W,
        "months": T,
        "channels": C,
        "time_chunk": p.time_chunk,
        "window": window,
        "patch": [min(p.patch[0], H), min(p.patch[1], W)],
        "patches": len(origins),
        "land_share": float(land.mean()),
        "raw_mb": x.nbytes / 2**20,
    }
    return {"rows": rows, "params": params, "notes": _notes(rows)}


def _label(r: dict) -> str:
    return f"{r['chunks']} {r['codec']}"


def _notes(rows: list[dict]) -> list[str]:
    """Which variant the measurement favours, by each criterion and overall."""
    comp = [r for r in rows if r["codec"] != NONE] or rows
    small = min(comp, key=lambda r: r["store_bytes"])
    whole = min(comp, key=lambda r: r["whole_s"])
    patch = min(comp, key=lambda r: r["patch_s"])
    # overall: the compressed variant with the lowest sum of the two read ratios among those within 10 % of the
    # smallest store (size matters on disk and on cold reads)
    near = [r for r in comp if r["store_bytes"] <= 1.1 * small["store_bytes"]] or comp
    best = min(near, key=lambda r: r["ratio_whole"] + r["ratio_patch"])
    return [
        f"Smallest compressed store: {_label(small)} (ratio {small['ratio_size']:.2f}).",
        f"Fastest whole read among compressed: {_label(whole)} ({whole['ratio_whole']:.2f}× uncompressed).",
        f"Fastest patch reads among compressed: {_label(patch)} ({patch['ratio_patch']:.2f}× uncompressed).",
        f"Favoured (within 10 % of the smallest store, lowest whole + patch read ratios): {_label(best)} — "
        f"ratio {best['ratio_size']:.2f}, whole read {best['ratio_whole']:.2f}×, patch reads "
        f"{best['ratio_patch']:.2f}× the uncompressed whole-field layout.",
    ]


def render_chunks(res: dict) -> list[str]:
    """Markdown lines of the chunk/codec section of ``BENCHMARKS.md``."""
    p = res["params"]
    lines = [
        "## Zarr chunk layout and codec of the predictor cube",
        "",
        f"`bench/chunks.py`: one synthetic predictor array {p['months']}×{p['channels']}×{p['nlat']}×{p['nlon']} "
        f"(time × channel × lat × lon, float32, {p['raw_mb']:.0f} MB; smooth fields, NaN over the "
        f"{1 - p['land_share']:.0%} ocean cells) written with each layout and codec, then read whole (time chunk "
        f"by time chunk, as reconstruction reads) and as {p['patches']} training reads of {p['window']} months × "
        f"{p['patch'][0]}×{p['patch'][1]} cells centred on land (all channels, as the training loader reads with "
        "`in_memory=False`). Blosc codecs with byte shuffle unless named; read ratios ÷ the uncompressed "
        "whole-field layout, same run, reads from the page cache (decode cost, not disk bandwidth).",
        "",
        "| chunks | codec | store MB | size ratio | write s | whole read s | ÷ uncompressed | patch reads s "
        "| ms/patch | ÷ uncompressed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['chunks']} | {r['codec']} | {r['store_bytes'] / 2**20:.1f} | {r['ratio_size']:.2f} | "
            f"{r['write_s']:.2f} | {r['whole_s']:.2f} | {r['ratio_whole']:.2f} | {r['patch_s']:.2f} | "
            f"{r['ms_per_patch']:.1f} | {r['ratio_patch']:.2f} |"
        )
    lines += [""] + [f"- {n}" for n in res["notes"]]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.chunks", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies months and grid cells (default 1)")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: system temp)")
    ap.add_argument(
        "--land-share",
        type=float,
        default=ChunkParams.land_share,
        help="share of land cells; the rest is NaN (1: no NaN, predictors defined over the ocean too)",
    )
    a = ap.parse_args(argv)
    p = replace(ChunkParams().scaled(a.scale) if a.scale != 1.0 else ChunkParams(), land_share=a.land_share)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gtws-chunks-", dir=a.work) as tmp:
        res = run_chunks(p, Path(tmp))
    print("\n".join(render_chunks(res)))
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
