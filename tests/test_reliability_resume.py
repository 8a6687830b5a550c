"""Kill/resume, output locking, atomic products + manifest, determinism and non-finite guards, on the synthetic cube."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import zarr
from bad_inputs.builders import infer_cfg, module_for, product_numbers, save_checkpoint, train_cfg, tree_state
from conftest import make_synthetic_cube
from lightning.pytorch.callbacks import ModelCheckpoint

import gtws_dl.data as D
import gtws_dl.training as T
from gtws_dl.data import CubeDataModule
from gtws_dl.inference import infer
from gtws_dl.lock import OutputLockedError
from gtws_dl.models.module import NonFiniteLossError
from gtws_dl.post import products as P
from gtws_dl.post.manifest import ProductsManifestError, check_product, check_products
from gtws_dl.post.products import read_product
from gtws_dl.recon_store import open_finished
from gtws_dl.training import train

pytestmark = pytest.mark.reliability
REPO = Path(__file__).resolve().parents[1]
CHILD = REPO / "tests" / "bad_inputs" / "infer_child.py"
PRODUCTS = ["gtws_dl_twsa_csr.nc", "gtws_dl_twsa_csr_detrended_deseasonalized.nc"]


def _products(out: Path) -> dict[str, np.ndarray]:
    """The numbers of a run: recon Zarr array, NetCDF ``twsa`` of each product, the workbook's sheets."""
    return {"recon": zarr.open_group(out / "recon" / "csr.zarr", mode="r")["twsa"][:],
            **product_numbers(out / "products", PRODUCTS)}


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} differs", strict=True)


@pytest.fixture(scope="module")
def ckpt(synthetic_cube, tmp_path_factory):
    return save_checkpoint(module_for(synthetic_cube["dir"], hidden=(4,)), tmp_path_factory.mktemp("ck") / "u.ckpt")


@pytest.fixture(scope="module")
def reference(synthetic_cube, ckpt, tmp_path_factory):
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("ref")
    infer(infer_cfg(out, synthetic_cube["dir"], ckpt, "batch_windows=4"))
    return out


def _start(out, cube, ckpt, *, slow=0.0, count=None, mark=None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, str(CHILD), str(out), str(cube), str(ckpt), str(slow), str(count or ""), str(mark or "")]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _done(out: Path) -> list[int]:
    p = out / "recon" / "csr.zarr.progress.json"
    return json.loads(p.read_text())["done"] if p.exists() else []


