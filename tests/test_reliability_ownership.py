"""Ownership of outputs (issue 17): one writer per output, the twin keeps a cube's inputs, SIGTERM and a full disk
leave no temp store and name the path."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from hydra import compose, initialize_config_dir

from gtws_dl.config import conf_dir
from gtws_dl.cube.writer import CubeWriter
from gtws_dl.diskspace import DiskSpaceError
from gtws_dl.grid import Grid
from gtws_dl.ingest import ingest
from gtws_dl.io.errors import InputFileError
from gtws_dl.lock import InputsInUseError, OutputLockedError, remove_tree
from gtws_dl.post.products import write_twsa_product
from gtws_dl.recon_store import BlockWriter, create_template
from gtws_dl.twin import __main__ as twin_cmd
from gtws_dl.twin.config import TwinConfig
from gtws_dl.twin.pipeline import TWIN_VERSION

pytestmark = pytest.mark.reliability
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TWIN = ["grid.res=30", "twin.start=2004-01", "twin.end=2009-12", "twin.progress=false"]
INGEST = ["grid.res=30", "data.start=2004-01", "data.end=2009-12", "data.stats_period=[2004-01,2009-12]",
          "data.chunk_months=12"]


def _compose(name: str, *overrides: str):
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def _temps(*dirs: Path) -> list[str]:
    return [p.name for d in dirs if d.is_dir() for p in d.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


class _Holder:
    """A live child process holding the writer lock of ``path``."""

    def __init__(self, path: Path):
        code = ("import sys, time; from gtws_dl.lock import OutputLock; OutputLock(sys.argv[1]).__enter__(); "
                "print('locked', flush=True); time.sleep(60)")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True,
                                     env=ENV, cwd=REPO)
        assert self.proc.stdout.readline().strip() == "locked"

    def __enter__(self):
        return self.proc.pid

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait(10)


def test_second_ingest_into_one_folder_is_refused_naming_pid_and_host(tmp_path):
    cfg = _compose("ingest", f"paths.output_dir={tmp_path}", "grid.res=30")
    with _Holder(tmp_path / "cube") as pid:
        with pytest.raises(OutputLockedError, match=rf"being written by process {pid} on {socket.gethostname()}"):
            ingest(cfg)
    assert not (tmp_path / "cube").exists()


def test_second_twin_into_one_folder_is_refused(tmp_path):
    cfg = _compose("twin", f"paths.output_dir={tmp_path}", *TWIN)
    with _Holder(tmp_path / "twin") as pid:
        with pytest.raises(OutputLockedError, match=rf"process {pid} on"):
            twin_cmd.run(cfg)


def _cube_built_from(tmp_path: Path) -> Path:
    """A twin folder holding one file and a cube manifest that lists it as an input (path -> sha256)."""
    era5 = tmp_path / "twin" / "era5"
    era5.mkdir(parents=True)
    f = era5 / "era5_2000.nc"
    f.write_bytes(b"data")
    (tmp_path / "cube").mkdir()
    (tmp_path / "cube" / "manifest.json").write_text(json.dumps({"inputs": {str(f): "ab" * 32}}))
    return f


def test_twin_refuses_to_regenerate_the_inputs_of_a_cube_unless_told(tmp_path, monkeypatch):
    f = _cube_built_from(tmp_path)
    calls = []
    monkeypatch.setattr(twin_cmd, "generate", lambda *a, **k: calls.append(a) or {"files": []})
    # another grid than the twin in the folder (its manifest has another fingerprint): not silently regenerated
    (tmp_path / "twin" / "twin_manifest.json").write_text(json.dumps({"fingerprint": "grid-2", "files": []}))
    cfg = _compose("twin", f"paths.output_dir={tmp_path}", *TWIN)
    with pytest.raises(InputsInUseError, match=rf"cube {tmp_path / 'cube'} was built from 1 .*{f.name}.*"
                                               r"twin\.overwrite=true"):
        twin_cmd.run(cfg)
    assert not calls and f.read_bytes() == b"data"
    twin_cmd.run(_compose("twin", f"paths.output_dir={tmp_path}", *TWIN, "twin.overwrite=true"))
    assert len(calls) == 1


def test_a_complete_twin_of_the_same_config_is_reused_over_a_cube(tmp_path):
    _cube_built_from(tmp_path)
    cfg = _compose("twin", f"paths.output_dir={tmp_path}", *TWIN)
    tc = TwinConfig.from_mapping(cfg.twin)
    fp = tc.fingerprint({"grid": [30.0, None], "twin_version": TWIN_VERSION})
    man = {"fingerprint": fp, "files": ["era5/era5_2000.nc"]}
    (tmp_path / "twin" / "twin_manifest.json").write_text(json.dumps(man))
    assert twin_cmd.run(cfg) == man  # complete: skipped, no refusal and nothing written


def test_twin_removes_temp_files_of_a_dead_run(tmp_path, monkeypatch):
    dead = tmp_path / "twin" / "era5" / "era5_2000.nc.tmp-999999999"
    dead.parent.mkdir(parents=True)
    dead.write_bytes(b"half")
    monkeypatch.setattr(twin_cmd, "generate", lambda *a, **k: {})
    twin_cmd.run(_compose("twin", f"paths.output_dir={tmp_path}", *TWIN))
    assert not dead.exists()


@pytest.fixture(scope="module")
def tiny_twin(tmp_path_factory):
    out = tmp_path_factory.mktemp("own")
    twin_cmd.run(_compose("twin", f"paths.output_dir={out}", *TWIN))
    return out


INGEST_CHILD = """
import sys, time
from pathlib import Path
import gtws_dl.cube.writer as W
mark = Path(sys.argv[1])
_write = W.CubeWriter.write_block
def slow(self, i0, block, *a, **k):
    _write(self, i0, block, *a, **k)
    mark.write_text(str(self._tmp))
    time.sleep(60)
