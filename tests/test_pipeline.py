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


def test_skill_in_latitude_bands_equals_the_whole_field_protocol(tiny_run, monkeypatch):
    """skill_vs_truth reads each field once, band by band (memory bounded in area); with bands of 2 rows its
    numbers equal the protocol run on whole in-memory arrays (skill_rows / trend_rows)."""
    import pandas as pd

    from gtws_dl.cube.store import open_cube
    from gtws_dl.evaluate import bands, truth
    from gtws_dl.grid import Grid
    from gtws_dl.post.regions import evaluation_masks, region_masks

    grid = Grid(10)
    prod = tiny_run / "products"
    truth_da = truth.open_truth(tiny_run / "twin" / "truth_twsa.nc")
    forced = truth.open_truth(tiny_run / "twin" / "truth_components.nc", "twsa_forced")
    monkeypatch.setattr(bands, "BAND_MB", 1e-3)  # 1 row per band
    monkeypatch.setattr(truth, "BAND_MB", 1e-3)
    df, trends = truth.skill_table(prod, truth_da, grid=grid, forced=forced, cube_dir=tiny_run / "cube",
                                   centres=["csr"])
    monkeypatch.setattr(bands, "BAND_MB", 1e6)  # whole fields
    rec = xr.open_dataset(prod / "gtws_dl_twsa_csr.nc")["twsa"]
    times = pd.DatetimeIndex(rec["time"].values).to_period("M").to_timestamp()
    sim = rec.values
    obs = truth_da.sel(time=truth_da["time"].dt.strftime("%Y-%m").isin(times.strftime("%Y-%m"))).values
    land = np.isfinite(sim[0]) & np.isfinite(obs).any(0)
    sim, obs = np.where(land, sim, np.nan), np.where(land, obs, np.nan)
    fc = np.where(land, forced.values, np.nan)
    manifest, _, targ = open_cube(tiny_run / "cube")
    ct = pd.date_range(manifest["time"]["start"], periods=manifest["time"]["n"], freq="MS")
    names = [str(t) for t in targ["target"][:]]
    grace = np.where(land, np.asarray(targ["twsa"][names.index("csr")])[ct.get_indexer(times)], np.nan)
    masks = region_masks(grid, land)
    regions = evaluation_masks(masks)
    area = grid.cell_area()
    rows = []
    for ref, o in ((truth.REFERENCES["truth"], obs), (truth.REFERENCES["forced"], fc)):
        rows += truth.skill_rows("csr", sim, o, times, cell_area=area, regions=regions, reference=ref)
        rows += truth.skill_rows("GRACE csr (target)", grace, o, times, cell_area=area, regions=regions,
                                 periods={truth.GRACE_ERA: truth.PERIODS[truth.GRACE_ERA]}, reference=ref)
    whole = pd.DataFrame(rows)
    key = ["centre", "reference", "period", "signal", "region"]
    a, b = df.sort_values(key).reset_index(drop=True), whole.sort_values(key).reset_index(drop=True)
    assert len(a) > 30 and a[key].equals(b[key])
    # KGE's bias term mean(sim)/mean(obs) is 0/0 on the zero-mean signals (dd, low-pass): rounding decides it there
    zero_mean = a["signal"] != "full"
    a.loc[zero_mean, "kge"] = b.loc[zero_mean, "kge"] = 0.0
    pd.testing.assert_frame_equal(a, b, rtol=1e-6)
    tw = pd.DataFrame(truth.trend_rows("gtws-dl csr", sim, grace, obs, times, cell_area=area, masks=masks))
    pd.testing.assert_frame_equal(trends, tw, rtol=1e-6)


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
