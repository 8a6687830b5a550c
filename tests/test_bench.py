"""The benchmark suite at a tiny scale: every ratio is produced, finite and positive; the report is complete.

No timing is asserted (shared CI machines): only that the numbers exist and are well-formed.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from conftest import REPO

if str(REPO) not in sys.path:  # `bench` is a top-level package of the checkout, not of the installed wheel
    sys.path.insert(0, str(REPO))

from bench.chunks import ChunkParams, patch_origins, render_chunks, run_chunks, synthetic_predictors  # noqa: E402
from bench.inference import forward_flops, linear_fit  # noqa: E402
from bench.run import BenchParams, run_all  # noqa: E402

TINY_CHUNKS = ChunkParams(
    nlat=8,
    months=24,
    channels=3,
    window=12,
    patch=(4, 6),
    patches=3,
    variants=(
        (None, "none"),
        (None, "zstd-1"),
        (None, "zstd-3-bitshuffle"),
        (None, "lz4"),
        (2, "none"),
        (2, "zstd-3"),
        (4, "lz4"),
    ),
)

TINY = BenchParams(
    area=False,  # bench/area.py runs the four commands on two 0.25 deg boxes (minutes): test_area_section below
    useful=False,  # bench/useful.py: test_useful_compute_counts_fewer_flops_with_the_carried_state below
    nlat=8,
    months=36,
    channels=4,
    window=12,
    warmup=6,
    hidden=[4],
    encoder=4,
    scaling_months=[24, 36],
    scaling_months_nlat=4,
    scaling_nlat=[4, 6],
    scaling_nlat_months=24,
    memory_nlat=4,
    memory_long=("1940-01", "1943-12"),
    memory_short=("1940-01", "1941-12"),
    memory_hidden=[4],
    memory_encoder=4,
    loader_batches=1,
    tiny_batches=1,
    tiny_hidden=[2],
    tiny_encoder=2,
    chunk_samples=1,
    prefetch_repeats=1,
    speed_nlat=6,
    speed_months=24,
    speed_repeats=1,
    speed_models=["ConvLSTM"],
    speed_modes=["eager", "channels_last"],  # torch.compile's own test: tests/test_gpu_path.py
    dense_n=64,
    dense_seconds=0.02,
    chunks=TINY_CHUNKS,
)


def _positive(x) -> bool:
    return isinstance(x, float | int) and math.isfinite(x) and x > 0


def test_bench_suite_runs_at_tiny_scale(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    res = run_all(TINY, out=out, work=tmp_path, device="cpu", command="python -m bench.run --tiny-test")

    ratios = {
        "inference": res["inference"]["ratio"],
        "efficiency": res["efficiency"]["ratio_reconstruct"],
        "efficiency_forward": res["efficiency"]["ratio_forward"],
        "memory": res["memory"]["ratio_peak"],
        "prefetch": res["prefetch"]["ratio"],
        "channels_last": res["speed_options"]["models"]["ConvLSTM"]["channels_last"]["speedup"],
        **{
            f"loader_{r['label']}_{k}": r[k]
            for r in res["loader"]["rows"]
            for k in ("ratio_zarr", "ratio_auto")
        },
        **{f"chunk_{c['variant']}": c["ratio_vs_memory"] for c in res["loader"]["chunking"]},
    }
    bad = {k: v for k, v in ratios.items() if not _positive(v)}
    assert not bad, bad
    assert len(res["loader"]["rows"]) == 2 and len(res["loader"]["chunking"]) == 6
    assert res["inference"]["gpu_peak_mb"] is None  # CPU run: the CUDA-only number is absent, not zero
    for key, n in (("months", 2), ("cells", 2)):
        sweep = res["scaling"][key]
        assert len(sweep["points"]) == n and all(_positive(p["seconds"]) for p in sweep["points"])
        assert all(math.isfinite(sweep["fit"][k]) for k in ("slope", "intercept", "r2"))
    mem = res["memory"]
    assert mem["long"]["months"] == 48 and mem["short"]["months"] == 24
    assert mem["long"]["peak_mb"] >= mem["long"]["baseline_mb"] > 0

    assert len(res["chunks"]["rows"]) == len(TINY_CHUNKS.variants)
    # channels_last changes the memory layout, not the numbers
    assert res["speed_options"]["models"]["ConvLSTM"]["channels_last"]["max_diff_rel"] < 1e-4
    md = out.read_text()
    assert md == res["markdown"] and md.startswith("# gtws-dl benchmarks")
    for needle in (
        "| benchmark | ratio |",
        "inference vs read floor",
        "compute efficiency",
        "loader overhead",
        "bounded memory",
        "prefetch speed-up",
        "`channels_last`, ConvLSTM",
        "scaling in months",
        "scaling in grid cells",
        "## Scaling points",
        "python -m bench.run --tiny-test",
        "torch ",
        "device **cpu**",
        "## Zarr chunk layout and codec of the predictor cube",
    ):
        assert needle in md, needle
    summary = md.split("## Summary", 1)[1].split("## Scaling points", 1)[0]
    rows = [r for r in summary.splitlines() if r.startswith("| ") and not r.startswith("| benchmark")]
    assert len(rows) == 11 and all(r.count("|") == 5 for r in rows), rows
    assert "n/a" not in summary.split("| bounded memory", 1)[0].replace("GPU", "")


def test_flop_count_matches_the_convlstm_formula():
    """FlopCounterMode counts 2·MACs of every convolution: check it against the layer sizes by hand."""
    from gtws_dl.models.convlstm import ConvLSTM

    C, K, E, hidden, k, H, W, T = 5, 2, 6, [4, 3], 3, 7, 10, 3
    net = ConvLSTM(C, K, hidden=hidden, kernel_size=k, encoder=E)
    per_pixel = C * E
    cin = E
    for h in hidden:
        per_pixel += (cin + h) * k * k * 4 * h
        cin = h
    per_pixel += (hidden[-1] + E) * 64 + 64 * K
    assert forward_flops(net, (2, T, C, H, W)) == 2 * per_pixel * 2 * T * H * W


def test_linear_fit_and_scaled_params():
    fit = linear_fit([1, 2, 3, 4], [3.0, 5.0, 7.0, 9.0])
    assert (
        fit["slope"] == pytest.approx(2)
        and fit["intercept"] == pytest.approx(1)
        and fit["r2"] == pytest.approx(1)
    )
    p = BenchParams().scaled(4.0)
    base = BenchParams()
    assert p.months == 4 * base.months and p.nlat == 2 * base.nlat and p.memory_nlat == 2 * base.memory_nlat


def test_chunks_benchmark_rows_sizes_and_ratios(tmp_path):
    """Every (layout, codec) variant gives a row; compressed stores are smaller than the uncompressed one of the
    same layout; ratios are against the first (uncompressed whole-field) row; the markdown table is complete."""
    res = run_chunks(TINY_CHUNKS, tmp_path)
    rows = res["rows"]
    assert [(r["chunks"], r["codec"]) for r in rows] == [
        ("(12, C, H, W)", "none"),
        ("(12, C, H, W)", "zstd-1"),
        ("(12, C, H, W)", "zstd-3-bitshuffle"),
        ("(12, C, H, W)", "lz4"),
        ("(12, C, 2, W)", "none"),
        ("(12, C, 2, W)", "zstd-3"),
        ("(12, C, 4, W)", "lz4"),
    ]
    raw = 24 * 3 * 8 * 16 * 4
    assert all(r["raw_bytes"] == raw for r in rows)
    uncompressed = {r["chunks"]: r["store_bytes"] for r in rows if r["codec"] == "none"}
    for r in rows:
        if r["codec"] != "none":
            assert r["store_bytes"] < uncompressed.get(r["chunks"], uncompressed["(12, C, H, W)"]), r
            assert r["ratio_size"] > 1.5, r  # 70 % of the cells are NaN ocean: compresses well
        assert all(
            _positive(r[k]) for k in ("write_s", "whole_s", "patch_s", "ratio_whole", "ratio_patch")
        ), r
    assert rows[0]["ratio_whole"] == rows[0]["ratio_patch"] == 1.0
    assert res["params"]["patches"] == 3 and res["params"]["patch"] == [4, 6]
    md = "\n".join(render_chunks(res))
    table = [line for line in md.splitlines() if line.startswith("| (12, C")]
    assert len(table) == len(rows) and all(line.count("|") == 11 for line in table)
    assert "Favoured" in md and not list(tmp_path.glob("*.zarr"))  # stores are removed after measuring


def test_chunks_synthetic_data_and_land_centred_patches():
    x, land = synthetic_predictors(10, 30, 2, land_share=0.3, seed=1)
    assert x.shape == (30, 2, 10, 20) and x.dtype == np.float32
    assert abs(land.mean() - 0.3) < 0.05
    assert np.isfinite(x[:, :, land]).all() and np.isnan(x[:, :, ~land]).all()
    # smooth: neighbouring land cells differ far less than the field varies
    d = np.nanmean(np.abs(np.diff(x[:, 0], axis=-1)))
    assert d < 0.5 * np.nanstd(x[:, 0])
    for t0, la, lo, ph, pw in patch_origins(land, 30, n=50, window=12, patch=(4, 6), seed=2):
        assert 0 <= t0 <= 18 and (ph, pw) == (4, 6) and 0 <= la <= 6 and 0 <= lo <= 14
        assert land[la : la + ph, lo : lo + pw].any()


def test_area_section_replaces_its_own_section_only():
    from bench.area import SECTION, render_area, replace_section

    stages = {s: {"small": {"peak_mb": 100.0, "seconds": 1.0}, "large": {"peak_mb": 110.0, "seconds": 2.0},
                  "ratio": 1.1} for s in ("twin", "ingest")}
    res = {"date": "2026-12-01", "stages": stages, "cells": {"small": 3200, "large": 12800},
           "boxes": {"small": [0, 20, 40, 50], "large": [0, 40, 30, 50]}, "period": ["2002-01", "2009-12"],
           "budgets": {"ingest": ["memory_gb=0.04"]}, "window": ["datamodule.window=8"]}
    sec = render_area(res)
    assert "| ingest | 100 | 110 | 1.10 |" in sec and "12,800 cells" in sec
    assert "ingest `memory_gb=0.04`" in sec and "`datamodule.window=8`" in sec  # the budgets measured with
    doc = "# b\n\n## One\ntext\n\n" + SECTION + "\nold\n\n## Two\nkept\n"
    new = replace_section(doc, sec)
    assert "old" not in new and "## One\ntext" in new and "## Two\nkept" in new and new.count(SECTION) == 1
    assert replace_section("# b\n", sec).endswith(sec)


def test_useful_compute_counts_fewer_flops_with_the_carried_state():
    """The tile plans of both modes on a real land mask: carrying the state computes each month once and reads
    a block's halo, so it needs well under the windowed FLOPs per land cell-month; the section renders them."""
    from bench.useful import SECTION, counted_global, render_useful
    from gtws_dl.models.convlstm import ConvLSTM

    net = ConvLSTM(31, 3, hidden=[32, 32], encoder=32, lon_circular=True)
    g = counted_global(net, 3e5, res=1.0, months=120, memory_gb=0.5)  # tiles at 1 deg with this budget
    assert g["windows"]["tile"] is not None and g["carried"]["tile"] is not None
    assert g["carried"]["tile"][0] > g["windows"]["tile"][0]  # a block's halo and activations: larger tiles
    assert g["ratio"] > 2.0  # more than the warm-up alone
    w = {"seconds": 2.0, "flops": 2e12, "land_cell_months": 10**6}
    measured = {"windows": w, "carried": {**w, "seconds": 1.0, "flops": 1e12}, "ratio": 2.0, "speedup": 2.0,
                "shape": [90, 180], "months": 120,
                "diff": {"median_mm": 0.003, "p99_mm": 0.4, "max_mm": 3.0, "std_mm": 200.0}}
    sec = render_useful({"measured": measured, "global": g, "per_cell_month": 3e5})
    assert sec.startswith(SECTION) and "| 2.00 |" in sec and f"| {g['ratio']:.2f} |" in sec
