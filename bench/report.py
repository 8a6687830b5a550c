"""Machine description and the ``BENCHMARKS.md`` report."""

from __future__ import annotations

import math
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

import pandas as pd
import torch


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "-"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    """What the numbers were measured on."""
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": _version("lightning"),
        "zarr": _version("zarr"),
        "numcodecs": _version("numcodecs"),
        "os": platform.platform(),
    }
    return info


def _f(x, fmt=".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return format(x, fmt)


def render(res: dict) -> str:
    """Markdown for a result dict of :func:`bench.run.run_all`."""
    m, p = res["machine"], res["params"]
    inf, eff, mem, sc, ld = res["inference"], res["efficiency"], res["memory"], res["scaling"], res["loader"]
    gpu = inf.get("gpu_peak_mb")
    lines = [
        "# gtws-dl benchmarks",
        "",
        "Ratios of two quantities measured in the same run on the same machine (timings on shared machines are "
        "noisy; ratios much less so). Regenerate with the command below; `make bench` runs the default scale.",
        "",
        f"- Command: `{res['command']}`",
        f"- Date: {res['date']}, total wall time {res['wall_s']:.0f} s",
        f"- Machine: {m['cpu']}, {m['cores']} logical cores ({m['affinity']} usable), torch threads "
        f"{m['torch_threads']}; device **{m['device']}** (GPU: {m['gpu']})",
        f"- Software: Python {m['python']}, torch {m['torch']}, lightning {m['lightning']}, zarr {m['zarr']}, "
        f"numcodecs {m['numcodecs']}; {m['os']}",
        f"- Cube: {p['nlat']}×{2 * p['nlat']} global grid ({180 / p['nlat']:.3g}°), {p['channels']} channels, "
        f"{p['months']} months, {p.get('encoding', 'chunks (' + str(p['chunk_months']) + ', C, H, W)')}; model "
        f"{res['model']['name']} hidden {res['model']['hidden']} encoder {res['model']['encoder']} "
        f"({res['model']['parameters']:,} parameters), window {p['window']} / warm-up {p['warmup']} months, "
        f"batch_windows {p['batch_windows']}",
        "",
        "## Summary",
        "",
        "| benchmark | ratio | what the ratio is | detail |",
        "|---|---:|---|---|",
        f"| inference vs read floor | {_f(inf['ratio'])} | `reconstruct()` wall ÷ reading the predictor cube once "
        f"| {inf['seconds']:.2f} s vs {inf['read_s']:.3f} s; {inf['months_per_s']:.3g} months/s"
        + (f"; GPU peak {gpu:.0f} MB" if gpu is not None else "")
        + " |",
        f"| compute efficiency | {_f(eff['ratio_reconstruct'])} | model FLOP/s in `reconstruct()` ÷ dense conv2d/matmul "
        f"FLOP/s | {eff['reconstruct_gflops']:.3g} GFLOP/s end-to-end ({eff['forward_gflops']:.3g} forward only, "
        f"ratio {_f(eff['ratio_forward'])}) vs peak {eff['peak_gflops']:.3g} (conv2d {eff['conv2d_gflops']:.3g}, "
        f"matmul {eff['matmul_gflops']:.3g}) |",
    ]
    for row in ld["rows"]:
        lines.append(
            f"| loader overhead, {row['label']} | {_f(row['ratio_zarr'])} | step time Zarr (`in_memory=False`) ÷ "
            f"same batches in memory{' (load + step, composed)' if row.get('composed') else ''} | {1e3 * row['step_s']['zarr']:.0f} vs {1e3 * row['step_s']['memory']:.0f} "
            f"ms/step; loading {1e3 * row['load_s_per_batch']['zarr']:.0f} ms/batch; target ≤ 1.15 |"
        )
        lines.append(
            f"| loader overhead, {row['label']}, `in_memory=auto` | {_f(row['ratio_auto'])} | same, cube "
            f"{'loaded into RAM' if row['auto_in_memory'] else 'left on disk'} by `auto` | "
            f"{1e3 * row['step_s']['auto']:.0f} ms/step; loading {1e3 * row['load_s_per_batch']['auto']:.0f} "
            "ms/batch |"
        )
    if res.get("prefetch"):
        pf = res["prefetch"]
        lines.append(
            f"| prefetch speed-up, tiny model | {_f(pf['ratio'])} | `reconstruct()` wall `prefetch=false` ÷ "
            f"`prefetch=true` (median of {pf['repeats']} each) | {pf['off_s']:.2f} vs {pf['on_s']:.2f} s; "
            "read of batch i+1 overlaps the forward pass of batch i |"
        )
    for name, rows in (res.get("speed_options") or {}).get("models", {}).items():
        so = res["speed_options"]
        for mode in [m for m in rows if m != "eager"]:
            r, e = rows[mode], rows["eager"]
            lines.append(
                f"| `{mode}`, {name} | {_f(r['speedup'])} | `reconstruct()` wall eager ÷ with `{mode}` (median of "
                f"{so['repeats']} after a first run; {so['nlat']}×{2 * so['nlat']} grid, {so['months']} months) | "
                f"{e['steady_s']:.2f} vs {r['steady_s']:.2f} s; first run {r['first_s']:.1f} s"
                + (f" (compile {r['compile_state']})" if mode == "compile" else "")
                + f"; max abs difference {r['max_diff_rel']:.1e} × the field's std |"
            )
    lines += [
        f"| bounded memory | {_f(mem['ratio_peak'])} | peak RSS {mem['long']['label']} ÷ {mem['short']['label']} "
        f"(fresh processes) | {mem['long']['peak_mb']:.0f} vs {mem['short']['peak_mb']:.0f} MB; growth above "
        f"the loaded module {mem['long']['growth_mb']:.0f} vs {mem['short']['growth_mb']:.0f} MB (ratio "
        f"{_f(mem['ratio_growth'])}); the long predictor cube is {mem['long']['cube_mb']:.0f} MB |",
        f"| scaling in months | {_f(sc['months']['fit']['r2'], '.4f')} | R² of time = a·months + b "
        f"| a = {1e3 * sc['months']['fit']['slope']:.3g} ms/month, b = {sc['months']['fit']['intercept']:.3g} s "
        f"({sc['months']['nlat']}×{2 * sc['months']['nlat']} grid) |",
        f"| scaling in grid cells | {_f(sc['cells']['fit']['r2'], '.4f')} | R² of time = a·cells + b "
        f"| a = {1e6 * sc['cells']['fit']['slope']:.3g} µs/cell, b = {sc['cells']['fit']['intercept']:.3g} s "
        f"({sc['cells']['months']} months) |",
        "",
        "## Scaling points",
        "",
        "| sweep | months | grid | cells | seconds | GPU peak MB |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for key in ("months", "cells"):
        for pt in sc[key]["points"]:
            lines.append(
                f"| {key} | {pt['months']} | {pt['nlat']}×{2 * pt['nlat']} | {pt['cells']} | "
                f"{pt['seconds']:.2f} | {_f(pt.get('gpu_peak_mb'), '.0f')} |"
            )
    lines += [
        "",
        "## Training-loader read cost by cube encoding",
        "",
        "Per-sample cost of `WindowDataset.__getitem__` (read + normalise + mask) for one training window "
        f"({p['window']} months, patch {res['patch']}), the same samples for every encoding; baseline: the cube "
        f"loaded in RAM ({ld['chunking'][0]['memory_ms_per_sample']:.1f} ms/sample).",
        "",
        "| encoding of `predictors` | store MB | ms/sample | ÷ in-memory |",
        "|---|---:|---:|---:|",
    ]
    for row in ld["chunking"]:
        lines.append(
            f"| {row['variant']} | {row['store_mb']:.0f} | {row['ms_per_sample']:.1f} | "
            f"{_f(row['ratio_vs_memory'])} |"
        )
    if res.get("chunks"):
        from bench.chunks import render_chunks

        lines += [""] + render_chunks(res["chunks"])
    if res.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in res["notes"]]
    lines.append("")
    return "\n".join(lines)


def now() -> str:
    return pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def command_line() -> str:
    return (
        " ".join(["python", "-m", "bench.run", *sys.argv[1:]])
        if sys.argv[0].endswith("run.py")
        else "python -m bench.run"
    )
