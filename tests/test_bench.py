"""The benchmark suite at a tiny scale: every ratio is produced, finite and positive; the report is complete.

No timing is asserted (shared CI machines): only that the numbers exist and are well-formed.
"""

from __future__ import annotations

import math
import sys

import pytest
from conftest import REPO

if str(REPO) not in sys.path:  # `bench` is a top-level package of the checkout, not of the installed wheel
    sys.path.insert(0, str(REPO))

from bench.inference import forward_flops, linear_fit  # noqa: E402
from bench.run import BenchParams, run_all  # noqa: E402

TINY = BenchParams(
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
    dense_n=64,
    dense_seconds=0.02,
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
        **{
            f"loader_{r['label']}_{k}": r[k]
            for r in res["loader"]["rows"]
            for k in ("ratio_zarr", "ratio_auto")
        },
        **{f"chunk_{c['variant']}": c["ratio_vs_memory"] for c in res["loader"]["chunking"]},
    }
    bad = {k: v for k, v in ratios.items() if not _positive(v)}
    assert not bad, bad
    assert len(res["loader"]["rows"]) == 2 and len(res["loader"]["chunking"]) == 5
    assert res["inference"]["gpu_peak_mb"] is None  # CPU run: the CUDA-only number is absent, not zero
    for key, n in (("months", 2), ("cells", 2)):
        sweep = res["scaling"][key]
        assert len(sweep["points"]) == n and all(_positive(p["seconds"]) for p in sweep["points"])
        assert all(math.isfinite(sweep["fit"][k]) for k in ("slope", "intercept", "r2"))
    mem = res["memory"]
    assert mem["long"]["months"] == 48 and mem["short"]["months"] == 24
    assert mem["long"]["peak_mb"] >= mem["long"]["baseline_mb"] > 0

    md = out.read_text()
    assert md == res["markdown"] and md.startswith("# gtws-dl benchmarks")
    for needle in (
        "| benchmark | ratio |",
        "inference vs read floor",
        "compute efficiency",
        "loader overhead",
        "bounded memory",
        "scaling in months",
        "scaling in grid cells",
        "## Scaling points",
        "python -m bench.run --tiny-test",
        "torch ",
        "device **cpu**",
    ):
        assert needle in md, needle
    summary = md.split("## Summary", 1)[1].split("## Scaling points", 1)[0]
    rows = [r for r in summary.splitlines() if r.startswith("| ") and not r.startswith("| benchmark")]
    assert len(rows) == 9 and all(r.count("|") == 5 for r in rows), rows
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
