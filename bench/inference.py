"""Reconstruction benchmarks: time vs. the Zarr read floor, FLOP efficiency, scaling, bounded memory.

All functions take ``device`` ("cpu", "cuda" or "auto"); on CUDA they also report peak GPU memory. The CUDA
branches are the same code with a device synchronisation before each clock read.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from gtws_dl.cube.store import open_cube
from gtws_dl.reconstruct import _blocks, reconstruct

LOGGER = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_gpu_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def gpu_peak_mb(dev: torch.device) -> float | None:
    """Peak GPU memory allocated by torch since the last reset, MB; None on CPU."""
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def read_floor(cube_dir: str | Path, *, repeats: int = 2) -> float:
    """Seconds to read the whole predictor array once, chunk by chunk (best of ``repeats``)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, pred_g, _ = open_cube(cube_dir)
        pred = pred_g["predictors"]
        step = pred.chunks[0]
        total = 0.0
        for i0 in range(0, pred.shape[0], step):
            total += float(np.asarray(pred[i0 : i0 + step])[0, 0, 0, 0])  # touch the data
        best = min(best, time.perf_counter() - t0)
    return best


def time_reconstruct(
    module,
    cube_dir: str | Path,
    work: str | Path,
    *,
    device: str = "cpu",
    batch_windows: int = 4,
    amp: bool = True,
    prefetch: bool = True,
) -> dict:
    """Wall seconds (and peak GPU MB) of one fresh :func:`gtws_dl.reconstruct.reconstruct` run."""
    dev = resolve_device(device)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    out = work / "recon.zarr"
    shutil.rmtree(out, ignore_errors=True)
    out.with_name(out.name + ".progress.json").unlink(missing_ok=True)  # never resume a previous timing
    _reset_gpu_peak(dev)
    _sync(dev)
    t0 = time.perf_counter()
    reconstruct(
        module,
        cube_dir,
        out,
        ckpt_path=Path(cube_dir) / "manifest.json",
        device=str(dev),
        amp=amp,
        batch_windows=batch_windows,
        progress=False,
        prefetch=prefetch,
    )
    _sync(dev)
    return {"seconds": time.perf_counter() - t0, "gpu_peak_mb": gpu_peak_mb(dev)}


def forward_flops(module, shape: tuple[int, int, int, int, int]) -> int:
    """FLOPs of one forward pass on an input of ``shape`` [B, T, C, H, W] (convolutions and matmuls)."""
    module = module.cpu().eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        module(torch.zeros(shape))
    return int(fc.get_total_flops())


def reconstruct_flops(module, n_months: int, *, batch_windows: int) -> tuple[int, list[tuple[int, int]]]:
    """Total model FLOPs of reconstructing ``n_months`` and the (windows, months) of each forward pass.

    The ConvLSTM's cost is linear in B·T (every op is per pixel and month), so one counted forward of
    ``[1, window, C, H, W]`` gives the cost per window-month.
    """
    norm = module.hparams.normalisation
    window, warmup = int(norm["window"]), int(norm["warmup"])
    blocks = _blocks(n_months, window - warmup, warmup)
    groups = [blocks[i : i + batch_windows] for i in range(0, len(blocks), batch_windows)]
    shapes = [(len(g), max(len(b[0]) for b in g)) for g in groups]
    nc = len(norm["channels"])
    H, W = norm["grid"]["shape"]
    per_month = forward_flops(module, (1, window, nc, H, W)) / window
    return int(per_month * sum(b * t for b, t in shapes)), shapes


def time_forward(
    module, shape: tuple[int, ...], *, device: str = "cpu", repeats: int = 2, amp: bool = True
) -> float:
    """Best seconds of one inference forward pass on random input of ``shape`` (after one warm-up)."""
    dev = resolve_device(device)
    module = module.to(dev).eval()
    x = torch.randn(shape, device=dev)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (amp and dev.type == "cuda") else _Null()
    best = np.inf
    with torch.inference_mode():
        for i in range(repeats + 1):
            _sync(dev)
            t0 = time.perf_counter()
            with ctx:
                module(x)
            _sync(dev)
            if i:
                best = min(best, time.perf_counter() - t0)
    return best


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def dense_flops_per_s(
    *,
    device: str = "cpu",
    cin: int = 64,
    cout: int = 128,
    hw: tuple[int, int] = (90, 180),
    batch: int = 4,
    n: int = 2048,
    min_seconds: float = 1.0,
) -> dict:
    """FLOP/s of a dense 3×3 conv2d (the ConvLSTM gate shape) and of an ``n``×``n`` matmul, float32
    (bf16 autocast on CUDA, as inference runs there)."""
    dev = resolve_device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    conv = torch.nn.Conv2d(cin, cout, 3).to(dev, dtype)
    x = torch.randn(batch, cin, hw[0] + 2, hw[1] + 2, device=dev, dtype=dtype)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)

    def rate(fn, flops):
        with torch.inference_mode():
            fn()
            _sync(dev)
            reps, t0 = 0, time.perf_counter()
            while True:
                fn()
                reps += 1
                _sync(dev)
                dt = time.perf_counter() - t0
                if dt >= min_seconds:
                    return flops * reps / dt

    conv_rate = rate(lambda: conv(x), 2 * batch * hw[0] * hw[1] * cin * cout * 9)
    mm_rate = rate(lambda: a @ b, 2 * n**3)
    return {"conv2d": conv_rate, "matmul": mm_rate, "peak": max(conv_rate, mm_rate)}


def linear_fit(x, y) -> dict:
    """Least-squares ``y = slope x + intercept`` with R²."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, intercept = np.polyfit(x, y, 1)
    pred = slope * x + intercept
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": r2}


# ---------------------------------------------------------------- bounded memory (fresh subprocesses)
def rss_children(
    runs: list[tuple[Path, Path, Path]], *, device: str = "cpu", timeout: float = 600
) -> list[dict]:
    """Run :mod:`bench.rss_child` once per (cube, spec, work), each in a fresh interpreter, concurrently
    (peak RSS is per process); their JSON results (peak RSS before/after the reconstruction)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = str(max(1, torch.get_num_threads() // len(runs)))  # share the cores
    procs = []
    for cube, spec, work in runs:
        cmd = [
            sys.executable,
            "-m",
            "bench.rss_child",
            "--cube",
            str(cube),
            "--spec",
            str(spec),
            "--work",
            str(work),
            "--device",
            device,
        ]
        procs.append(
            (
                cmd,
                subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
                ),
            )
        )
    out = []
    for cmd, proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out
