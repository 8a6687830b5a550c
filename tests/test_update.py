"""The monthly update on a tiny twin Earth, through the real entry points (issue 16).

Twin A ends 2011-12 (its last 3 months ERA5T, differing from the final ERA5 by ``twin.era5t_revision``); twin B is
the same world (same seed) to 2012-12, with 2011-10..12 final and 2012-10..12 ERA5T; twin C is B with every
month final. A is ingested, trained and reconstructed with no period key given; ``gtws-dl update`` then takes
B's files, then C's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from bad_inputs.builders import product_numbers, tree_state
from hydra import compose, initialize_config_dir

from gtws_dl.config import conf_dir
from gtws_dl.io.errors import InputFileError
from gtws_dl.post.manifest import check_products
from gtws_dl.update import journal_for, update

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
CHILD = REPO / "tests" / "bad_inputs" / "update_child.py"
GRID = ["grid.res=10"]
TWIN = ["twin.start=2000-01", "twin.progress=false", "twin.era5t_revision=0.05"]
NC = ["gtws_dl_twsa_csr.nc", "gtws_dl_twsa_csr_detrended_deseasonalized.nc"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}


def _run(args: list[str], *, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"{args[:2]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _upd(run: Path, twin: Path) -> list[str]:
    """The update overrides: the run's folders, the inputs of another twin folder."""
    return [*GRID, f"paths.output_dir={run}", f"paths.twin_dir={twin}", "target=csr"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("update")
    for name, extra in (("A", ["twin.end=2011-12"]), ("B", ["twin.end=2012-12"]),
                        ("C", ["twin.end=2012-12", "twin.era5t_months=0"])):
        _run(["-m", "gtws_dl.twin", *GRID, *TWIN, *extra, f"paths.output_dir={root / name}"])
    run = root / "A"  # no period key anywhere: record, statistics, training and validation from the data
    _run(["-m", "gtws_dl.ingest", *GRID, f"paths.output_dir={run}"])
    _run(["train.py", *GRID, f"paths.output_dir={run}", "target=csr", "datamodule.window=12", "datamodule.warmup=6",
          "datamodule.val_months=12", "datamodule.patch=[8,null]", "datamodule.samples_per_epoch=16",
          # training months that end before the ERA5T months: the unforced trend fitted on them at the first
          # publication is then the one a from-scratch run fits (with val_block=first they reach the record's end,
          # and the update keeps the slope fitted on ERA5T numbers: frozen fits, refit=true refits)
          "datamodule.val_block=last",
          "model.net.hidden=[8]", "model.net.encoder=8", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"])
    _run(["infer.py", *GRID, f"paths.output_dir={run}", "target=csr"])
    before = root / "before"
    shutil.copytree(run, before, symlinks=True)
    updated = root / "updated"
    shutil.copytree(before, updated, symlinks=True)
    _run(["-m", "gtws_dl.update", *_upd(updated, root / "B" / "twin")])
    return {"root": root, "before": before, "updated": updated, "B": root / "B" / "twin", "C": root / "C" / "twin"}


def _nc(run: Path, name: str) -> xr.Dataset:
    with xr.open_dataset(run / "products" / name) as ds:
        return ds.load()


def _numbers(run: Path) -> dict[str, np.ndarray]:
    out = {"predictors": zarr.open_group(run / "cube" / "predictors.zarr", mode="r")["predictors"][:],
           "targets": zarr.open_group(run / "cube" / "targets.zarr", mode="r")["twsa"][:],
           "recon": zarr.open_group(run / "recon" / "csr.zarr", mode="r")["twsa"][:]}
    out.update(product_numbers(run / "products", NC))
    for name in NC:
        out[name + ":preliminary"] = _nc(run, name)["preliminary"].values
    return out


def test_update_appends_new_months_recomputes_final_era5t_and_keeps_history(world, tmp_path):
    before, updated = world["before"], world["updated"]
    old = _nc(before, NC[0])
    assert f"{pd.Timestamp(old['time'].values[-1]):%Y-%m}" == "2011-12"  # the record came from the data
    np.testing.assert_array_equal(old["preliminary"].values[-4:], [0, 1, 1, 1])
    for name in NC:
        a, b = _nc(before, name), _nc(updated, name)
        assert b.sizes["time"] == a.sizes["time"] + 12
        k = a.sizes["time"] - 3  # months up to 2011-09 were final: byte-identical
        np.testing.assert_array_equal(b["twsa"].values[:k], a["twsa"].values[:k], strict=True)
        # 2011-10..12 were ERA5T, now final ERA5 with other numbers: recomputed, no longer flagged
        assert np.nanmax(np.abs(b["twsa"].values[k:k + 3] - a["twsa"].values[k:k + 3])) > 0.01
        np.testing.assert_array_equal(b["preliminary"].values[-16:], [0] * 13 + [1] * 3)
        assert b["preliminary"].attrs["flag_meanings"] == "final_era5 preliminary_era5t"
        assert "preliminary" in b["twsa"].attrs["ancillary_variables"]
    dd = _nc(updated, NC[1])
    assert dd.attrs["decomposition_fit_period"] == "2000-01 to 2011-09"  # frozen at first publication
    upd = check_products(updated / "products")  # the folder's manifest vouches for every file
    record = next(r["update"] for r in upd["runs"].values() if "update" in r)
    assert record["recomputed"] == ["2011-10", "2011-11", "2011-12"] and len(record["appended"]) == 12
    cube = __import__("json").loads((updated / "cube" / "manifest.json").read_text())
    assert cube["era5t_months"] == ["2012-10", "2012-11", "2012-12"] and cube["updates"][-1]["first_changed"] == "2011-10"

    # the same checkpoint on a cube built from scratch from B's files (the same statistics months)
    scratch = tmp_path / "scratch"
    stats = cube["stats"]["period"]
    common = [*GRID, f"paths.output_dir={scratch}", f"paths.twin_dir={world['B']}"]
    _run(["-m", "gtws_dl.ingest", *common, f"data.stats_period=[{stats[0]},{stats[1]}]"])
    _run(["infer.py", *common, "target=csr", f"ckpt_path={before}/train/csr/checkpoints/best.ckpt",
          "products.decompose_period=[2000-01,2011-09]"])
    got, want = _numbers(updated), _numbers(scratch)
    np.testing.assert_array_equal(got["predictors"], want["predictors"])  # the cube as if built whole
    np.testing.assert_array_equal(got["targets"], want["targets"])  # B's new GRACE months added
    np.testing.assert_allclose(got["recon"], want["recon"], atol=1e-5, rtol=0)
    for k in (*NC, *(n + ".zarr" for n in NC), *(n + ":preliminary" for n in NC)):  # appended = published whole
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=0, err_msg=k)
    for k in (k for k in got if k.startswith("xlsx:")):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, err_msg=k)


def test_the_twin_extended_has_the_same_past(world):
    """Same seed, later end: the truth and the final ERA5 months of the shorter twin are unchanged."""
    a, b = world["root"] / "A" / "twin", world["B"]
    with xr.open_dataset(a / "truth_twsa.nc") as ta, xr.open_dataset(b / "truth_twsa.nc") as tb:
        np.testing.assert_array_equal(ta["twsa"].values, tb["twsa"].sel(time=ta["time"]).values)
    for f in _files_of(a / "era5", 2011):
        with xr.open_dataset(f) as fa, xr.open_dataset(b / "era5" / f.name) as fb:
            for v in (v for v in fa.data_vars if fa[v].ndim >= 2):
                # Jan-Sep 2011: final in both (NaN over the sea in both)
                np.testing.assert_array_equal(fa[v].values[:9], fb[v].values[:9], err_msg=v)
                if v in ("tp", "e"):  # Oct-Dec: ERA5T in A (revised by twin.era5t_revision), final in B
                    assert not np.array_equal(fa[v].values[9:], fb[v].values[9:])


def test_second_update_recomputes_exactly_the_months_turned_final(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["updated"], run, symlinks=True)
    a = {n: _nc(run, n) for n in NC}
    update(_cfg(run, world["C"] / "era5", world["C"]))
    for n in NC:
        b = _nc(run, n)
        assert b.sizes["time"] == a[n].sizes["time"]
        same = [np.array_equal(x, y, equal_nan=True) for x, y in zip(a[n]["twsa"].values, b["twsa"].values,
                                                                      strict=True)]
        assert [i for i, s in enumerate(same) if not s] == list(range(len(same) - 3, len(same)))
        assert not b["preliminary"].values.any()
    state = tree_state(run / "cube", run / "recon", run / "products")
    assert update(_cfg(run, world["C"] / "era5", world["C"]))["written"] == {}  # nothing new: nothing touched
    assert tree_state(run / "cube", run / "recon", run / "products") == state


def _cfg(run: Path, era5_dir: Path, twin: Path | None = None):
    """The update config of ``run`` reading ERA5 from ``era5_dir``, the other inputs from ``twin``."""
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("update", overrides=[*_upd(run, twin or run / "twin"), f"data.era5_dir={era5_dir}"])


def _edit(src: Path, dst: Path, fn) -> None:
    with xr.open_dataset(src) as ds:
        out = fn(ds.load())
    out.to_netcdf(dst)


def _files_of(folder: Path, year: int) -> list[Path]:
    return sorted(folder.glob(f"*_{year}.nc"))


@pytest.mark.parametrize("fault", ["gap", "grid", "units", "variable", "identity"])
def test_files_that_do_not_continue_the_record_are_refused_before_any_write(world, tmp_path, fault):
    run = tmp_path / "run"
    shutil.copytree(world["before"], run, symlinks=True)
    era5 = run / "twin" / "era5_new"  # inside the twin's folder: twin files (data=twin), as the run's other inputs
    era5.mkdir()
    b = world["B"] / "era5"
    if fault == "gap":  # 2012 missing: only 2012-10.. of a later download
        for f in _files_of(b, 2012):
            _edit(f, era5 / f.name, lambda ds: ds.isel(valid_time=slice(9, None)))
        match = r"does not continue the cube .*: the cube ends 2011-12, the files' next month is 2012-10 \(missing 2012-01"
    elif fault == "grid":  # another grid/area setting
        for f in _files_of(b, 2012):
            _edit(f, era5 / f.name, lambda ds: ds.isel(latitude=slice(0, -1)))
        match = r"ERA5 grid .* differs from the one the cube .* was built from"
    elif fault == "units":  # tp in mm day-1: readable and converted, but not the data set the record came from
        for f in _files_of(b, 2012):
            _edit(f, era5 / f.name, lambda ds: ds.assign(tp=(ds["tp"] * 1000.0).assign_attrs(
                {**ds["tp"].attrs, "units": "mm day-1"})) if "tp" in ds else ds)
        match = r"variable 'tp' in units 'mm day-1', the cube .* was built from 'm'"
    elif fault == "variable":  # a download without snow depth
        for f in _files_of(b, 2012):
            _edit(f, era5 / f.name, lambda ds: ds.drop_vars([v for v in ("sd",) if v in ds]))
        match = r"variable 'sd': expected the variable to be present; found it is missing"
    else:  # the 2011 file of another product: same grid and units, other numbers for a month the cube holds
        for f in _files_of(b, 2011):
            _edit(f, era5 / f.name, lambda ds: ds.assign(tp=ds["tp"] * 1.3) if "tp" in ds else ds)
        for f in _files_of(b, 2012):
            shutil.copy(f, era5 / f.name)
        match = r"variable 'tp' of 2011-09 differs from the cube's by up to .*not a continuation of the record"
    state = tree_state(run / "cube", run / "recon", run / "products")
    with pytest.raises(InputFileError, match=match) as err:
        update(_cfg(run, era5))
    assert str(era5) in str(err.value)  # the message names the files
    assert tree_state(run / "cube", run / "recon", run / "products") == state  # nothing written
    assert journal_for(_cfg(run, era5)).pending() is None


def test_new_downloads_beside_the_old_ones_give_the_same_update(world, tmp_path):
    """The real routine: the old yearly files stay (2011 with its ERA5T months), the update's downloads sit
    beside them under their own names (2011 again, now final, and 2012): final ERA5 wins where both hold a month."""
    run = tmp_path / "run"
    shutil.copytree(world["before"], run, symlinks=True)
    era5 = run / "twin" / "era5_all"  # inside the twin's folder: twin files (data=twin)
    shutil.copytree(run / "twin" / "era5", era5)
    for f in [*_files_of(world["B"] / "era5", 2011), *_files_of(world["B"] / "era5", 2012)]:
        shutil.copy(f, era5 / f.name.replace(".nc", "_download.nc"))
    out = update(_cfg(run, era5, world["B"]))  # LAI, SIF, land cover and GRACE: B's files, as the reference
    assert out["plan"]["recomputed"] == ["2011-10", "2011-11", "2011-12"]
    got, want = _numbers(run), _numbers(world["updated"])
    for k in ("predictors", NC[0] + ":preliminary"):
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    for k in ("recon", NC[0], NC[1]):
        np.testing.assert_allclose(got[k], want[k], atol=1e-5, rtol=0, err_msg=k)


@pytest.mark.reliability
def test_sigkill_at_several_points_then_the_same_command_gives_the_uninterrupted_result(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["before"], run, symlinks=True)
    previous = _numbers(world["before"])
    args = _upd(run, world["B"])
    for point in ("cube", "recon", "publish", "swap", "commit"):
        proc = _run([str(CHILD), point, *args], ok=False)
        assert proc.returncode == -9, f"{point}: {proc.returncode}\n{proc.stderr[-3000:]}"
        assert journal_for(_cfg(run, world["B"])).pending() is not None
        # the products folder is complete whatever the moment: the previous set, or the new one once swapped in
        check_products(run / "products")
        if point in ("cube", "recon", "publish"):
            now = _numbers(run)
            for name in NC:
                np.testing.assert_array_equal(now[name], previous[name], strict=True)
    _run([str(CHILD), "none", *args])
    assert journal_for(_cfg(run, world["B"])).pending() is None
    got, want = _numbers(run), _numbers(world["updated"])
    assert got.keys() == want.keys()
    for k in got:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k, strict=True)
    leftovers = [p.name for p in run.rglob("*") if ".snapshot" in p.name or p.name.endswith((".update", ".lock"))
                 or ".rollback-" in p.name or ".tmp-" in p.name]
    assert leftovers == []


