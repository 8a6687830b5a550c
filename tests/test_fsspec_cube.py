"""A cube on an fsspec store (here ``memory://``, standing in for s3/gcs) trains and reconstructs like a local one."""

from __future__ import annotations

import uuid

import fsspec
import numpy as np
import pytest
import zarr
from bad_inputs.builders import module_for, save_checkpoint

from gtws_dl.checkpoint import load_checkpoint
from gtws_dl.cube.store import CubeNotFoundError, open_cube
from gtws_dl.data import CubeDataModule
from gtws_dl.reconstruct import reconstruct


@pytest.fixture(scope="module")
def remote_cube(synthetic_cube):
    url = f"memory://cubes-{uuid.uuid4().hex}/cube"
    fs = fsspec.filesystem("memory")
    fs.put(str(synthetic_cube["dir"]), url.removeprefix("memory://"), recursive=True)
    yield url
    fs.rm(url.removeprefix("memory://").split("/")[0], recursive=True)


def test_open_cube_reads_the_same_arrays_from_a_url(synthetic_cube, remote_cube):
    m_local, p_local, t_local = open_cube(synthetic_cube["dir"])
    m_remote, p_remote, t_remote = open_cube(remote_cube + "/")  # a trailing slash is fine
    assert m_remote == m_local
    np.testing.assert_array_equal(p_remote["predictors"][5:9], p_local["predictors"][5:9])
    np.testing.assert_array_equal(t_remote["twsa"][:], t_local["twsa"][:])


def test_datamodule_batches_from_a_url_equal_local_ones(synthetic_cube, remote_cube):
    kw = dict(targets=["csr"], window=12, warmup=6, batch_size=2, samples_per_epoch=4, in_memory=False, seed=3)
    local, remote = CubeDataModule(str(synthetic_cube["dir"]), **kw), CubeDataModule(remote_cube, **kw)
    for dm in (local, remote):
        dm.setup("fit")
    a, b = next(iter(local.train_dataloader())), next(iter(remote.train_dataloader()))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def test_reconstruction_from_a_url_equals_the_local_one(synthetic_cube, remote_cube, tmp_path):
    ckpt = save_checkpoint(module_for(synthetic_cube["dir"], hidden=(4,)), tmp_path / "m.ckpt")
    outs = []
    for name, cube in (("local", synthetic_cube["dir"]), ("remote", remote_cube)):
        out = tmp_path / f"{name}.zarr"
        reconstruct(load_checkpoint(ckpt), cube, out, ckpt_path=ckpt, device="cpu", progress=False)
        outs.append(zarr.open_group(out, mode="r")["twsa"][:])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_a_missing_remote_cube_is_named():
    with pytest.raises(CubeNotFoundError, match=r"memory://nowhere/cube: no manifest.json"):
        open_cube("memory://nowhere/cube")
    with pytest.raises(CubeNotFoundError, match="cannot open this location"):
        open_cube("nosuchprotocol://bucket/cube")