def _wait(cond, proc, timeout=120.0):
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}):\n{proc.stdout.read()[-4000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the child")
        time.sleep(0.05)


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_sigkill_at_several_points_resumes_to_bit_identical_products(synthetic_cube, ckpt, reference, tmp_path):
    """SIGKILL after 1 batch, after 2 more, in the middle of publishing; each re-run of the same command goes on
    where the last stopped; the final products equal an uninterrupted run's bit for bit."""
    cube, out = synthetic_cube["dir"], tmp_path / "out"
    n_batches = 36  # 216 months / stride 6 = 36 blocks, one per forward with the state carried (the default)
    done_before: list[int] = []
    for k, extra in ((1, 1), (2, 2)):
        count = tmp_path / f"count{k}"
        proc = _start(out, cube, ckpt, slow=0.4, count=count)
        want = len(done_before) + extra
        _wait(lambda want=want: len(_done(out)) >= want, proc)
        if k == 1:  # a second writer of the same output, while the first is alive, is refused
            with pytest.raises(OutputLockedError, match=rf"csr\.zarr is being written by process {proc.pid} on "):
                infer(infer_cfg(out, cube, ckpt, "batch_windows=4"))
        _kill(proc)
        done = _done(out)
        assert set(done_before) <= set(done)
        # completed batches were not recomputed: at most the batch in flight at the kill is extra
        assert _count(count) <= len(done) - len(done_before) + 1
        done_before = done
    with pytest.raises(RuntimeError, match="unfinished reconstruction; re-run infer.py"):
        open_finished(out / "recon" / "csr.zarr")

    # kill in the middle of publishing: the first product's twin is written to its temp file, not yet renamed
    count, mark = tmp_path / "count3", tmp_path / "publishing"
    proc = _start(out, cube, ckpt, count=count, mark=mark)
    _wait(mark.exists, proc)
    _kill(proc)
    assert _count(count) == n_batches - len(done_before)  # only the missing batches
    assert any(".tmp-" in p.name for p in (out / "products").iterdir())  # the killed writer's temp file
    with pytest.raises(ProductsManifestError, match=r"no manifest\.json — the products are unfinished"):
        check_products(out / "products")

    # the same command again finishes, computing nothing twice
    count = tmp_path / "count4"
    proc = _start(out, cube, ckpt, count=count)
    assert proc.wait(180) == 0, proc.stdout.read()[-4000:]
    assert _count(count) == 0
    leftovers = [p.name for d in ("products", "recon") for p in (out / d).iterdir() if ".tmp-" in p.name
                 or ".old-" in p.name or p.name.endswith(".lock")]
    assert leftovers == []
    check_products(out / "products")
    _assert_identical(_products(out), _products(reference))


def test_products_manifest_is_written_last_and_checked(reference, tmp_path):
    m = check_products(reference / "products")
    assert set(m["files"]) >= {*PRODUCTS, "gtws_dl_twsa_csr.zarr", "gtws_dl_regional_series.xlsx"}
    run = next(iter(m["runs"].values()))
    assert run["checkpoint_sha256"] and run["cube_fingerprint"] == "synthetic-0" and run["config"]["target"]
    newest = max((reference / "products" / f).stat().st_mtime_ns for f in m["files"])
    assert (reference / "products" / "manifest.json").stat().st_mtime_ns >= newest  # written last
    # a reader of a tampered product refuses it
    prod = tmp_path / "products"
    shutil.copytree(reference / "products", prod)
    data = bytearray((prod / PRODUCTS[0]).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    (prod / PRODUCTS[0]).write_bytes(bytes(data))
    with pytest.raises(ProductsManifestError, match=r"gtws_dl_twsa_csr\.nc: sha256 checksum differs from .*manifest"):
        read_product(prod / PRODUCTS[0])
    read_product(prod / PRODUCTS[1])  # the others are fine
    (prod / "manifest.json").unlink()
    with pytest.raises(ProductsManifestError, match="products are unfinished"):
        check_product(prod / PRODUCTS[1])


def test_every_product_and_cube_write_is_temp_then_rename(synthetic_cube, ckpt, tmp_path, monkeypatch):
    """Record every os.replace: each final entry of products/, recon/ and cube/ arrived by a rename from a temp;
    and a write that fails midway leaves the earlier product untouched."""
    renames: list[tuple[str, str]] = []
    real = os.replace

    def spy(src, dst, *a, **k):
        renames.append((str(src), str(dst)))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", spy)
    make_synthetic_cube(tmp_path / "cube", start="2000-01", end="2011-12")
    out = tmp_path / "out"
    infer(infer_cfg(out, tmp_path / "cube", ckpt, "batch_windows=4"))
    targets = {Path(d).name for s, d in renames if ".tmp-" in Path(s).name}
    for folder in (tmp_path / "cube", out / "products"):
        for p in folder.iterdir():
            assert p.name in targets, f"{p} was not written through temp + rename"
    progress = out / "recon" / "csr.zarr.progress.json"
    assert progress.name in targets  # the resume record; the recon store itself is written chunk by chunk

    # a failing rewrite (disk error in the middle of the NetCDF) keeps the published file and leaves no temp
    before = tree_state(out / "products")
    def broken(self, path, *a, **k):
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="No space left"):
        P.write_twsa_product(out / "products" / PRODUCTS[0], np.zeros((144, 18, 36), np.float32),
                             grid=synthetic_cube["grid"], times=pd.date_range("2000-01", periods=144, freq="MS"),
                             land_mask=synthetic_cube["land"], cell_area=synthetic_cube["grid"].cell_area(), attrs={})
    after = tree_state(out / "products")
    assert {k: v for k, v in after.items() if "manifest" not in k} == \
        {k: v for k, v in before.items() if "manifest" not in k}
    # the manifest was set aside: the folder says "publication in progress" instead of vouching for it
    assert not (out / "products" / "manifest.json").exists()
    assert (out / "products" / "manifest.previous.json").exists()


# ----------------------------------------------------------------------------------- training: resume, determinism
def _weights(ckpt_path: Path) -> dict:
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    return ck


def _same_state(a, b, what, rtol: float = 0.0):
    """Equal bit for bit (``rtol=0``) or within ``rtol`` (tensors; other leaves always exactly)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            _same_state(a[k], b[k], f"{what}.{k}", rtol)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_state(x, y, f"{what}[{i}]", rtol)
    elif isinstance(a, torch.Tensor):
        same = torch.equal(a, b) if rtol == 0 else torch.allclose(a, b, rtol=rtol, atol=rtol * 1e-3)
        assert same, f"{what} differs"
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def _last(out: Path) -> dict:
    return _weights(out / "train" / "csr" / "checkpoints" / "last.ckpt")


def _assert_same_training(x: dict, y: dict, what: str, rtol: float = 0.0) -> None:
    assert x["global_step"] == y["global_step"] and x["epoch"] == y["epoch"], what
    _same_state(x["state_dict"], y["state_dict"], f"{what}.state_dict", rtol)
    _same_state(x["optimizer_states"], y["optimizer_states"], f"{what}.optimizer", rtol)
    _same_state(x["lr_schedulers"], y["lr_schedulers"], f"{what}.scheduler", rtol)


def _straight(cube, out):
    train(train_cfg(out, cube, "trainer.max_epochs=4"))
    return out


@pytest.fixture(scope="module")
def straight(synthetic_cube, tmp_path_factory):
    """4 epochs without interruption (the code as it is)."""
    return _straight(synthetic_cube["dir"], tmp_path_factory.mktemp("straight"))


def _interrupted_then_resumed(cube, out, monkeypatch, *, version_counter: bool) -> dict:
    """2 epochs (stopped at the epoch boundary after last.ckpt is saved), then ``ckpt_path=last`` to epoch 4."""
    class StopAfterTwoEpochs(ModelCheckpoint):
        def on_validation_end(self, trainer, pl_module):
            super().on_validation_end(trainer, pl_module)
            if trainer.current_epoch == 1:
                trainer.should_stop = True

    opts = {} if version_counter else {"enable_version_counter": False}
    monkeypatch.setattr(T, "ModelCheckpoint", functools.partial(StopAfterTwoEpochs, **opts))
    half = T.train(train_cfg(out, cube, "trainer.max_epochs=4"))
    assert half["global_step"] == 4
    monkeypatch.setattr(T, "ModelCheckpoint", functools.partial(ModelCheckpoint, **opts))
    return T.train(train_cfg(out, cube, "trainer.max_epochs=4", "ckpt_path=last"))


@pytest.mark.slow
def test_training_resume_updates_last_ckpt_with_the_real_callbacks(synthetic_cube, straight, tmp_path, monkeypatch):
    """2 epochs, interrupted, then ``ckpt_path=last`` for 2 more equal 4 straight epochs bit for bit (weights, AdamW
    moments, OneCycleLR state, global step), and last.ckpt/best.ckpt are updated in place (no last-v1.ckpt)."""
    _interrupted_then_resumed(synthetic_cube["dir"], tmp_path, monkeypatch, version_counter=True)
    ckdir = tmp_path / "train" / "csr" / "checkpoints"
    assert sorted(p.name for p in ckdir.iterdir()) == ["best.ckpt", "last.ckpt"]
    _assert_same_training(_last(tmp_path), _last(straight), "resumed")


@pytest.mark.slow
def test_same_seed_and_config_give_bit_identical_products(synthetic_cube, straight, tmp_path):
    """Train again with the same seed and config, reconstruct both: identical checkpoints and products (CPU)."""
    cube = synthetic_cube["dir"]
    train(train_cfg(tmp_path, cube, "trainer.max_epochs=4"))
    _assert_same_training(_last(tmp_path), _last(straight), "second run")
    prods = {}
    for out in (straight, tmp_path):
        infer(infer_cfg(out, cube, out / "train" / "csr" / "checkpoints" / "last.ckpt"))
        prods[out] = _products(out)
    _assert_identical(prods[straight], prods[tmp_path])


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(synthetic_cube, tmp_path, monkeypatch):
    """A NaN injected into the predictors of the second epoch's first batch: NonFiniteLossError naming the step;
    last.ckpt is still the finite epoch-0 checkpoint."""
    real = D.WindowDataset.__getitem__

    def poisoned(self, i):
        item = real(self, i)
        if self.epoch >= 1 and self.patch is not None:  # training samples of epoch 1 onwards
            item["x"][0, 0, 0, 0] = float("nan")
        return item

    monkeypatch.setattr(D.WindowDataset, "__getitem__", poisoned)
    cfg = train_cfg(tmp_path, synthetic_cube["dir"], "trainer.max_epochs=3")
    with pytest.raises(NonFiniteLossError, match=r"train loss is nan at step 2; .*model\.optimizer\.lr.*last good"):
        train(cfg)
    ck = torch.load(tmp_path / "train" / "csr" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["epoch"] == 0 and ck["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())


def test_target_nan_is_masked_and_predictor_nan_outside_land_is_zeroed(synthetic_cube):
    dm = CubeDataModule(str(synthetic_cube["dir"]), ["csr"], window=12, warmup=6, batch_size=4, patch=None,
                        samples_per_epoch=None, p_dropout=0.0)
    dm.setup()
    ds = dm._dataset(np.array([80]), np.arange(0, 216), patch=None)  # months 80..91 straddle 2002-04 (index 87)
    b = ds[0]
    y_raw = np.asarray(dm.targ[:, 80:92]).transpose(1, 0, 2, 3)
    assert not b["mask"].numpy()[~np.isfinite(y_raw)].any()  # no GRACE month / ocean -> not in the loss
    assert np.isfinite(b["x"].numpy()).all() and np.isfinite(b["y"].numpy()).all()


# ------------------------------------------------------------------ SIGTERM (a batch scheduler's time limit)
TERM_CHILD = REPO / "tests" / "bad_inputs" / "term_child.py"
TRAIN_ARGS = ["grid.res=10", "target=csr", "datamodule.window=12", "datamodule.warmup=6", "datamodule.patch=[8,null]",
              "datamodule.batch_size=2", "datamodule.samples_per_epoch=4", "datamodule.val_months=12",
              "model.net.hidden=[4]", "model.net.encoder=4", "trainer.enable_progress_bar=false",
              "trainer.log_every_n_steps=1"]  # = builders.train_cfg, on the command line


def _sigterm(stage: str, mark: Path, *overrides: str) -> None:
    """Run ``gtws-dl STAGE`` in a child, SIGTERM it where :mod:`bad_inputs.term_child` holds: exit 143, one line."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen([sys.executable, str(TERM_CHILD), stage, str(mark), *overrides], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not mark.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}):\n{proc.stderr.read()[-4000:]}")
        if time.time() - t0 > 240:
            proc.kill()
            raise AssertionError("timed out waiting for the child")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-4000:]
    assert "terminated (SIGTERM)" in err and "Traceback" not in err, err[-4000:]


