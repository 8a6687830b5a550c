"""Bad-input corpus: every case ends in ONE clear error (type + message naming the thing and the fix) and touches
no output. Reader cases already in tests/test_io_*.py are not repeated here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bad_inputs.builders import (
    SYN_CHANNELS,
    copy_cube,
    edit_manifest,
    infer_cfg,
    module_for,
    save_checkpoint,
    train_cfg,
    tree_state,
    write_landcover_without_class,
    write_mascon_no_time_units,
    write_mascon_station_layout,
)

from gtws_dl.checkpoint import CheckpointMismatchError, InvalidCheckpointError, load_checkpoint
from gtws_dl.config import ConfigError, validate_config
from gtws_dl.cube.store import CubeError, CubeNotFoundError, check_cube_targets
from gtws_dl.cube.writer import CubeWriter
from gtws_dl.diskspace import DiskSpaceError, OutputNotWritableError
from gtws_dl.grid import GridError
from gtws_dl.inference import infer
from gtws_dl.io.errors import InputFileError

pytestmark = pytest.mark.reliability


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def good_ckpt(synthetic_cube, tmp_path_factory):
    return save_checkpoint(module_for(synthetic_cube["dir"]), tmp_path_factory.mktemp("ckpt") / "good.ckpt")


@pytest.fixture
def run_dir(tmp_path):
    """An output directory holding the products of an earlier run: a refused run must leave it as it was."""
    out = tmp_path / "out"
    (out / "products").mkdir(parents=True)
    (out / "products" / "gtws_dl_twsa_csr.nc").write_bytes(b"earlier product")
    (out / "products" / "manifest.json").write_text("{}")
    return out


def refused(fn, exc, match, *watch: Path):
    """``fn()`` raises ``exc`` matching ``match`` and every path in ``watch`` is byte-identical afterwards."""
    before = tree_state(*watch)
    with pytest.raises(exc, match=match) as info:
        fn()
    assert tree_state(*watch) == before, "a refused run must not touch its outputs"
    return info.value


def _infer_refused(cfg, exc, match, out: Path):
    cube = Path(cfg.paths.cube_dir)
    return refused(lambda: infer(cfg), exc, match, out, cube)


# ---------------------------------------------------------------------------------------- config (Hydra)
@pytest.mark.parametrize("override, match", [
    ("grid.res=abc", r"config key grid\.res='abc': expected a cell size in degrees"),
    ("grid.bbox=[0,30,40]", r"config key grid\.bbox=\[0, 30, 40\]: expected \[lon0, lon1, lat0, lat1\]"),
    ("device=gpu", r"config key device='gpu': expected one of \['auto', 'cpu', 'cuda'\]"),
    ("batch_windows=0", r"config key batch_windows=0: expected an integer >= 1"),
    ("tile=[64]", r"config key tile=\[64\]: expected \[lat cells, lon cells\]"),
])
def test_infer_config_of_the_wrong_type_names_the_key(override, match, synthetic_cube, good_ckpt, run_dir):
    cfg = infer_cfg(run_dir, synthetic_cube["dir"], good_ckpt, override)
    _infer_refused(cfg, ConfigError, match, run_dir)


@pytest.mark.parametrize("override, exc, match", [
    ("datamodule.window=x", ConfigError, r"config key datamodule\.window='x': expected a number of months"),
    ("datamodule.warmup=12", ConfigError, r"datamodule\.warmup=12 must be smaller than datamodule\.window=12"),
    ("datamodule.batch_size=2.5", ConfigError, r"datamodule\.batch_size=2\.5: expected an integer >= 1"),
    ("model.optimizer.lr=fast", ConfigError, r"model\.optimizer\.lr='fast': expected a learning rate"),
    ("grid.res=0.7", GridError, r"grid\.res=0\.7 does not divide the longitude span 360.*choose a resolution"),
])
def test_train_config_of_the_wrong_type_names_the_key(override, exc, match, synthetic_cube, tmp_path):
    cfg = train_cfg(tmp_path / "out", synthetic_cube["dir"], override)
    refused(lambda: validate_config(cfg), exc, match, tmp_path / "out")


def test_train_refuses_a_bad_override_before_creating_its_output(synthetic_cube, tmp_path):
    from gtws_dl.training import train

    cfg = train_cfg(tmp_path / "out", synthetic_cube["dir"], "datamodule.window=x")
    refused(lambda: train(cfg), ConfigError, r"datamodule\.window='x'", tmp_path / "out")


def test_datamodule_refuses_warmup_not_below_window(synthetic_cube):
    from gtws_dl.data import CubeDataModule

    with pytest.raises(ValueError, match=r"warmup=12 must be smaller than .*window=12"):
        CubeDataModule(str(synthetic_cube["dir"]), ["csr"], window=12, warmup=12)


# ------------------------------------------------------------------------------------------ checkpoints
def _junk(kind: str, path: Path, good: Path) -> Path:
    import lightning
    import torch

    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "numpy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "plain_dict":
        torch.save({"weights": torch.zeros(2)}, path)
    elif kind == "other_model":
        torch.save({"state_dict": {"layer.weight": torch.zeros(2)}, "hyper_parameters": {"lr": 0.1},
                    "pytorch-lightning_version": lightning.__version__}, path)
    return path


@pytest.mark.parametrize("kind, match", [
    ("empty", r"empty\.ckpt is not a gtws-dl ReconstructionModule checkpoint: the file is empty"),
    ("text", r"text\.ckpt is not a gtws-dl .*torch\.load fails .*truncated, corrupt or of another kind"),
    ("truncated", r"truncated\.ckpt is not a gtws-dl .*torch\.load fails"),
    ("numpy", r"numpy\.ckpt is not a gtws-dl .*torch\.load fails"),
    ("plain_dict", r"plain_dict\.ckpt is not a gtws-dl .*expected a Lightning checkpoint .*found \['weights'\]"),
    ("other_model", r"other_model\.ckpt is not a gtws-dl .*checkpoint of another model: its hyper_parameters lack"),
])
def test_a_file_that_is_not_a_checkpoint_is_refused(kind, match, good_ckpt, synthetic_cube, tmp_path, run_dir):
    bad = _junk(kind, tmp_path / f"{kind}.ckpt", good_ckpt)
    err = _infer_refused(infer_cfg(run_dir, synthetic_cube["dir"], bad), InvalidCheckpointError, match, run_dir)
    assert "ckpt_path=" in str(err)  # the fix


def test_missing_checkpoint(synthetic_cube, tmp_path, run_dir):
    cfg = infer_cfg(run_dir, synthetic_cube["dir"], tmp_path / "nope.ckpt")
    _infer_refused(cfg, FileNotFoundError, r"nope\.ckpt does not exist; train first", run_dir)


def test_checkpoint_without_normalisation(synthetic_cube, tmp_path, run_dir):
    m = module_for(synthetic_cube["dir"])
    m.hparams.normalisation = {k: v for k, v in m.hparams.normalisation.items() if k not in ("mean", "std")}
    bad = save_checkpoint(m, tmp_path / "nonorm.ckpt")
    _infer_refused(infer_cfg(run_dir, synthetic_cube["dir"], bad), InvalidCheckpointError,
                   r"nonorm\.ckpt .*normalisation statistics lack \['mean', 'std'\]", run_dir)


def test_checkpoint_from_another_grid(synthetic_cube, tmp_path, run_dir):
    bad = save_checkpoint(module_for(synthetic_cube["dir"], res=5.0, shape=(36, 72)), tmp_path / "g5.ckpt")
    _infer_refused(infer_cfg(run_dir, synthetic_cube["dir"], bad), CheckpointMismatchError,
                   r"g5\.ckpt: trained on a 5\.0 deg grid of shape \[36, 72\].*cube is 10\.0 deg.*grid\.\*", run_dir)


def test_checkpoint_from_another_model_with_other_channels(synthetic_cube, tmp_path, run_dir):
    bad = save_checkpoint(module_for(synthetic_cube["dir"], channels=[*SYN_CHANNELS[:3], "t2m"]),
                          tmp_path / "ch.ckpt")
    _infer_refused(infer_cfg(run_dir, synthetic_cube["dir"], bad), CheckpointMismatchError,
                   r"ch\.ckpt: trained on predictor channels .*differences: \['static', 't2m'\]", run_dir)


def test_checkpoint_of_other_targets(synthetic_cube, tmp_path, run_dir):
    bad = save_checkpoint(module_for(synthetic_cube["dir"], targets=("jpl",)), tmp_path / "jpl.ckpt")
    _infer_refused(infer_cfg(run_dir, synthetic_cube["dir"], bad), CheckpointMismatchError,
                   r"predicts targets \['jpl'\], but target=csr asks for \['csr'\]; pass the checkpoint", run_dir)


def test_normalisation_mismatched_with_the_cube(synthetic_cube, tmp_path, run_dir):
    """Same channels and grid, but the cube's predictor 'tp' now holds other numbers (e.g. other units)."""
    cube = copy_cube(synthetic_cube["dir"], tmp_path / "cube")
    edit_manifest(cube, lambda m: m["stats"]["mean"].__setitem__(0, m["stats"]["mean"][0] + 5.0))
    ckpt = save_checkpoint(module_for(synthetic_cube["dir"]), tmp_path / "c.ckpt")
    _infer_refused(infer_cfg(run_dir, cube, ckpt), CheckpointMismatchError,
                   r"c\.ckpt: the cube's normalisation statistics for predictor 'tp' .*rebuild the cube", run_dir)


