"""Run every benchmark and write ``BENCHMARKS.md``: ``python -m bench.run [--scale N] [--out BENCHMARKS.md]``.

``--scale`` multiplies the number of months and the number of grid cells of every cube (latitudes by √N).
The default scale finishes in about 4–6 minutes on 2 CPU cores. The model and the training window are those
of ``conf/train.yaml`` + ``conf/model/convlstm.yaml`` unless :class:`BenchParams` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import zarr

from bench import inference as inf
from bench import loader as ld
from bench.area import bench_area, render_area, replace_section
from bench.chunks import ChunkParams, run_chunks
from bench.cubes import CubeSize, build_cube, build_module, compose_train, even, predictor_encoding
from bench.report import command_line, machine, now, render
from bench.useful import bench_useful, render_useful

LOGGER = logging.getLogger("bench")


@dataclass(frozen=True)
class BenchParams:
    """Sizes of every benchmark (defaults: CPU-sized, ~5 min on 2 cores)."""

    nlat: int = 90  # main cube: 2 deg global
    months: int = 120
    channels: int = 25
    chunk_months: int = 12
    window: int | None = None  # None: conf/train.yaml (24 months, warm-up 12)
    warmup: int | None = None
    hidden: list[int] | None = None  # None: conf/model/convlstm.yaml
    encoder: int | None = None
    batch_windows: int = 4
    scaling_months: list[int] = field(default_factory=lambda: [36, 72, 144])
    scaling_months_nlat: int = 30
    scaling_nlat: list[int] = field(default_factory=lambda: [30, 44, 60])
    scaling_nlat_months: int = 24
    memory_nlat: int = 36  # 5 deg: the long record stays a few hundred MB on disk
    memory_long: tuple[str, str] = ("1940-01", "2024-12")
    memory_short: tuple[str, str] = ("1940-01", "1960-12")
    memory_hidden: list[int] = field(
        default_factory=lambda: [8]
    )  # activations do not depend on record length
    memory_encoder: int = 8
    loader_batches: int = 2  # config model: a training step takes 10-20 s on 2 CPU cores -> composed timing
    loader_composed: bool = True
    tiny_batches: int = 4  # tiny model: steps ~1 s, comparable to loading -> interleaved timing
    tiny_repeats: int = 1
    tiny_hidden: list[int] = field(default_factory=lambda: [2])  # data-bound (GPU-like) loader regime
    tiny_encoder: int = 2
    chunk_samples: int = 16
    dense_n: int = 2048
    dense_seconds: float = 1.0
    prefetch_repeats: int = 3  # reconstruct runs per mode (prefetch off/on, interleaved), tiny model
    speed_nlat: int = 30  # channels_last / torch.compile study: 6 deg global, `speed_months` months
    speed_months: int = 72
    speed_repeats: int = 2  # timed runs per mode after the first (compiling) one
    speed_models: list[str] = field(default_factory=lambda: ["ConvLSTM", "U-Net"])
    # eager first; "compile" (--compile) costs minutes of compiling on a CPU (ConvLSTM 182 s, U-Net 115 s measured)
    speed_modes: list[str] = field(default_factory=lambda: ["eager", "channels_last"])
    # Zarr layout/codec study (bench/chunks.py), ~45 s at the default scale
    chunks: ChunkParams = field(default_factory=ChunkParams)
    # area scaling of every stage's memory (bench/area.py: four commands on two 0.25 deg boxes, ~6 min)
    area: bool = True
    # useful compute: FLOPs per land cell-month, windows vs carried state (bench/useful.py, ~40 s)
    useful: bool = True

    def scaled(self, scale: float) -> BenchParams:
        """Months × scale, grid cells × scale (latitudes × √scale)."""
        r = math.sqrt(scale)
        return replace(
            self,
            nlat=even(self.nlat * r),
            months=max(48, round(self.months * scale)),
            scaling_months=[max(24, round(m * scale)) for m in self.scaling_months],
            scaling_months_nlat=even(self.scaling_months_nlat * r),
            scaling_nlat=sorted({even(n * r) for n in self.scaling_nlat}),
            memory_nlat=even(self.memory_nlat * r),
            speed_nlat=even(self.speed_nlat * r),
            chunks=self.chunks.scaled(scale),
        )


def _months(span: tuple[str, str]) -> int:
    a, b = (int(s[:4]) * 12 + int(s[5:7]) for s in span)
    return b - a + 1


def _size(p: BenchParams, nlat: int, months: int, start: str = "1940-01") -> CubeSize:
    return CubeSize(nlat=nlat, months=months, channels=p.channels, start=start, chunk_months=p.chunk_months)


def _module(p: BenchParams, cube: Path, size: CubeSize, *, hidden=None, encoder=None, overrides=()):
    torch.manual_seed(0)
    cfg = compose_train(
        cube,
        size,
        window=p.window,
        warmup=p.warmup,
        hidden=hidden or p.hidden,
        encoder=encoder or p.encoder,
        overrides=overrides,
    )
    model, dm = build_module(cfg, in_memory=False)
    return model, dm, cfg


def bench_inference(p: BenchParams, work: Path, device: str) -> tuple[dict, dict, dict]:
    """Inference vs read floor and compute efficiency on the main cube."""
    size = _size(p, p.nlat, p.months)
    cube = build_cube(work / "main" / "cube", size)
    module, _, cfg = _module(p, cube, size)
    read_s = inf.read_floor(cube)
    rec = inf.time_reconstruct(module, cube, work / "main", device=device, batch_windows=p.batch_windows)
    res = {
        "seconds": rec["seconds"],
        "read_s": read_s,
        "ratio": rec["seconds"] / read_s,
        "months_per_s": p.months / rec["seconds"],
        "gpu_peak_mb": rec["gpu_peak_mb"],
    }
    print(
        f"inference vs read floor: {res['ratio']:.1f}  ({rec['seconds']:.2f} s vs {read_s:.3f} s)", flush=True
    )

    norm = module.hparams.normalisation
    window, hid = int(norm["window"]), list(cfg.model.net.hidden)
    flops, _ = inf.reconstruct_flops(module, p.months, batch_windows=p.batch_windows)
    # forward-only rate on 2 months per window: the per-month cost is the same as on a full window
    shape = (p.batch_windows, min(2, window), p.channels, *size.grid.shape)
    fwd_flops = inf.forward_flops(module, shape)
    fwd_s = inf.time_forward(module, shape, device=device, repeats=1)
    enc = int(cfg.model.net.encoder) or p.channels
    dense = inf.dense_flops_per_s(
        device=device,
        cin=enc + hid[0],
        cout=4 * hid[0],
        hw=size.grid.shape,
        batch=p.batch_windows,
        n=p.dense_n,
        min_seconds=p.dense_seconds,
    )
    eff = {
        "flops": flops,
        "reconstruct_gflops": flops / rec["seconds"] / 1e9,
        "forward_gflops": fwd_flops / fwd_s / 1e9,
        "conv2d_gflops": dense["conv2d"] / 1e9,
        "matmul_gflops": dense["matmul"] / 1e9,
        "peak_gflops": dense["peak"] / 1e9,
    }
    eff["ratio_reconstruct"] = eff["reconstruct_gflops"] / eff["peak_gflops"]
    eff["ratio_forward"] = eff["forward_gflops"] / eff["peak_gflops"]
    print(
        f"compute efficiency: {eff['ratio_reconstruct']:.3f}  ({eff['reconstruct_gflops']:.3g} GFLOP/s "
        f"vs {eff['peak_gflops']:.3g})",
        flush=True,
    )
    model = {
        "name": type(module.net).__name__,
        "hidden": hid,
        "encoder": int(cfg.model.net.encoder),
        "parameters": module.n_parameters(),
    }
    return (
        res,
        eff,
        {
            "model": model,
            "cube": cube,
            "cfg": cfg,
            "module": module,
            "window": window,
            "warmup": int(norm["warmup"]),
        },
    )


def bench_loader(p: BenchParams, main: dict, work: Path) -> dict:
    """Loader overhead with the configured model and a tiny (data-bound) one, and the chunking study."""
    cube, cfg = main["cube"], main["cfg"]
    rows = []
    for label, module in (("config model", main["module"]), ("tiny model", None)):
        n, reps, composed = p.loader_batches, 1, p.loader_composed
        if module is None:
            module, _, _ = _module(
                p, cube, _size(p, p.nlat, p.months), hidden=p.tiny_hidden, encoder=p.tiny_encoder
            )
            n, reps, composed = p.tiny_batches, p.tiny_repeats, False
        t0 = time.perf_counter()
        r = ld.loader_overhead(module, cfg, n_batches=n, repeats=reps, composed=composed)
        r["wall_s"] = time.perf_counter() - t0
        r["label"] = label
        rows.append(r)
        print(
            f"loader overhead ({label}): zarr {r['ratio_zarr']:.3f}, auto {r['ratio_auto']:.3f}", flush=True
        )
    chunking = ld.chunking_study(cube, cfg, work / "chunking", n_samples=p.chunk_samples)
    for c in chunking:
        print(
            f"  read {c['variant']}: {c['ms_per_sample']:.1f} ms/sample ({c['ratio_vs_memory']:.2f}x memory)",
            flush=True,
        )
    return {"rows": rows, "chunking": chunking}


def bench_memory(p: BenchParams, work: Path, device: str) -> dict:
    """Peak RSS of reconstructing a long vs a short record, each in a fresh process."""
    spec_path = work / "memory" / "spec.json"
    spans = {"short": p.memory_short, "long": p.memory_long}
    sizes = {k: _size(p, p.memory_nlat, _months(s), start=s[0]) for k, s in spans.items()}
    cubes = {k: build_cube(work / "memory" / k / "cube", sizes[k]) for k in spans}
    # same channels and grid: one normalisation (from the short cube) serves both
    module, _, cfg = _module(
        p, cubes["short"], sizes["short"], hidden=p.memory_hidden, encoder=p.memory_encoder
    )
    spec = {
        "size": asdict(sizes["short"]),
        "window": int(cfg.datamodule.window),
        "warmup": int(cfg.datamodule.warmup),
        "hidden": p.memory_hidden,
        "encoder": p.memory_encoder,
        "batch_windows": p.batch_windows,
        "normalisation": module.hparams.normalisation,
    }
    spec_path.write_text(json.dumps(spec))
    runs = inf.rss_children([(cubes[k], spec_path, work / "memory" / k) for k in spans], device=device)
    out = {}
    for (key, span), r in zip(spans.items(), runs, strict=True):
        size = sizes[key]
        r.update(
            label=f"{span[0][:4]}–{span[1][:4]}",
            months=size.months,
            growth_mb=r["peak_mb"] - r["baseline_mb"],
            cube_mb=size.months * size.channels * size.cells * 4 / 2**20,
        )
        out[key] = r
    out["ratio_peak"] = out["long"]["peak_mb"] / out["short"]["peak_mb"]
    out["ratio_growth"] = out["long"]["growth_mb"] / max(out["short"]["growth_mb"], 1.0)
    print(
        f"bounded memory: {out['ratio_peak']:.3f}  ({out['long']['peak_mb']:.0f} vs {out['short']['peak_mb']:.0f} MB)",
        flush=True,
    )
    return out


def bench_scaling(p: BenchParams, work: Path, device: str) -> dict:
    """Reconstruction time vs months (fixed grid) and vs grid cells (fixed months), with linear fits."""
    res = {}
    pts = []
    module = None
    for n in p.scaling_months:
        size = _size(p, p.scaling_months_nlat, n)
        cube = build_cube(work / "scale_t" / f"{n}" / "cube", size)
        if module is None:  # same grid and channels: one module for the whole sweep
            module, _, _ = _module(p, cube, size)
            inf.time_reconstruct(
                module, cube, work / "scale_t" / "warmup", device=device, batch_windows=p.batch_windows
            )  # untimed: thread pools, allocator
        r = inf.time_reconstruct(
            module, cube, work / "scale_t" / f"{n}", device=device, batch_windows=p.batch_windows
        )
        pts.append({"months": n, "nlat": size.nlat, "cells": size.cells, **r})
    res["months"] = {
        "nlat": p.scaling_months_nlat,
        "points": pts,
        "fit": inf.linear_fit([q["months"] for q in pts], [q["seconds"] for q in pts]),
    }
    pts = []
    for nlat in p.scaling_nlat:
        size = _size(p, nlat, p.scaling_nlat_months)
        cube = build_cube(work / "scale_x" / f"{nlat}" / "cube", size)
        module, _, _ = _module(p, cube, size)
        if not pts:  # untimed warm-up
            inf.time_reconstruct(
                module, cube, work / "scale_x" / "warmup", device=device, batch_windows=p.batch_windows
            )
        r = inf.time_reconstruct(
            module, cube, work / "scale_x" / f"{nlat}", device=device, batch_windows=p.batch_windows
        )
        pts.append({"months": size.months, "nlat": nlat, "cells": size.cells, **r})
    res["cells"] = {
        "months": p.scaling_nlat_months,
        "points": pts,
        "fit": inf.linear_fit([q["cells"] for q in pts], [q["seconds"] for q in pts]),
    }
    print(
        f"scaling: R² months {res['months']['fit']['r2']:.4f}, cells {res['cells']['fit']['r2']:.4f}",
        flush=True,
    )
    return res


def bench_prefetch(p: BenchParams, main: dict, work: Path, device: str) -> dict:
    """Reconstruction wall time without ÷ with the prefetching reader, tiny (read-bound) model on the main cube.

    Runs alternate between the modes (order flipped every repeat); medians are compared.
    """
    cube = main["cube"]
    module, _, _ = _module(p, cube, _size(p, p.nlat, p.months), hidden=p.tiny_hidden, encoder=p.tiny_encoder)
    inf.time_reconstruct(module, cube, work / "prefetch", device=device, batch_windows=p.batch_windows)
    runs: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(p.prefetch_repeats):
        for on in (False, True) if rep % 2 == 0 else (True, False):
            r = inf.time_reconstruct(
                module, cube, work / "prefetch", device=device, batch_windows=p.batch_windows, prefetch=on
            )
            runs[on].append(r["seconds"])
    off, on = (statistics.median(runs[k]) for k in (False, True))
    res = {"off_s": off, "on_s": on, "ratio": off / on, "repeats": p.prefetch_repeats}
    print(f"prefetch speed-up (tiny model): {res['ratio']:.3f}  ({off:.2f} s vs {on:.2f} s)", flush=True)
    return res


SPEED_MODES = {"eager": {}, "channels_last": {"channels_last": True}, "compile": {"compile": True}}


def bench_speed_options(p: BenchParams, work: Path, device: str) -> dict:
    """Reconstruction wall time eager ÷ with ``channels_last`` ÷ with ``torch.compile``, ConvLSTM and U-Net.

    The options are applied once (:func:`gtws_dl.models.accel.accelerate`), as ``infer.py`` does for a whole
    run; the first run of each mode (which compiles) is reported apart from the median of the following ones.
    Outputs of every mode are compared with eager (max abs difference, normalised units).
    """
    from gtws_dl.models.accel import accelerate, decelerate

    size = _size(p, p.speed_nlat, p.speed_months)
    cube = build_cube(work / "speed" / "cube", size)
    nets = {k: v for k, v in {"ConvLSTM": (), "U-Net": ("model=unet",)}.items() if k in p.speed_models}
    res: dict = {"nlat": p.speed_nlat, "months": p.speed_months, "repeats": p.speed_repeats, "models": {}}
    print("speed options (reconstruct wall, eager ÷ option):", flush=True)
    for name, overrides in nets.items():
        module, _, _ = _module(p, cube, size, overrides=overrides)
        rows, ref = {}, None
        for mode in p.speed_modes:
            opts = SPEED_MODES[mode]
            accelerate(module.net, **opts)
            try:
                first = inf.time_reconstruct(module, cube, work / "speed" / name, device=device)["seconds"]
                y = np.asarray(zarr.open_group(work / "speed" / name / "recon.zarr", mode="r")["twsa"][:])
                steady = statistics.median(
                    inf.time_reconstruct(module, cube, work / "speed" / name, device=device)["seconds"]
                    for _ in range(p.speed_repeats)
                )
                state = getattr(module.net.__dict__.get("forward"), "state", None)
            finally:
                decelerate(module.net)
            ref = y if ref is None else ref
            diff = float(np.nanmax(np.abs(y - ref)) / (np.nanstd(ref) or 1.0))
            rows[mode] = {"first_s": first, "steady_s": steady, "max_diff_rel": diff, "compile_state": state}
        for mode, row in rows.items():
            row["speedup"] = rows["eager"]["steady_s"] / row["steady_s"]
            print(
                f"  {name} {mode}: {row['speedup']:.2f}x ({row['steady_s']:.2f} s; first run {row['first_s']:.1f} s;"
                f" max |diff| {row['max_diff_rel']:.1e} of the field's std)",
                flush=True,
            )
        res["models"][name] = rows
    return res


def bench_chunks(p: BenchParams, work: Path) -> dict:
    """Store size, whole read and training-patch reads of the predictor array per Zarr layout and codec."""
    print("zarr chunk layout and codec:", flush=True)
    res = run_chunks(p.chunks, work / "chunks")
    for note in res["notes"]:
        print(f"  {note}", flush=True)
    return res


def run_all(
    params: BenchParams | None = None,
    *,
    scale: float = 1.0,
    out: Path | None = Path("BENCHMARKS.md"),
    work: Path | None = None,
    device: str = "auto",
    command: str | None = None,
) -> dict:
    """Run every benchmark; write the markdown report to ``out`` (None: don't); return the results."""
    p = (params or BenchParams()).scaled(scale) if scale != 1.0 else (params or BenchParams())
    dev = inf.resolve_device(device)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gtws-bench-", dir=work) as tmp:
        tmp = Path(tmp)
        infer, eff, main = bench_inference(p, tmp, str(dev))
        loader = bench_loader(p, main, tmp)
        prefetch = bench_prefetch(p, main, tmp, str(dev))
        memory = bench_memory(p, tmp, str(dev))
        scaling = bench_scaling(p, tmp, str(dev))
        chunks = bench_chunks(p, tmp)
        speed = bench_speed_options(p, tmp, str(dev))
        area = bench_area(tmp) if p.area else None
        useful = bench_useful(tmp) if p.useful else None
        chunks_main, encoding = predictor_encoding(main["cube"])
    params_out = {
        **asdict(p),
        "window": main["window"],
        "warmup": main["warmup"],
        "encoding": encoding,
        "chunk_lat": chunks_main[2],
    }
    res = {
        "machine": machine(dev),
        "params": params_out,
        "model": main["model"],
        "patch": list(main["cfg"].datamodule.patch or []),
        "inference": infer,
        "efficiency": eff,
        "loader": loader,
        "prefetch": prefetch,
        "memory": memory,
        "scaling": scaling,
        "chunks": chunks,
        "speed_options": speed,
        "area": area,
        "useful": useful,
        "date": now(),
        "command": command or command_line(),
        "wall_s": time.perf_counter() - t0,
    }
    res["notes"] = _notes(res)
    res["markdown"] = render(res)
    for section in ([render_area(area)] if area else []) + ([render_useful(useful)] if useful else []):
        res["markdown"] = replace_section(res["markdown"], section)
    if out is not None:
        Path(out).write_text(res["markdown"])
        print(f"wrote {out} ({res['wall_s']:.0f} s)", flush=True)
    return res


def _notes(res: dict) -> list[str]:
    """Interpretation that follows from the sizes and the measured loading times."""
    p, ld_ = res["params"], res["loader"]
    H, cm, win = p["nlat"], p["chunk_months"], p["window"]
    W = 2 * H
    ch = min(p.get("chunk_lat", H), H)
    patch = list(res["patch"]) if res["patch"] else [None, None]
    ph, pw = min(patch[0] or H, H), min(patch[1] or W, W)
    t_factor = (win + cm - 1) / win  # expected months decompressed per window / months used (random start)
    lat_rows = min(ph + ch - 1, H)  # expected rows of the chunks a patch at a random row touches
    notes = [
        f"A training sample uses {win} months × a {ph}×{pw} patch, but a chunk ({cm}, C, {ch}, {W}) is the unit of "
        f"decompression: on average {win + cm - 1} months × about {lat_rows} rows × {W} columns are decompressed, "
        f"{t_factor * lat_rows / ph * W / pw:.1f}× the data used ({t_factor:.2f}× in time, {lat_rows / ph:.2f}× in "
        f"latitude, {W / pw:.2f}× in longitude).",
        "With `num_workers=0` loading and the step run in sequence, so the ratio is (load + step) / step; the "
        "loading time per batch is what to compare with a GPU step (tens of ms).",
        "Memory: peak RSS (VmHWM) of a fresh process; the growth column subtracts the peak reached after imports and "
        "building the module, so it isolates the reconstruction itself.",
    ]
    for row in ld_["rows"]:
        notes.append(
            f"{row['label']}: loading one batch of {row['batch_size']} from Zarr took "
            f"{1e3 * row['load_s_per_batch']['zarr']:.0f} ms vs {1e3 * row['load_s_per_batch']['auto']:.0f} ms from "
            f"the RAM copy that `in_memory=auto` makes; one step on in-memory batches took "
            f"{1e3 * row['step_s']['memory']:.0f} ms."
        )
    return notes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies months and grid cells (default 1)")
    ap.add_argument(
        "--out", type=Path, default=Path("BENCHMARKS.md"), help="markdown report (default BENCHMARKS.md)"
    )
    ap.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: system temp)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 is far steadier on a shared, busy machine, "
        "where OpenMP threads that wait for a descheduled sibling slow steps down many-fold",
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile in the speed-options study (adds its compile time: ~5 min on 2 CPU cores)",
    )
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    params = BenchParams()
    if a.compile:
        params = replace(params, speed_modes=[*params.speed_modes, "compile"])
    run_all(params, scale=a.scale, out=a.out, work=a.work, device=a.device)


if __name__ == "__main__":
    main()