@pytest.mark.slow
def test_sigterm_while_publishing_removes_the_temp_file_and_the_rerun_gives_identical_products(
        synthetic_cube, ckpt, reference, tmp_path):
    """SIGTERM between a product's temp write and its rename: the temp file and the lock are gone, the products
    folder says it is unfinished, and the same command again equals an uninterrupted run bit for bit."""
    cube, out, mark = synthetic_cube["dir"], tmp_path / "out", tmp_path / "mark"
    _sigterm("infer", mark, f"paths.output_dir={out}", f"paths.cube_dir={cube}", "grid.res=10", "target=csr",
             f"ckpt_path={ckpt}", "device=cpu", "batch_windows=4")
    temp = Path(mark.read_text())
    assert temp.name.startswith("gtws_dl_twsa_csr_detrended") and ".tmp-" in temp.name
    assert not temp.exists()
    left = [p.name for d in ("products", "recon") for p in (out / d).iterdir()
            if ".tmp-" in p.name or ".old-" in p.name or p.name.endswith(".lock")]
    assert left == []
    with pytest.raises(ProductsManifestError, match="unfinished"):
        check_products(out / "products")
    infer(infer_cfg(out, cube, ckpt, "batch_windows=4"))
    check_products(out / "products")
    _assert_identical(_products(out), _products(reference))


@pytest.mark.slow
def test_sigterm_during_training_keeps_last_ckpt_and_resuming_equals_a_straight_run(synthetic_cube, straight,
                                                                                   tmp_path):
    """SIGTERM in the second epoch: exit 143, no lock, last.ckpt is the first epoch's; ``ckpt_path=last`` then
    trains to the weights, optimizer and scheduler state of 4 straight epochs (within 1e-4)."""
    cube, mark = synthetic_cube["dir"], tmp_path / "mark"
    _sigterm("train", mark, f"paths.output_dir={tmp_path}", f"paths.cube_dir={cube}", "trainer.max_epochs=4",
             *TRAIN_ARGS)
    run = tmp_path / "train" / "csr"
    assert not Path(f"{run}.lock").exists()
    ck = run / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert _last(tmp_path)["epoch"] == 0
    train(train_cfg(tmp_path, cube, "trainer.max_epochs=4", "ckpt_path=last"))
    # the first epoch ran in another process (its own thread pool: summation order may differ in the last bits;
    # bit-identity of resuming is the in-process test above)
    _assert_same_training(_last(tmp_path), _last(straight), "resumed after SIGTERM", rtol=1e-4)