# ------------------------------------------------------------------------------------------------ cubes
@pytest.mark.parametrize("case, exc, match", [
    ("no_manifest", CubeNotFoundError, r"cube: no manifest\.json .*not finished; run `python -m gtws_dl\.ingest`"),
    ("old_version", CubeError, r"cube format version 0 != 1 .*written by gtws-dl 0\.0\.1.*force=true"),
    ("corrupt_manifest", CubeError, r"manifest\.json: the cube manifest is not valid JSON .*rebuild it"),
    ("no_stats", CubeError, r"manifest lacks \['stats'.*normalisation statistics.*rebuild it"),
    ("stats_length", CubeError, r"normalisation statistics hold 3 means .* for 4 channels"),
    ("no_predictors", CubeError, r"predictors\.zarr: missing or unreadable .*rebuild it"),
    ("shape", CubeError, r"predictors\.zarr: shape \[216, 4, 18, 36\] .*does not match its manifest "
                         r"\[216, 5, 18, 36\]"),
])
def test_a_bad_cube_is_refused(case, exc, match, synthetic_cube, good_ckpt, tmp_path, run_dir):
    cube = copy_cube(synthetic_cube["dir"], tmp_path / "cube")
    if case == "no_manifest":
        (cube / "manifest.json").unlink()
    elif case == "old_version":
        edit_manifest(cube, lambda m: m.update(cube_format_version=0, code_version="0.0.1"))
    elif case == "corrupt_manifest":
        (cube / "manifest.json").write_text('{"cube_format_version": 1, "grid"')
    elif case == "no_stats":
        edit_manifest(cube, lambda m: m.pop("stats"))
    elif case == "stats_length":
        edit_manifest(cube, lambda m: m["stats"]["mean"].pop())
    elif case == "no_predictors":
        shutil.rmtree(cube / "predictors.zarr")
    elif case == "shape":
        edit_manifest(cube, lambda m: (m["channels"].append("x"), m["stats"]["mean"].append(0),
                                       m["stats"]["std"].append(1)))
    _infer_refused(infer_cfg(run_dir, cube, good_ckpt), exc, match, run_dir)


