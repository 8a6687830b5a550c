"""Memory bounded in area: the cube built band by band and the reconstruction computed tile by tile give the
same values as whole fields, read only their region, and skip tiles that hold no land."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from bad_inputs.builders import module_for, save_checkpoint
from hydra import compose, initialize_config_dir

import gtws_dl.blocks as blocks
import gtws_dl.reconstruct as recon
from gtws_dl import tiling
from gtws_dl.checkpoint import load_checkpoint
from gtws_dl.config import conf_dir
from gtws_dl.cube.build import CubeBuilder
from gtws_dl.cube.writer import PARTIAL, CubeWriter
from gtws_dl.ingest import ingest
from gtws_dl.twin import __main__ as twin_cmd

TWIN = ["grid.res=30", "twin.start=2004-01", "twin.end=2009-12", "twin.progress=false"]
INGEST = ["grid.res=30", "data.chunk_months=12", "data.chunk_lat=2"]


def _compose(name: str, *overrides: str):
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def _read(cube, store, var):
    return zarr.open_group(cube / store, mode="r")[var][:]


def test_cube_built_in_latitude_bands_equals_the_whole_field_build(tmp_path, caplog):
    twin_cmd.run(_compose("twin", f"paths.output_dir={tmp_path}", *TWIN))
    whole, bands = tmp_path / "whole", tmp_path / "bands"
    ingest(_compose("ingest", f"paths.output_dir={tmp_path}", f"paths.cube_dir={whole}", *INGEST))
    caplog.set_level("INFO")
    m = ingest(_compose("ingest", f"paths.output_dir={tmp_path}", f"paths.cube_dir={bands}", "memory_gb=0.00002",
                        *INGEST))
    assert "3 latitude band(s) of 2 rows x blocks of 12 months" in caplog.text  # 6 rows, 72 months
    for store, var in (("predictors.zarr", "predictors"), ("targets.zarr", "twsa")):
        a, b = _read(whole, store, var), _read(bands, store, var)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert np.isfinite(b).any()
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6 * np.nanmax(np.abs(a)))
    w = zarr.open_group(whole / "predictors.zarr", mode="r")["predictors"]
    assert w.chunks[2] == 2 and m["chunk_lat"] == 2  # bands are whole chunks


def test_interrupted_ingest_resumes_after_its_last_block_and_equals_a_straight_build(tmp_path, caplog, monkeypatch):
    """Killed after 2 of its 6 time blocks, the rerun of the same ingest computes only the other 4 and writes the
    cube (predictors, statistics) of a build that was never interrupted."""
    twin_cmd.run(_compose("twin", f"paths.output_dir={tmp_path}", *TWIN))
    # statistics from 2006: the months before them have predictor_shift moments to resume as well
    args = [f"paths.output_dir={tmp_path}", "memory_gb=0.00002", "data.stats_period=[2006-01,2009-12]", *INGEST]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    m0 = ingest(_compose("ingest", f"paths.cube_dir={straight}", *args))
    real_checkpoint, calls = CubeWriter.checkpoint, []

    def killed_after_two(self, months):
        real_checkpoint(self, months)
        calls.append(months)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would, after the block's record is on disk

    monkeypatch.setattr(CubeWriter, "checkpoint", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        ingest(_compose("ingest", f"paths.cube_dir={resumed}", *args))
    assert not (resumed / "manifest.json").exists() and (resumed / PARTIAL).is_dir()
    monkeypatch.setattr(CubeWriter, "checkpoint", real_checkpoint)
    bands = []
    real_band = CubeBuilder.predictor_band
    monkeypatch.setattr(CubeBuilder, "predictor_band", lambda self, *a, **k: bands.append(1) or real_band(self, *a, **k))
    caplog.set_level("INFO")
    m1 = ingest(_compose("ingest", f"paths.cube_dir={resumed}", *args))
    assert "24 of 72 months already written" in caplog.text
    assert len(bands) == 3 * 4  # 3 latitude bands x the 4 blocks left
    np.testing.assert_array_equal(_read(resumed, "predictors.zarr", "predictors"),
                                  _read(straight, "predictors.zarr", "predictors"))
    np.testing.assert_array_equal(_read(resumed, "targets.zarr", "twsa"), _read(straight, "targets.zarr", "twsa"))
    assert m1["stats"] == m0["stats"] and m1["fingerprint"] == m0["fingerprint"]
    assert m0["predictor_shift"]["before"] == ["2004-01", "2005-12"]  # the months before the statistics period
    assert m1["predictor_shift"] == m0["predictor_shift"]  # the per-cell moments resumed too
    assert not (resumed / PARTIAL).exists() and not any(resumed.glob("*.partial*"))


@pytest.fixture(scope="module")
def ckpt(synthetic_cube, tmp_path_factory):
    return save_checkpoint(module_for(synthetic_cube["dir"], hidden=(4,)), tmp_path_factory.mktemp("ck") / "t.ckpt")


def _recon(cube, ckpt, out, **kw):
    recon.reconstruct(load_checkpoint(ckpt), cube, out, ckpt_path=ckpt, device="cpu", batch_windows=4,
                      progress=False, **kw)
    return zarr.open_group(out, mode="r")["twsa"][:]


def test_land_tiles_equal_the_whole_field_and_ocean_tiles_are_not_computed(synthetic_cube, ckpt, tmp_path,
                                                                          monkeypatch):
    cube, land = synthetic_cube["dir"], synthetic_cube["land"]
    whole = _recon(cube, ckpt, tmp_path / "whole.zarr")
    net = load_checkpoint(ckpt).net
    every, on_land = tiling.plan(net, 12, land.shape, (3, 4)), tiling.plan(net, 12, land.shape, (3, 4), land)
    assert len(on_land) < len(every)  # the synthetic continent leaves ocean-only tiles
    reads = []
    read = blocks.read_batch
    monkeypatch.setattr(blocks, "read_batch", lambda *a, **k: reads.append(k) or read(*a, **k))
    tiled = _recon(cube, ckpt, tmp_path / "tiled.zarr", tile=(3, 4))
    np.testing.assert_array_equal(np.isnan(tiled), np.isnan(whole))
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(whole)))
    assert reads and all(k["rows"] is not None and len(k["cols"]) < land.shape[1] for k in reads)
    assert len(reads) == 9 * len(on_land)  # 9 batches, one read per land tile


def test_memory_budget_chooses_tiles_with_the_same_outputs(synthetic_cube, ckpt, tmp_path, caplog):
    cube = synthetic_cube["dir"]
    net = load_checkpoint(ckpt).net
    assert tiling.auto_tile(net, 12, 4, (18, 36), windows=4, memory_gb=4) is None  # fits: whole fields
    caplog.set_level("INFO")
    whole = _recon(cube, ckpt, tmp_path / "whole.zarr", memory_gb=4)
    small = _recon(cube, ckpt, tmp_path / "small.zarr", memory_gb=1e-4)
    assert "tiles of" in caplog.text and "hold land" in caplog.text
    np.testing.assert_allclose(small, whole, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(whole)))


def test_read_batch_across_the_dateline_reads_the_same_values():
    pred = np.random.default_rng(0).standard_normal((30, 2, 6, 10)).astype(np.float32)
    mean, std = np.zeros((2, 1, 1), np.float32), np.ones((2, 1, 1), np.float32)
    group = [(np.arange(0, 12), 0, 12), (np.arange(12, 24), 12, 24)]
    cols = np.arange(-3, 4) % 10  # 7, 8, 9, 0, 1, 2, 3
    got = recon.read_batch(pred, group, mean, std, rows=(1, 4), cols=cols)
    want = recon.read_batch(pred, group, mean, std)[..., 1:4, :][..., cols]
    np.testing.assert_array_equal(got, want)


def test_products_published_in_latitude_bands_equal_whole_fields(synthetic_cube, tmp_path):
    """products.memory_gb small: 2-row bands, chunks of one band, same values, std included."""
    import xarray as xr

    from gtws_dl.post.publish import BAND_BYTES_PER_CELL_MONTH, band_rows, publish
    from gtws_dl.recon_store import write_reconstruction

    grid, times, truth, land = (synthetic_cube[k] for k in ("grid", "times", "truth", "land"))
    rng = np.random.default_rng(1)
    twsa = (truth + rng.normal(0, 1, truth.shape))[None].astype(np.float32)
    std = np.abs(rng.normal(5, 1, twsa.shape)).astype(np.float32)
    recon = write_reconstruction(tmp_path / "csr.zarr", twsa, targets=["csr"], times=times, lat=grid.lat,
                                 lon=grid.lon, twsa_std=std)
    rows = 2
    gb = rows * len(times) * grid.nlon * BAND_BYTES_PER_CELL_MONTH / 2**30  # band_rows' budget for 2 rows
    assert band_rows(len(times), grid.nlon, gb) == rows
    kw = {"grid": grid, "cube_dir": synthetic_cube["dir"], "channels": ["tp"]}
    whole = publish(recon, tmp_path / "whole", **kw)
    bands = publish(recon, tmp_path / "bands", products={"memory_gb": gb}, **kw)
    for key in ("csr", "csr_detrended_deseasonalized"):
        a, b = xr.open_dataset(whole[key]), xr.open_dataset(bands[key])
        for v in [v for v in ("twsa", "twsa_std") if v in a]:
            np.testing.assert_array_equal(np.isnan(a[v].values), np.isnan(b[v].values))
            np.testing.assert_allclose(b[v].values, a[v].values, rtol=1e-6, atol=1e-5)
        assert b["twsa"].encoding["chunksizes"] == (1, rows, grid.nlon)
        assert a["twsa"].encoding["chunksizes"] == (1, grid.nlat, grid.nlon)
    assert np.isfinite(xr.open_dataset(bands["csr"])["twsa"].values[:, land]).all()
