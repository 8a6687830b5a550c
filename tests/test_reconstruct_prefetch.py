"""Prefetching reader of the reconstruction: same outputs on or off, overlap, errors surface, resume still works."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
import zarr
from bad_inputs.builders import infer_cfg, module_for, save_checkpoint

import gtws_dl.blocks as blocks
import gtws_dl.reconstruct as recon
from gtws_dl.checkpoint import load_checkpoint
from gtws_dl.config import ConfigError
from gtws_dl.cube.store import open_cube
from gtws_dl.inference import speed_options
from gtws_dl.prefetch import prefetched

N_BATCHES = 9  # synthetic cube: 216 months / stride 6 = 36 blocks, 4 per batch
_predict = recon.predict_tiled


@pytest.fixture(scope="module")
def ckpt(synthetic_cube, tmp_path_factory):
    return save_checkpoint(
        module_for(synthetic_cube["dir"], hidden=(4,)), tmp_path_factory.mktemp("ck") / "p.ckpt"
    )


def _run(cube, ckpt, out, **kw):
    kw = {"device": "cpu", **kw}
    recon.reconstruct(load_checkpoint(ckpt), cube, out, ckpt_path=ckpt, batch_windows=4, progress=False, **kw)
    return zarr.open_group(out, mode="r")["twsa"][:]


@pytest.fixture(scope="module")
def reference(synthetic_cube, ckpt, tmp_path_factory):
    """A run without prefetching."""
    return _run(synthetic_cube["dir"], ckpt, tmp_path_factory.mktemp("ref") / "csr.zarr", prefetch=False)


def test_prefetch_gives_bit_identical_reconstruction(synthetic_cube, ckpt, reference, tmp_path):
    on = _run(synthetic_cube["dir"], ckpt, tmp_path / "csr.zarr", prefetch=True)
    assert np.isfinite(on[:, :, synthetic_cube["land"]]).all()
    np.testing.assert_array_equal(on, reference, strict=True)


def test_reader_error_propagates_and_the_run_resumes(synthetic_cube, ckpt, reference, tmp_path, monkeypatch):
    """A read that fails in the background thread raises its own error in the caller (no hang); the batches
    finished before it are kept, and the re-run completes them bit-identically to an uninterrupted run."""
    read, threads = blocks.read_batch, []

    def failing(pred, group, *a, **k):
        threads.append(threading.current_thread().name)
        if group[0][1] == 3 * 4 * 6:  # the 4th batch: first kept month = batch 3 x 4 blocks x stride 6
            raise OSError("simulated unreadable chunk predictors/c/3/0/0/0")
        return read(pred, group, *a, **k)

    monkeypatch.setattr(blocks, "read_batch", failing)
    out = tmp_path / "csr.zarr"
    t0 = time.perf_counter()
    with pytest.raises(OSError, match=r"simulated unreadable chunk predictors/c/3/0/0/0"):
        _run(synthetic_cube["dir"], ckpt, out, prefetch=True)
    assert time.perf_counter() - t0 < 60
    assert threads and all(t.startswith("gtws-prefetch") for t in threads)  # read off the main thread
    assert json.loads((tmp_path / "csr.zarr.progress.json").read_text())["done"] == [0, 1, 2]
    assert not any(t.name.startswith("gtws-prefetch") for t in threading.enumerate())  # no thread left behind

    monkeypatch.setattr(blocks, "read_batch", read)
    calls = []
    monkeypatch.setattr(recon, "predict_tiled", lambda *a, **k: calls.append(1) or _predict(*a, **k))
    np.testing.assert_array_equal(
        _run(synthetic_cube["dir"], ckpt, out, prefetch=True), reference, strict=True
    )
    assert len(calls) == N_BATCHES - 3  # only the unfinished batches were computed


def test_forward_error_stops_the_reader_thread(synthetic_cube, ckpt, tmp_path, monkeypatch):
    calls = []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated CUDA out of memory")
        return _predict(*a, **k)

    monkeypatch.setattr(recon, "predict_tiled", failing)
    with pytest.raises(RuntimeError, match="simulated CUDA out of memory"):
        _run(synthetic_cube["dir"], ckpt, tmp_path / "csr.zarr", prefetch=True)
    assert not any(t.name.startswith("gtws-prefetch") for t in threading.enumerate())


def test_prefetched_overlaps_loading_with_the_consumer():
    """While the consumer holds item 0, item 1 is loaded: the consumer can wait for that load to start."""
    started = {i: threading.Event() for i in range(3)}

    def load(i):
        started[i].set()
        return i * 10

    seen = []
    for i, v in prefetched(load, range(3)):
        if i == 0:
            assert started[1].wait(10), "item 1 was not loaded while item 0 was being consumed"
        seen.append((i, v))
    assert seen == [(0, 0), (1, 10), (2, 20)]
    assert list(prefetched(load, range(3), enabled=False)) == seen


def test_prefetched_stops_cleanly_on_break_and_keeps_depth():
    loaded = []

    def load(i):
        loaded.append(i)
        return i

    for i, _ in prefetched(load, range(100), depth=2):
        if i == 1:
            break
    assert loaded[:2] == [0, 1] and loaded == sorted(loaded)
    assert max(loaded) <= 3  # never more than depth items ahead of the consumer; the rest were cancelled
    assert not any(t.name.startswith("gtws-prefetch") for t in threading.enumerate())


@pytest.mark.parametrize("value", ["yes", 1])
def test_speed_options_must_be_booleans(synthetic_cube, ckpt, tmp_path, value):
    cfg = infer_cfg(tmp_path, synthetic_cube["dir"], ckpt)
    assert speed_options(cfg) == {"prefetch": True, "channels_last": False, "compile": False}
    cfg.prefetch = value
    with pytest.raises(ConfigError, match=rf"config key prefetch={value!r}: expected true or false"):
        speed_options(cfg)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the device machine)")
def test_cuda_prefetch_pins_and_gives_identical_outputs(synthetic_cube, ckpt, tmp_path):
    """On CUDA the prefetched batch is staged in pinned memory; outputs equal with prefetch on/off, and with
    channels_last + compile within 1e-4 mm (fp32, no autocast)."""
    _, pred_g, _ = open_cube(synthetic_cube["dir"])
    blocks = recon._blocks(24, 6, 6)[:2]
    x = recon.read_batch(
        pred_g["predictors"],
        blocks,
        np.zeros((4, 1, 1), np.float32),
        np.ones((4, 1, 1), np.float32),
        pin=True,
    )
    assert isinstance(x, torch.Tensor) and x.is_pinned()
    kw = {"device": "cuda", "amp": False}
    off = _run(synthetic_cube["dir"], ckpt, tmp_path / "off.zarr", prefetch=False, **kw)
    on = _run(synthetic_cube["dir"], ckpt, tmp_path / "on.zarr", prefetch=True, **kw)
    np.testing.assert_array_equal(on, off, strict=True)
    fast = _run(synthetic_cube["dir"], ckpt, tmp_path / "fast.zarr", channels_last=True, compile=True, **kw)
    np.testing.assert_allclose(fast, off, atol=1e-4, rtol=1e-5)