def test_cube_on_another_grid_than_the_config(synthetic_cube, good_ckpt, run_dir):
    cfg = infer_cfg(run_dir, synthetic_cube["dir"], good_ckpt, "grid.res=5")
    _infer_refused(cfg, ValueError, r"cube in .* is on a 10\.0 deg grid .*re-run `python -m gtws_dl\.ingest`", run_dir)


def test_target_centre_the_cube_lacks(tmp_path):
    from conftest import make_synthetic_cube

    make_synthetic_cube(tmp_path / "cube", centres=("jpl", "csr"), start="2000-01", end="2011-12")
    with pytest.raises(CubeError, match=r"holds targets \['jpl', 'csr'\]; requested \['gsfc'\].*data\.grace\.gsfc"):
        check_cube_targets(tmp_path / "cube", ["gsfc"])
    from gtws_dl.data import CubeDataModule

    with pytest.raises(CubeError, match=r"holds targets \['jpl', 'csr'\]; requested \['gsfc'\]"):
        CubeDataModule(str(tmp_path / "cube"), ["gsfc"], window=12, warmup=6).setup()


def test_datamodule_names_the_fix_for_a_missing_centre(tmp_path):
    from conftest import make_synthetic_cube

    from gtws_dl.data import CubeDataModule

    make_synthetic_cube(tmp_path / "cube", centres=("jpl",), start="2000-01", end="2011-12")
    with pytest.raises(ValueError, match=r"requested \['gsfc'\].*data\.grace\.gsfc"):
        CubeDataModule(str(tmp_path / "cube"), ["gsfc"], window=12, warmup=6).setup()


