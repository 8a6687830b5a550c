"""Reconstruction with the recurrent state carried through the record (gtws_dl.carry): each month computed
once, tiles equal to whole fields, a resumed run and an update equal to a straight run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr
from bad_inputs.builders import module_for, save_checkpoint

import gtws_dl.carry as carry
import gtws_dl.reconstruct as recon
from gtws_dl.checkpoint import load_checkpoint

STRIDE, WARMUP = 6, 6  # module_for: 12-month windows, 6-month warm-up


@pytest.fixture(scope="module")
def ckpt(synthetic_cube, tmp_path_factory):
    module = module_for(synthetic_cube["dir"], hidden=(4, 4), seed=3)
    return save_checkpoint(module, tmp_path_factory.mktemp("ck") / "carry.ckpt")


def _recon(cube, ckpt, out, **kw):
    recon.reconstruct(load_checkpoint(ckpt), cube, out, ckpt_path=ckpt, device="cpu", progress=False,
                      carry_state=True, **kw)
    return zarr.open_group(out, mode="r")["twsa"][:]


@pytest.fixture(scope="module")
def straight(synthetic_cube, ckpt, tmp_path_factory):
    return _recon(synthetic_cube["dir"], ckpt, tmp_path_factory.mktemp("straight") / "csr.zarr")


def _count_months(monkeypatch):
    """Record the months and cells of every forward pass."""
    seen, run = [], carry.run_net

    def counting(module, x, *a, **k):
        seen.append(tuple(x.shape))
        return run(module, x, *a, **k)

    monkeypatch.setattr(carry, "run_net", counting)
    return seen


def test_each_month_is_computed_once_and_differs_from_the_windowed_run(synthetic_cube, ckpt, straight, tmp_path,
                                                                        monkeypatch):
    cube, land = synthetic_cube["dir"], synthetic_cube["land"]
    nt = len(synthetic_cube["times"])
    seen = _count_months(monkeypatch)
    again = _recon(cube, ckpt, tmp_path / "again.zarr")
    np.testing.assert_array_equal(again, straight)  # deterministic
    assert sum(s[1] for s in seen) == nt + WARMUP  # every month once, plus the first block's spin-up
    assert np.isfinite(straight[:, :, land]).all() and np.isnan(straight[:, :, ~land]).all()
    windowed = zarr.open_group(recon.reconstruct(load_checkpoint(ckpt), cube, tmp_path / "win.zarr", ckpt_path=ckpt,
                                                 device="cpu", progress=False), mode="r")["twsa"][:]
    # the first block is the same computation (zero state, the same spin-up); later blocks keep a memory
    np.testing.assert_allclose(straight[:, :STRIDE], windowed[:, :STRIDE], rtol=1e-5, atol=1e-6)
    assert np.nanmax(np.abs(straight[:, STRIDE:] - windowed[:, STRIDE:])) > 1e-4


def test_tiles_with_the_carried_state_equal_whole_fields(synthetic_cube, ckpt, straight, tmp_path, monkeypatch):
    cube, land = synthetic_cube["dir"], synthetic_cube["land"]
    seen = _count_months(monkeypatch)
    tiled = _recon(cube, ckpt, tmp_path / "tiled.zarr", tile=(6, 9))
    np.testing.assert_array_equal(np.isnan(tiled), np.isnan(straight))
    np.testing.assert_allclose(tiled, straight, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(straight)))
    # the spin-up block reads a window's halo (12 months x 2 layers each side, across the dateline), later
    # blocks only one block's
    W = land.shape[1]
    assert max(s[4] for s in seen if s[1] == STRIDE + WARMUP) == 9 + 2 * (STRIDE + WARMUP) * 2
    assert max(s[4] for s in seen if s[1] == STRIDE) == 9 + 2 * STRIDE * 2 < W


@pytest.mark.parametrize("circular", [False, True])
def test_state_is_kept_within_reach_of_land(circular):
    land = np.zeros((9, 12), bool)
    land[4, 0] = True
    active = carry.active_cells(land, 2, circular)
    assert active[2:7, 0:3].all()
    assert active.sum() == (25 if circular else 15)
    assert active[4, -1] == circular  # across the dateline only on a global grid


def test_an_interrupted_carried_run_resumes_to_the_same_numbers(synthetic_cube, ckpt, straight, tmp_path,
                                                                 monkeypatch):
    cube = synthetic_cube["dir"]
    out = tmp_path / "csr.zarr"
    calls, run = [], carry.run_net

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt("simulated kill in block 10")
        return run(*a, **k)

    monkeypatch.setattr(carry, "run_net", failing)
    with pytest.raises(KeyboardInterrupt):
        _recon(cube, ckpt, out)
    assert json.loads((tmp_path / "csr.zarr.progress.json").read_text())["done"] == list(range(9))
    seen = _count_months(monkeypatch)
    np.testing.assert_array_equal(_recon(cube, ckpt, out), straight)
    n_blocks = -(-len(synthetic_cube["times"]) // STRIDE)
    assert len(seen) == n_blocks - 9  # only the unfinished blocks


def test_an_update_starts_from_the_kept_state_and_equals_a_straight_run(synthetic_cube, ckpt, tmp_path,
                                                                        monkeypatch):
    """The state at the start of the block holding the first ERA5T month is kept; an update rewriting the
    months from there computes that block on and gives the numbers of a run over the whole record."""
    cube = tmp_path / "cube.zarr"
    shutil.copytree(synthetic_cube["dir"], cube)
    manifest = json.loads((cube / "manifest.json").read_text())
    times = synthetic_cube["times"]
    first_t = len(times) - 3
    manifest["era5t_months"] = [f"{t:%Y-%m-%d}" for t in times[first_t:]]
    (cube / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "csr.zarr"
    whole = _recon(cube, ckpt, out)
    kept = zarr.open_group(out, mode="r")[carry.KEPT]
    assert kept.attrs["month_index"] == (first_t // STRIDE) * STRIDE
    seen = _count_months(monkeypatch)
    updated = _recon(cube, ckpt, out, first_month=first_t)
    assert len(seen) == 1  # one block: the one holding the first ERA5T month
    np.testing.assert_array_equal(updated, whole)


def test_a_store_made_in_windows_is_updated_in_windows(synthetic_cube, ckpt, tmp_path, caplog):
    """An update with carry_state=true of a reconstruction made in windows (or by an earlier version) goes on in
    windows, so the record stays one computation, and says so."""
    cube, out = synthetic_cube["dir"], tmp_path / "csr.zarr"
    kw = {"ckpt_path": ckpt, "device": "cpu", "progress": False}
    recon.reconstruct(load_checkpoint(ckpt), cube, out, **kw)
    windowed = zarr.open_group(out, mode="r")["twsa"][:]
    first = len(synthetic_cube["times"]) - 3
    caplog.set_level("WARNING")
    recon.reconstruct(load_checkpoint(ckpt), cube, out, carry_state=True, first_month=first, **kw)
    assert "keeps no carried state" in caplog.text and "goes on in windows" in caplog.text
    np.testing.assert_array_equal(zarr.open_group(out, mode="r")["twsa"][:], windowed)
