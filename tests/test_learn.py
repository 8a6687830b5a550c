"""DataModule split/normalisation, ConvLSTM training and streaming reconstruction on a synthetic cube."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from gtws_dl.checkpoint import CheckpointMismatchError, check_compatible
from gtws_dl.config import ConfigError, conf_dir
from gtws_dl.data import CubeDataModule
from gtws_dl.models.convlstm import ConvLSTM
from gtws_dl.split import available_months, time_split


def test_time_split_is_blocked_with_gap():
    import pandas as pd

    times = pd.date_range("2000-01", periods=120, freq="MS")
    avail = np.ones(120, bool)
    avail[:30] = False
    s = time_split(times, avail, val_months=24, gap_months=12)
    assert s.val[0] == 96 and s.val[-1] == 119
    assert s.train[-1] == 96 - 12 - 1 and s.train[0] == 30
    with pytest.raises(ValueError, match="training window is empty"):
        time_split(times, avail, val_months=24, gap_months=80)


def test_backward_split_holds_out_the_first_grace_months():
    import pandas as pd

    times = pd.date_range("2000-01", periods=120, freq="MS")
    avail = np.ones(120, bool)
    avail[:30] = False
    avail[60:63] = False  # a GRACE gap inside the training months
    s = time_split(times, avail, val_months=24, gap_months=12, block="first")
    assert s.block == "first" and s.val[0] == 30 and s.val[-1] == 53 and len(s.val) == 24
    assert s.train[0] == 53 + 12 + 1 and s.train[-1] == 119 and s.train_end == 119
    assert not set(s.train) & set(range(60, 63)) and not set(s.train) & set(s.val)
    with pytest.raises(ValueError, match="training window is empty"):
        time_split(times, avail, val_months=24, gap_months=80, block="first")
    with pytest.raises(ValueError, match="val_block='middle'"):
        time_split(times, avail, val_months=24, gap_months=12, block="middle")


def test_backward_split_datamodule_never_scores_validation_months_in_training(synthetic_cube):
    dm = CubeDataModule(str(synthetic_cube["dir"]), ["csr"], window=12, warmup=6, batch_size=2,
                        patch=[8, None], samples_per_epoch=4, val_months=12, val_block="first")
    dm.setup()
    s = dm.split
    assert s.val[-1] + dm.gap_months < s.train[0], "the gap separates validation and training months"
    assert dm.normalisation()["val_block"] == "first"
    ds = dm._dataset(dm.train_starts(), s.train, patch=None)
    for t0 in dm.train_starts():  # every training window's loss months are training months only
        m = ds[int(np.flatnonzero(ds.starts == t0)[0])]["mask"].numpy().any(axis=(1, 2, 3))
        assert set(np.flatnonzero(m) + t0) <= set(s.train)
    vds = dm._dataset(dm.val_starts(), s.val, patch=None)
    scored = set()
    for i in range(len(vds)):
        m = vds[i]["mask"].numpy().any(axis=(1, 2, 3))
        scored |= set(np.flatnonzero(m) + int(vds.starts[i]))
    assert scored and scored <= set(s.val)


def test_available_months_any_centre_any_land_cell():
    targ = np.full((2, 5, 2, 3), np.nan, np.float32)  # (centre, time, lat, lon)
    land = np.zeros((2, 3), bool)
    land[0, 1] = land[1, 2] = True
    targ[0, 1, 0, 1] = 1.0  # centre 0, land
    targ[1, 3, 1, 2] = 1.0  # centre 1, land
    targ[:, 4, 0, 0] = 1.0  # ocean only: not available
    want = np.array([False, True, False, True, False])
    np.testing.assert_array_equal(available_months(targ, land), want)
    np.testing.assert_array_equal(available_months([t for t in targ], land), want)  # one array per centre
    np.testing.assert_array_equal(available_months(targ[:, :, land]), want)  # land cells already


def test_datamodule_masks_and_normalises(synthetic_cube):
    dm = CubeDataModule(str(synthetic_cube["dir"]), ["csr"], window=12, warmup=6, batch_size=2,
                        patch=[8, None], samples_per_epoch=4)
    dm.setup()
    b = next(iter(dm.train_dataloader()))
    assert b["x"].shape == (2, 12, 4, 8, 36) and b["y"].shape == (2, 12, 1, 8, 36)
    assert not b["mask"][:, :6].any(), "warm-up months must not count in the loss"
    # training windows never reach the validation months or the gap
    assert dm.train_starts().max() + dm.window - 1 <= dm.split.train_end < dm.split.val[0] - dm.gap_months + 0
    # stats fitted on training months only: the land mean of channel p over 2002-04..2009-12 ~ 0, std ~ 1
    assert abs(dm.mean[0]) < 0.05 and abs(dm.std[0] - 1) < 0.05
    norm = dm.normalisation()
    assert norm["channels"] == ["tp", "sin_phase", "cos_phase", "static"] and norm["window"] == 12


def test_convlstm_streams_state_and_wraps_longitude():
    torch.manual_seed(0)
    net = ConvLSTM(3, 2, hidden=[8], kernel_size=3, encoder=4, lon_circular=True).eval()
    x = torch.randn(1, 6, 3, 5, 12)
    with torch.no_grad():
        full, _ = net(x)
        a, st = net(x[:, :3])
        b, _ = net(x[:, 3:], st)
        # rolling the input in longitude rolls the output the same way (circular padding)
        rolled, _ = net(torch.roll(x, 4, dims=-1))
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    torch.testing.assert_close(rolled, torch.roll(full, 4, dims=-1), atol=1e-5, rtol=1e-5)


def test_checkpoint_from_another_cube_is_refused():
    norm = {"channels": ["a", "b"], "grid": {"res": 2.0, "shape": [90, 180]}}
    with pytest.raises(CheckpointMismatchError, match="differences: \\['c'\\]"):
        check_compatible(norm, {"channels": ["a", "b", "c"], "grid": norm["grid"]}, "x.ckpt")
    with pytest.raises(CheckpointMismatchError, match="1.0 deg"):
        check_compatible(norm, {"channels": ["a", "b"], "grid": {"res": 1.0, "shape": [180, 360]}}, "x.ckpt")


@pytest.mark.slow
def test_train_then_reconstruct_recovers_known_signal(synthetic_cube, tmp_path):
    """Train through the real config + train(); reconstruct; skill against the known truth."""
    from gtws_dl.models.module import ReconstructionModule
    from gtws_dl.recon_store import open_finished
    from gtws_dl.reconstruct import reconstruct
    from gtws_dl.training import train

    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.output_dir={tmp_path}", f"paths.cube_dir={synthetic_cube['dir']}", "grid.res=10",
            "target=csr", "datamodule.window=12", "datamodule.warmup=6", "datamodule.patch=[18,null]",
            "datamodule.batch_size=4", "datamodule.samples_per_epoch=32", "trainer.max_epochs=12",
            "model.net.hidden=[16]", "model.net.encoder=16", "model.optimizer.lr=1e-2",
            "trainer.enable_progress_bar=false",
        ])
    summary = train(cfg)
    ckpt = summary["last_checkpoint"]
    module = ReconstructionModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert module.hparams.normalisation["targets"] == ["csr"]  # the checkpoint carries it (no normalisation.json)
    out = reconstruct(module, synthetic_cube["dir"], tmp_path / "recon" / "csr.zarr", ckpt_path=ckpt,
                      progress=False)
    rec = open_finished(out)["twsa"].sel(target="csr").values
    land, truth = synthetic_cube["land"], synthetic_cube["truth"]
    assert np.isfinite(rec[:, land]).all() and np.isnan(rec[:, ~land]).all()
    # skill before GRACE (1995-2001): months never seen in training
    pre = slice(12, 84)
    r = np.corrcoef(rec[pre][:, land].ravel(), truth[pre][:, land].ravel())[0, 1]
    assert r > 0.8, f"correlation with the known truth before GRACE is only {r:.2f}"


@pytest.mark.parametrize("circular", [True, False])
def test_tiled_inference_matches_untiled(circular):
    """Seams: tiles with the receptive-field halo reproduce the whole-field result."""
    from gtws_dl.reconstruct import predict_tiled

    torch.manual_seed(1)
    net = ConvLSTM(3, 2, hidden=[6, 6], kernel_size=3, encoder=4, lon_circular=circular).eval()
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 30, 40)).astype(np.float32)
    with torch.no_grad():
        whole = predict_tiled(net, x, torch.device("cpu"))
        tiled = predict_tiled(net, x, torch.device("cpu"), tile=(7, 9))
        band = predict_tiled(net, x, torch.device("cpu"), tile=(8, 40))
    assert net.lon_circular is circular  # restored after tiling
    np.testing.assert_allclose(tiled, whole, atol=2e-6, rtol=0)
    np.testing.assert_allclose(band, whole, atol=2e-6, rtol=0)


def test_validation_in_tiles_gives_the_whole_field_loss(synthetic_cube):
    """Validation in tiles (core + the net's halo, ocean-only tiles skipped) has the loss of whole fields, so
    checkpoint choice does not depend on the tiling while memory follows the tile, not the domain."""
    import lightning as L

    from gtws_dl.data import CubeDataModule
    from gtws_dl.models.module import ReconstructionModule
    from gtws_dl.training import validation_tiles

    dm = CubeDataModule(str(synthetic_cube["dir"]), ["csr"], window=6, warmup=2, patch=None, val_months=12,
                        gap_months=0, p_dropout=0.0, val_tile=8)
    dm.setup()
    torch.manual_seed(0)
    module = ReconstructionModule(net={"_target_": "gtws_dl.models.convlstm.ConvLSTM", "hidden": [4], "encoder": 4},
                                  optimizer={"_target_": "torch.optim.AdamW"}, in_channels=len(dm.channels),
                                  targets=["csr"], normalisation=dm.normalisation())
    module.target_scale.copy_(torch.from_numpy(dm.scale))
    tiles = validation_tiles(dm, module.net)
    H, W = dm.land.shape
    assert tiles is not None and len(tiles) > 2
    assert max(t.read_rows[1] - t.read_rows[0] for t in tiles) * max(len(t.read_cols) for t in tiles) < H * W
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    losses, rmse = {}, {}
    for name, val_tiles in (("whole", None), ("tiles", tiles)):
        dm.val_tiles = val_tiles
        out = trainer.validate(module, datamodule=dm, verbose=False)[0]
        losses[name], rmse[name] = out["val_loss"], out["val_rmse_mm"]
    assert losses["whole"] > 0
    np.testing.assert_allclose(losses["tiles"], losses["whole"], rtol=1e-5)
    np.testing.assert_allclose(rmse["tiles"], rmse["whole"], rtol=1e-5)  # mm, over every validation cell-month


def test_validation_months_in_the_records_spin_up_are_an_error_not_a_zero_loss(tmp_path, caplog):
    # a record that starts with its GRACE months: backward validation falls in the warm-up of the first window,
    # which is never scored; a silent validation loss of 0 would pick the first checkpoint as the best
    from conftest import make_synthetic_cube

    make_synthetic_cube(tmp_path / "cube", start="2002-04-01")
    kw = dict(window=12, warmup=6, batch_size=2, patch=[8, None], samples_per_epoch=4, val_block="first",
              gap_months=0)
    dm = CubeDataModule(str(tmp_path / "cube"), ["csr"], val_months=6, **kw)
    dm.setup()
    with pytest.raises(ConfigError, match=r"no validation month can be scored.*2002-04\.\.2002-09.*warmup=6"):
        dm.val_starts()
    dm = CubeDataModule(str(tmp_path / "cube"), ["csr"], val_months=9, **kw)
    dm.setup()
    with caplog.at_level("WARNING", logger="gtws_dl.data"):
        starts = dm.val_starts()  # 2002-10..12 are scored; the first six months are named in a warning
    assert "6 validation months (2002-04..2002-09)" in caplog.text
    vds = dm._dataset(starts, dm.split.val, patch=None)
    scored = {int(vds.starts[i]) + t for i in range(len(vds))
              for t in np.flatnonzero(vds[i]["mask"].numpy().any(axis=(1, 2, 3)))}
    assert scored == set(dm.split.val[6:])