def test_predictor_nan_over_land_leaves_the_previous_cube_intact(synthetic_cube, tmp_path):
    from gtws_dl.cube.store import open_cube

    cube = copy_cube(synthetic_cube["dir"], tmp_path / "cube")
    grid, times, land = synthetic_cube["grid"], synthetic_cube["times"], synthetic_cube["land"]
    before = tree_state(cube)
    w = CubeWriter(cube, grid, times[:24], SYN_CHANNELS, land_fraction=land.astype(np.float32),
                   stats_period=("1995-01", "1996-12"))
    block = np.ones((24, 4, *grid.shape), np.float32)
    block[13, 2][land] = np.nan
    with pytest.raises(InputFileError, match=r"predictor 'cos_phase' has NaN/Inf over land in 1996-02 .*coverage"):
        w.write_block(0, block)
    assert tree_state(cube) == before  # manifest kept, no temp store left
    open_cube(cube)


def test_cube_writer_refuses_a_full_disk(synthetic_cube, tmp_path, monkeypatch):
    import shutil as _sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_sh, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    grid, times, land = synthetic_cube["grid"], synthetic_cube["times"], synthetic_cube["land"]
    with pytest.raises(DiskSpaceError, match=r"cube .* needs up to .* \(estimate\) but only 1\.0 MB is free.*"
                                             r"paths\.cube_dir"):
        CubeWriter(tmp_path / "cube", grid, times, SYN_CHANNELS, land_fraction=land.astype(np.float32),
                   stats_period=("2002-04", "2009-12"))
    assert not (tmp_path / "cube").exists()


# ------------------------------------------------------------------------------------------------ outputs
def test_products_dir_is_a_file(synthetic_cube, good_ckpt, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "products").write_text("a file in the way")
    cfg = infer_cfg(out, synthetic_cube["dir"], good_ckpt)
    _infer_refused(cfg, OutputNotWritableError,
                   r"products directory .*products exists but is a file.*paths\.products_dir", out)


def test_recon_dir_under_a_file(synthetic_cube, good_ckpt, tmp_path, run_dir):
    (tmp_path / "blocker").write_text("x")
    cfg = infer_cfg(run_dir, synthetic_cube["dir"], good_ckpt, f"paths.recon_dir={tmp_path}/blocker/recon")
    _infer_refused(cfg, OutputNotWritableError,
                   r"reconstruction directory .*cannot be created: .*blocker is a file.*paths\.recon_dir", run_dir)


def test_infer_refuses_a_full_disk_before_reconstructing(synthetic_cube, good_ckpt, run_dir, monkeypatch):
    import shutil as _sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_sh, "disk_usage", lambda p: usage(10**9, 10**9 - 10**5, 10**5))
    cfg = infer_cfg(run_dir, synthetic_cube["dir"], good_ckpt)
    _infer_refused(cfg, DiskSpaceError, r"reconstruction .* needs up to .* \(estimate\) but only 100\.0 KB", run_dir)


# ------------------------------------------------------------------------------ readers (not in test_io_*)
def _era5_builders():
    import test_io_era5 as era5

    return era5


def test_era5_over_europe_but_grid_bbox_in_asia(tmp_path):
    """A regional ERA5 download that misses grid.bbox: refused at ingest naming the variable and coverage."""
    import test_io_mascon as masc

    from gtws_dl.cube.build import CubeBuilder, CubeSpec
    from gtws_dl.grid import Grid

    era5 = _era5_builders()
    (tmp_path / "era5").mkdir()
    lat, lon = np.arange(70.0, 34.0, -5.0), np.arange(-10.0, 31.0, 5.0)  # Europe, north first
    era5.write_new(tmp_path / "era5" / "eu.nc", ["t2m", "tp", "e"], era5.months("2000-01", 12), lat=lat, lon=lon)
    masc.write_mascon(tmp_path / "jpl.nc", masc.month_spans("2000-01", 12), np.arange(12.0))
    spec = CubeSpec(era5=str(tmp_path / "era5"), grace={"jpl": str(tmp_path / "jpl.nc")}, start="2000-01",
                    end="2000-12", variables=("t2m", "tp", "e"), stats_period=("2000-01", "2000-12"),
                    baseline=("2000-01", "2000-12"))
    builder = CubeBuilder(spec, Grid(5.0, (60.0, 90.0, 20.0, 50.0)), tmp_path / "cube")
    refused(lambda: builder.build(progress=False), InputFileError,
            r"eu\.nc: variable 't2m': expected coverage of the grid domain lon 60\.\.90, lat 20\.\.50 \(grid\.bbox\); "
            r"found coverage lon -12\.5\.\.32\.5, lat 32\.5\.\.72\.5\. Download data\.era5_dir for the grid\.bbox area",
            tmp_path / "cube")