W.CubeWriter.write_block = slow
from gtws_dl.cli import main
sys.exit(main(["ingest", *sys.argv[2:]]))
"""


def test_sigterm_during_ingest_leaves_no_temp_store_and_the_next_run_finishes(tiny_twin, tmp_path):
    out = tiny_twin
    mark = tmp_path / "mark"
    args = [*INGEST, f"paths.output_dir={out}", f"paths.cube_dir={tmp_path / 'cube'}"]
    proc = subprocess.Popen([sys.executable, "-c", INGEST_CHILD, str(mark), *args], cwd=REPO, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not mark.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < 120, "the child never wrote a block"
        time.sleep(0.05)
    assert Path(mark.read_text()).exists()  # the temp store is there while it writes
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    cube = tmp_path / "cube"
    assert _temps(cube) == [] and not (cube / "manifest.json").exists()
    assert not (tmp_path / "cube.lock").exists()
    manifest = ingest(_compose("ingest", *args))  # the same command again finishes
    assert (cube / "manifest.json").exists() and _temps(cube) == [] and manifest["time"]["n"] == 72


def _writer(out: Path) -> CubeWriter:
    grid = Grid(30.0)
    times = pd.date_range("2002-01", "2003-12", freq="MS")
    return CubeWriter(out, grid, times, ["a"], land_fraction=np.ones(grid.shape, np.float32),
                      stats_period=("2002-01", "2003-12"))


def test_disk_full_while_writing_the_cube_is_a_disk_space_error_naming_the_path(tmp_path, monkeypatch):
    w = _writer(tmp_path / "cube")

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr.Array, "__setitem__", full)
    with pytest.raises(DiskSpaceError, match=rf"cube {w._tmp}: the disk filled up.*paths\.cube_dir"):
        w.write_block(0, np.ones((12, 1, *w.grid.shape), np.float32))
    w.abort()
    assert _temps(tmp_path / "cube") == []


def test_nan_over_land_names_the_grid_and_its_keys(tmp_path):
    w = _writer(tmp_path / "cube")
    block = np.ones((12, 1, *w.grid.shape), np.float32)
    block[3, 0, 2, 2] = np.nan
    with pytest.raises(InputFileError, match=r"30.0 deg.*grid \(grid\.res=30 grid\.bbox=None\).*grid\.res/grid\.bbox"):
        w.write_block(0, block)


def test_disk_full_in_the_reconstruction_store_names_the_store(tmp_path, monkeypatch):
    path = tmp_path / "recon" / "csr.zarr"
    g = Grid(30.0)
    create_template(path, targets=["csr"], times=pd.date_range("2002-01", periods=12, freq="MS"), lat=g.lat,
                    lon=g.lon, chunk_months=12)
    bw = BlockWriter(path)
    monkeypatch.setattr(zarr.Array, "__setitem__", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(DiskSpaceError, match=rf"reconstruction {path}: the disk filled up.*paths\.recon_dir"):
        bw.write(0, np.zeros((1, 12, *g.shape), np.float32))


def test_disk_full_while_writing_a_product_names_it_and_leaves_no_temp(tmp_path, monkeypatch):
    g = Grid(30.0)
    times = pd.date_range("2002-01", periods=12, freq="MS")

    def full(self, path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    path = tmp_path / "products" / "gtws_dl_twsa_csr.nc"
    with pytest.raises(DiskSpaceError, match=rf"product {path}: the disk filled up.*paths\.products_dir"):
        write_twsa_product(path, np.zeros((12, *g.shape), np.float32), grid=g, times=times,
                           land_mask=np.ones(g.shape, bool), cell_area=g.cell_area(), attrs={})
    assert _temps(path.parent) == [] and not path.exists()


# ------------------------------------------------------------------ twin and real inputs never mix (issue 17.2)
@pytest.fixture(scope="module")
def small_twin(tmp_path_factory):
    """A 30° twin, its cube (data=twin) and copies of its ERA5 and GRACE files outside any twin folder."""
    root = tmp_path_factory.mktemp("kind")
    run = root / "run"
    twin_cmd.run(_compose("twin", f"paths.output_dir={run}", *TWIN))
    ingest(_compose("ingest", f"paths.output_dir={run}", *INGEST))
    real = root / "downloads"
    shutil.copytree(run / "twin" / "era5", real / "era5")
    shutil.copytree(run / "twin" / "grace", real / "grace")
    return {"run": run, "real": real}


def _files_cfg(out: Path, real: Path, *extra: str):
    return _compose("ingest", f"paths.output_dir={out}", *INGEST, "data=files", f"data.era5_dir={real}/era5",
                    f"data.grace.jpl={real}/grace/GRCTellus.JPL.*.nc", f"data.grace.csr={real}/grace/CSR_*.nc",
                    f"data.grace.gsfc={real}/grace/gsfc.glb_.*.nc", *extra)


def test_data_files_with_a_twin_file_is_refused(small_twin, tmp_path):
    lai = small_twin["run"] / "twin" / "lai.nc"  # data=files forgotten for one key: the twin's synthetic LAI
    with pytest.raises(InputFileError, match=rf"data\.lai={lai}: a twin Earth file \(its folder .* holds "
                                             r"twin_manifest\.json\), but data=files reads real downloads"):
        ingest(_files_cfg(tmp_path, small_twin["real"], f"data.lai={lai}"))
    assert not (tmp_path / "cube").exists()


def test_data_twin_with_a_real_file_is_refused(small_twin, tmp_path):
    real = small_twin["real"] / "era5"  # real downloads given to a data=twin run (data=files forgotten)
    cfg = _compose("ingest", f"paths.output_dir={tmp_path}", *INGEST, f"paths.twin_dir={small_twin['run']}/twin",
                   f"data.era5_dir={real}")
    with pytest.raises(InputFileError, match=r"data\.era5_dir=.*downloads/era5/.*: not a twin Earth file .* but "
                                             r"data=twin: pass data=files"):
        ingest(cfg)
    assert not (tmp_path / "cube").exists()


def test_a_cube_folder_keeps_its_kind(small_twin):
    run = small_twin["run"]
    before = (run / "cube" / "manifest.json").read_bytes()
    assert json.loads(before)["data_kind"] == "twin"
    with pytest.raises(InputFileError, match=r"this cube was built from data=twin inputs, the config gives "
                                             r"data=files; a run folder holds one kind"):
        ingest(_files_cfg(run, small_twin["real"], "force=true"))
    assert (run / "cube" / "manifest.json").read_bytes() == before
    # the monthly update checks the same before it reads a field
    from gtws_dl.cube.extend import plan_update
    from gtws_dl.ingest import spec_from

    with pytest.raises(InputFileError, match=r"built from data=twin inputs, the config gives data=files"):
        plan_update(run / "cube", spec_from(_files_cfg(run, small_twin["real"])), Grid(30.0))


def test_one_centre_is_enough(small_twin, tmp_path):
    """``~data.grace.jpl ~data.grace.gsfc`` (Hydra's delete override): a cube of CSR alone; asking it for a centre
    it lacks names the centres it has."""
    from gtws_dl.cube.store import CubeError, check_cube_targets

    run = small_twin["run"]
    cfg = _compose("ingest", f"paths.output_dir={tmp_path}", *INGEST, f"paths.twin_dir={run}/twin",
                   "~data.grace.jpl", "~data.grace.gsfc")
    man = ingest(cfg)
    assert list(man["targets"]) == ["csr"]
    assert check_cube_targets(tmp_path / "cube", ["csr"]) == ["csr"]
    with pytest.raises(CubeError, match=r"holds targets \['csr'\]; requested \['jpl'\] is not in it"):
        check_cube_targets(tmp_path / "cube", ["jpl", "csr"])


def test_sigterm_during_the_twin_leaves_no_temp_file_and_the_next_run_writes_the_same_files(tiny_twin, tmp_path):
    """SIGTERM between the twin's first temp write and its rename: exit 143, no temp file, no lock, no manifest
    (the twin is not complete); the same command again writes the files of an uninterrupted twin."""
    mark = tmp_path / "mark"
    child = REPO / "tests" / "bad_inputs" / "term_child.py"
    env = {k: v for k, v in ENV.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.Popen([sys.executable, str(child), "twin", str(mark), f"paths.output_dir={tmp_path}", *TWIN],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not mark.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < 120, "the child never wrote a file"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    twin = tmp_path / "twin"
    assert not Path(mark.read_text()).exists()
    assert [p for p in twin.rglob("*") if ".tmp-" in p.name] == [] and not Path(f"{twin}.lock").exists()
    assert not (twin / "twin_manifest.json").exists()
    twin_cmd.run(_compose("twin", f"paths.output_dir={tmp_path}", *TWIN))
    ref = tiny_twin / "twin"
    files = sorted(p.relative_to(ref) for p in ref.rglob("*.nc"))
    assert files and files == sorted(p.relative_to(twin) for p in twin.rglob("*.nc"))
    for f in files:
        with xr.open_dataset(ref / f) as a, xr.open_dataset(twin / f) as b:
            xr.testing.assert_identical(a.load(), b.load())


# ------------------------------------------------------------------ a full disk that HDF5 reports without ENOSPC
def _product(path: Path, ny: int = 30) -> Path:
    g = Grid(360 / (2 * ny))
    times = pd.date_range("2002-01", periods=24, freq="MS")
    field = np.random.default_rng(0).random((24, *g.shape)).astype(np.float32)  # incompressible
    return write_twsa_product(path, field, grid=g, times=times, land_mask=np.ones(g.shape, bool),
                              cell_area=g.cell_area(), attrs={})


def test_hdf_error_on_a_nearly_full_disk_is_a_disk_space_error_and_elsewhere_stays_itself(tmp_path, monkeypatch):
    """netCDF4 reports a full disk as ``RuntimeError: NetCDF: HDF error`` (no errno; measured on a full tmpfs):
    with under 64 MB free it is a DiskSpaceError naming the product and the key; with room, the error is kept."""
    def hdf_error(self, path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", hdf_error)
    path = tmp_path / "products" / "gtws_dl_twsa_csr.nc"
    with pytest.raises(RuntimeError, match="HDF error") as info:
        _product(path)
    assert not isinstance(info.value, DiskSpaceError)  # plenty of room here: not blamed on the disk
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=3 << 20))
    with pytest.raises(DiskSpaceError, match=rf"product {path}: the write failed \(RuntimeError: NetCDF: HDF error\) "
                                             r"with only 3\.1 MB free .*the disk is full.*paths\.products_dir"):
        _product(path)
    assert _temps(path.parent) == [] and not path.exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB tmpfs (needs root to mount; skipped elsewhere, the faked test above covers the mapping)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_really_full_disk_while_writing_a_product_or_a_twin_is_one_disk_space_error(tiny_disk):
    """On a real 2 MB file system: the product (netCDF4 raises no ENOSPC there) and the twin command (its writer
    has no mapping of its own) end with a DiskSpaceError naming the path, and leave no temp file."""
    path = tiny_disk / "products" / "gtws_dl_twsa_csr.nc"
    with pytest.raises(DiskSpaceError, match=rf"product {path}: .*the disk (is full|filled up)"):
        _product(path, ny=90)  # 24 x 90 x 180 float32 = 1.6 MB + the std, over the 2 MB
    assert _temps(path.parent) == []
    res = subprocess.run([sys.executable, "-m", "gtws_dl.cli", "twin", f"paths.output_dir={tiny_disk / 'run'}",
                          "grid.res=5", "twin.start=2004-01", "twin.end=2009-12", "twin.progress=false"],
                         cwd=REPO, env={k: v for k, v in ENV.items() if k != "HYDRA_FULL_ERROR"},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    assert re.match(r"DiskSpaceError: output .*the disk (is full|filled up)", res.stderr), res.stderr[-3000:]
    assert len(res.stderr.strip().splitlines()) == 1
    assert [p for p in (tiny_disk / "run").rglob("*") if ".tmp-" in p.name] == []


def test_a_zarr_store_that_failed_on_a_full_disk_stays_removed(tiny_disk):
    """Zarr keeps writing the other chunks after the first ENOSPC: a plain rmtree right after the error sees the
    store come back (the CI failure of a ``.zarr.tmp-<pid>`` left in products/); remove_tree outlasts them."""
    rng = np.random.default_rng(0)
    for i in range(3):
        tmp = tiny_disk / f"x{i}.zarr.tmp"
        ds = xr.Dataset({v: (("t", "y", "x"), rng.random((24, 90, 180), dtype=np.float32)) for v in "ab"})
        with pytest.raises(OSError):
            ds.to_zarr(tmp, mode="w", consolidated=False, encoding={v: {"chunks": (1, 90, 180)} for v in "ab"})
        remove_tree(tmp)
        time.sleep(0.3)
        assert not tmp.exists()