def test_products_keep_their_fits_and_an_update_reuses_them(world):
    """The detrended product carries the trend + seasonal fit it removed (users rebuild twsa from it), the twsa
    product the unforced rate it added; an update reuses both unchanged (it does not refit from the record), and the
    reconstruction keeps the target base's memories at the first ERA5T month for the next update."""
    from gtws_dl.seasonal import decimal_year, design_matrix

    before, updated = world["before"], world["updated"]
    twsa, dd = _nc(before, NC[0]), _nc(before, NC[1])
    coef = dd["decomposition_coefficients"]
    assert coef.attrs["coefficient_names"].split() == ["const", "tau", "cos1", "sin1", "cos2", "sin2"]
    X, _, _ = design_matrix(decimal_year(dd["time"].values), t_ref=float(coef.attrs["t_ref"]), n_harmonics=2)
    fit = np.einsum("tp,phw->thw", X, coef.values)
    land = twsa["land_mask"].values.astype(bool)
    diff = (twsa["twsa"].values - dd["twsa"].values - fit)[:, land]
    assert np.nanmax(np.abs(diff)) < 1e-3  # mm: float32 products
    assert np.isfinite(coef.values[:, land]).all() and np.isnan(coef.values[:, ~land]).all()
    assert twsa["unforced_trend"].attrs["units"] == "mm yr-1" and np.isfinite(twsa["unforced_trend"].values[land]).all()
    after_twsa, after_dd = _nc(updated, NC[0]), _nc(updated, NC[1])
    np.testing.assert_array_equal(after_dd["decomposition_coefficients"].values, coef.values)
    np.testing.assert_array_equal(after_twsa["unforced_trend"].values, twsa["unforced_trend"].values)
    state = zarr.open_group(updated / "recon" / "csr.zarr", mode="r")["memory_state"]
    times = pd.DatetimeIndex(after_twsa["time"].values).to_period("M")
    assert times[int(state.attrs["month_index"])] == pd.Period("2012-10", "M")  # the first ERA5T month


def test_the_era5_file_index_rereads_only_changed_files(world, tmp_path, monkeypatch):
    from gtws_dl.cube import file_index

    files = []
    for f in _files_of(world["B"] / "era5", 2012)[:2]:
        shutil.copy2(f, tmp_path / f.name)
        files.append(tmp_path / f.name)
    calls = []
    real = file_index.era5_io.file_months
    monkeypatch.setattr(file_index.era5_io, "file_months", lambda p: calls.append(p) or real(p))
    first = file_index.era5_file_months(files, tmp_path)
    assert len(calls) == 2 and (tmp_path / file_index.INDEX).exists()
    again = file_index.era5_file_months(files, tmp_path)
    assert len(calls) == 2 and all(first[f].equals(again[f]) for f in files)  # from the index
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new download over the old name
    file_index.era5_file_months(files, tmp_path)
    assert calls[2:] == [files[0]]
    (tmp_path / file_index.INDEX).write_text("{not json")  # a damaged index is rebuilt, not trusted
    assert file_index.era5_file_months(files, tmp_path)[files[1]].equals(first[files[1]]) and len(calls) == 5