def test_grace_glob_matching_nothing(tmp_path):
    from gtws_dl.cube.build import CubeBuilder, CubeSpec
    from gtws_dl.grid import Grid

    spec = CubeSpec(era5=str(tmp_path), grace={"csr": str(tmp_path / "CSR_*.nc")})
    (tmp_path / "x.nc").write_text("")
    builder = CubeBuilder(spec, Grid(30.0), tmp_path / "cube")
    refused(lambda: builder.build(progress=False), InputFileError,
            r"GRACE csr \(data\.grace\.csr\): no file matches .*CSR_\*\.nc.*check the path", tmp_path / "cube")


@pytest.mark.parametrize("case, match", [
    ("empty_dir", r"era5: expected a directory holding \*\.nc files; found no \*\.nc file in it"),
    ("unknown_name", r"variable 't2mm': expected an ERA5 short name of"),
    ("no_latlon", r"flat\.nc: expected dims latitude and longitude"),
    ("different_months", r"tp\.nc: variable 'tp': expected the same months as 't2m' \(2000-01 \.\. 2000-06 "
                         r"\(6 months\)\); found 2000-01 \.\. 2000-03 \(3 months\)\. pass start= and end="),
])
def test_era5_reader_cases(case, match, tmp_path):
    import netCDF4

    from gtws_dl.io.era5 import open_era5

    era5 = _era5_builders()
    d = tmp_path / "era5"
    d.mkdir()
    names = ["t2m"]
    if case == "unknown_name":
        era5.write_new(d / "a.nc", ["t2m"], era5.months())
        names = ["t2mm"]
    elif case == "no_latlon":
        with netCDF4.Dataset(d / "flat.nc", "w") as nc:
            nc.createDimension("valid_time", 1)
            nc.createDimension("cell", 3)
            t = nc.createVariable("valid_time", "i8", ("valid_time",))
            t.units, t.calendar = "seconds since 1970-01-01", "proleptic_gregorian"
            t[:] = [946684800]
            x = nc.createVariable("t2m", "f4", ("valid_time", "cell"))
            x.units = "K"
            x[:] = np.ones((1, 3))
    elif case == "different_months":
        era5.write_new(d / "t2m.nc", ["t2m"], era5.months("2000-01", 6))
        era5.write_new(d / "tp.nc", ["tp"], era5.months("2000-01", 3))
        names = ["t2m", "tp"]
    with pytest.raises(InputFileError, match=match):
        open_era5(d, names)


@pytest.mark.parametrize("case, match", [
    ("no_file", r"nothere\.nc: expected an existing NetCDF file; found no such file"),
    ("no_time_units", r"nounits\.nc: variable 'time': expected a CF 'units' attribute"),
    ("no_latlon", r"station\.nc: variable 'lwe_thickness': expected dims lat and lon; found dims \('time', 'mascon'\)"),
    ("bad_centre", r"centre must be one of .*got 'esa'"),
])
def test_mascon_reader_cases(case, match, tmp_path):
    from gtws_dl.io.mascon import open_mascon

    path = {"no_file": tmp_path / "nothere.nc", "no_time_units": write_mascon_no_time_units(tmp_path / "nounits.nc"),
            "no_latlon": write_mascon_station_layout(tmp_path / "station.nc"),
            "bad_centre": write_mascon_no_time_units(tmp_path / "x.nc")}[case]
    with pytest.raises(ValueError, match=match):
        open_mascon(path, "esa" if case == "bad_centre" else "jpl")


def test_landcover_without_class_dimension(tmp_path):
    from gtws_dl.io.vegetation import open_landcover

    with pytest.raises(InputFileError, match=r"lc\.nc: variable 'land_cover_fraction': expected a 'class' dimension"):
        open_landcover(write_landcover_without_class(tmp_path / "lc.nc"))


def test_load_checkpoint_accepts_a_good_one(good_ckpt):
    m = load_checkpoint(good_ckpt)
    assert m.hparams.normalisation["channels"] == SYN_CHANNELS
    assert json.loads(json.dumps(m.hparams.normalisation))["window"] == 12
