"""End to end on a tiny twin Earth through the real entry points: twin → ingest → train.py → infer.py → skill."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openpyxl
import pytest
import xarray as xr

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

COMMON = ["grid.res=10", "data.start=1996-01", "data.end=2012-12", "data.stats_period=[2002-04,2009-12]"]


def _run(args: list[str], out) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, *args, f"paths.output_dir={out}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    _run(["-m", "gtws_dl.twin", "grid.res=10", "twin.start=1996-01", "twin.end=2012-12", "twin.progress=false"], out)
    _run(["-m", "gtws_dl.ingest", *COMMON], out)
    train = ["train.py", *COMMON, "datamodule.window=12", "datamodule.warmup=6", "datamodule.val_months=12",
             "datamodule.patch=[8,null]", "datamodule.samples_per_epoch=16", "model.net.hidden=[8]",
             "model.net.encoder=8", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"]
    _run([train[0], "-m", *train[1:], "target=jpl,csr"], out)  # Hydra multirun over centres
    _run([*train, "target=all"], out)
    for target in ("jpl", "all"):
        _run(["infer.py", *COMMON, f"target={target}"], out)
    return out


def test_products_follow_the_contract(tiny_run):
    prod = tiny_run / "products"
    for centre in ("jpl", "csr", "gsfc"):
        for name in (f"gtws_dl_twsa_{centre}.nc", f"gtws_dl_twsa_{centre}_detrended_deseasonalized.nc"):
            ds = xr.open_dataset(prod / name)
            twsa = ds["twsa"]
            assert twsa.dims == ("time", "lat", "lon") and twsa.dtype == np.float32 and twsa.attrs["units"] == "mm"
            assert (np.diff(ds.lat) > 0).all() and ds.lon.min() > -180 and ds.lon.max() < 180
            assert str(ds.time.values[0])[:10] == "1996-01-16" and "time_bnds" in ds
            land = ds["land_mask"].values.astype(bool)
            assert np.isfinite(twsa.values[:, land]).all(), f"{name}: a land cell is missing a month"
            assert np.isnan(twsa.values[:, ~land]).all(), f"{name}: ocean must be NaN"
    wb = openpyxl.load_workbook(prod / "gtws_dl_regional_series.xlsx", read_only=True)
    assert {"jpl", "csr", "gsfc", "jpl_detrended_deseasonalized"} <= set(wb.sheetnames)
    header = [c.value for c in next(wb["csr"].iter_rows(max_row=1))]
    assert header[0] == "time" and "global_land_excl_greenland_antarctica_Gt" in header
    assert {"train", "recon"} <= {p.name for p in tiny_run.iterdir()}
    assert (tiny_run / "train" / "jpl" / "checkpoints" / "best.ckpt").exists()
    assert (tiny_run / "train" / "csr" / "checkpoints" / "best.ckpt").exists()


def test_skill_against_truth_is_computed(tiny_run):
    out = _run(["-m", "gtws_dl.evaluate.truth", *COMMON], tiny_run)
    assert "land excl. Greenland & Antarctica" in out
    md = (tiny_run / "products" / "skill_vs_truth.md").read_text()
    assert "1940-2001" not in md or "GRACE era" in md
    assert "GRACE era" in md


def test_ingest_reuses_an_unchanged_cube(tiny_run):
    before = (tiny_run / "cube" / "manifest.json").stat().st_mtime_ns
    log = _run(["-m", "gtws_dl.ingest", *COMMON], tiny_run)
    assert "up to date" in log
    assert (tiny_run / "cube" / "manifest.json").stat().st_mtime_ns == before


def test_cube_chunks_and_codec_follow_the_config(tiny_run):
    """Predictors are chunked (chunk_months, C, chunk_lat, W) with zstd + byte shuffle (bench/chunks.py's choice)."""
    import zarr

    arr = zarr.open_group(tiny_run / "cube" / "predictors.zarr", mode="r")["predictors"]
    nt, nc, H, W = arr.shape
    assert H == 18 and arr.chunks == (12, nc, 15, W)  # 10° grid: 18 rows -> chunks of 15 (+ a partial one)
    (codec,) = arr.compressors
    assert codec.cname.value == "zstd" and codec.shuffle.value == "shuffle" and codec.clevel == 3


def test_infer_ensemble_writes_mean_and_spread(tiny_run):
    """``infer.py ensemble=[a,b]``: the mean of identical members is the single model and their spread is zero."""
    ckpt = tiny_run / "train" / "all" / "checkpoints" / "best.ckpt"
    single = xr.open_dataset(tiny_run / "products" / "gtws_dl_twsa_csr.nc")["twsa"].values
    _run(["infer.py", *COMMON, "target=all", f"ensemble=[{ckpt},{ckpt}]",
          f"paths.products_dir={tiny_run}/products_ens", f"paths.recon_dir={tiny_run}/recon_ens"], tiny_run)
    ens = xr.open_dataset(tiny_run / "products_ens" / "gtws_dl_twsa_csr.nc")
    land = ens["land_mask"].values.astype(bool)
    np.testing.assert_allclose(ens["twsa"].values[:, land], single[:, land], atol=1e-3)
    assert "twsa_std" in ens and np.nanmax(np.abs(ens["twsa_std"].values)) < 1e-3
