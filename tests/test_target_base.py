"""The per-cell target base (GRACE-era climatology + held trend) a network's residual is added to."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from gtws_dl.seasonal import decimal_year
from gtws_dl.target_base import TargetBase, fit_target_base


def _known(times, H=3, W=4, seed=0):
    """(1, T, H, W) mm: 5 + 2 mm/yr trend from 2010 + a per-cell seasonal cycle + small noise."""
    rng = np.random.default_rng(seed)
    t = decimal_year(times)
    amp = rng.uniform(10, 60, (H, W))
    phase = rng.uniform(0, 2 * np.pi, (H, W))
    seas = amp[None] * np.sin(2 * np.pi * t[:, None, None] + phase[None])
    y = 5.0 + 2.0 * (t - 2010.0)[:, None, None] + seas + rng.normal(0, 0.5, seas.shape)
    return y[None].astype(np.float32), seas


def test_fit_recovers_seasonal_cycle_and_holds_trend_outside_training():
    times = pd.date_range("1990-01", "2020-12", freq="MS")
    y, seas = _known(times)
    y[:, times < "2002-04"] = np.nan  # no GRACE before 2002-04
    train = np.flatnonzero((times >= "2002-04") & (times <= "2016-12"))
    base = fit_target_base(y, times, train, "seasonal_trend")
    b = base.evaluate(times)[0]
    t = decimal_year(times)
    inside = (times >= "2002-04") & (times <= "2016-12")
    expect = 5.0 + 2.0 * (np.clip(t, t[train[0]], t[train[-1]]) - 2010.0)[:, None, None]
    # a monthly climatology of a sinusoid (mid-month samples) equals the sinusoid at mid-month
    err = b - (expect + seas)
    assert np.abs(err[inside]).max() < 1.5, np.abs(err[inside]).max()
    # before the first and after the last training month the trend is held flat (not extrapolated)
    early = b[times < "2002-04"] - seas[times < "2002-04"]
    assert np.allclose(early, early[0], atol=1.5)
    assert abs(early.mean() - (5.0 + 2.0 * (t[train[0]] - 2010.0))) < 1.0
    late = b[times > "2016-12"] - seas[times > "2016-12"]
    assert abs(late.mean() - (5.0 + 2.0 * (t[train[-1]] - 2010.0))) < 1.0


def test_fit_uses_training_months_only():
    times = pd.date_range("2002-01", "2020-12", freq="MS")
    y, _ = _known(times)
    train = np.flatnonzero(times <= "2015-12")
    a = fit_target_base(y, times, train, "seasonal_trend").coef
    y2 = y.copy()
    y2[:, times > "2015-12"] += 1000.0  # validation months changed: the fit must not move
    b = fit_target_base(y2, times, train, "seasonal_trend").coef
    np.testing.assert_array_equal(a, b)


def test_none_base_is_zero_and_cells_without_data_get_zero():
    times = pd.date_range("2002-01", "2010-12", freq="MS")
    y, _ = _known(times)
    y[:, :, 0, 0] = np.nan  # an ocean cell
    train = np.arange(len(times))
    assert not fit_target_base(y, times, train, "none").evaluate(times).any()
    b = fit_target_base(y, times, train, "seasonal_trend").evaluate(times)
    assert np.isfinite(b).all() and not b[0, :, 0, 0].any()
    with pytest.raises(ValueError, match="target_base='harmonic'"):
        fit_target_base(y, times, train, "harmonic")


def test_datamodule_learns_the_residual_and_the_module_carries_the_base(synthetic_cube):
    """Training targets are (twsa − base) / scale; the checkpointed module gives the base back."""
    from gtws_dl.data import CubeDataModule
    from gtws_dl.models.module import ReconstructionModule

    dm = CubeDataModule(str(synthetic_cube["dir"]), ["csr"], window=12, warmup=0, patch=None,
                        val_months=12, gap_months=0, target_base="seasonal_trend", p_dropout=0.0)
    dm.setup()
    ds = dm._dataset(dm.train_starts(), dm.split.train, patch=None)
    t0 = int(dm.train_starts()[-1])
    item = ds[len(ds.starts) - 1]
    assert int(item["t0"]) == t0
    raw = np.asarray(dm.targ[0, t0:t0 + 12], dtype=np.float32)
    back = item["y"][:, 0].numpy() * dm.scale[0] + dm.base.evaluate(dm.times[t0:t0 + 12])[0]
    m = item["mask"][:, 0].numpy()
    assert m.any()
    np.testing.assert_allclose(back[m], raw[m], atol=1e-3)
    # the residual has no seasonal cycle left: its per-cell mean over training months is ~0 in scale units
    norm = dm.normalisation()
    assert norm["target_base"]["kind"] == "seasonal_trend"
    module = ReconstructionModule(net={"_target_": "gtws_dl.models.convlstm.ConvLSTM", "hidden": [4]},
                                  optimizer={"_target_": "torch.optim.AdamW"}, in_channels=len(dm.channels),
                                  targets=["csr"], normalisation=norm)
    module.target_base.copy_(torch.from_numpy(dm.base.coef))
    again = module.base()
    np.testing.assert_allclose(again.evaluate(dm.times), dm.base.evaluate(dm.times), rtol=1e-6)
    # an old checkpoint without the buffer loads as a zero base
    sd = {"state_dict": {}}
    module.on_load_checkpoint(sd)
    assert sd["state_dict"]["target_base"].shape == module.target_base.shape


def test_target_base_is_a_checked_config_choice():
    from hydra import compose, initialize_config_dir

    from gtws_dl.config import ConfigError, conf_dir, validate_config

    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["datamodule.target_base=trend"])
    with pytest.raises(ConfigError, match="datamodule.target_base='trend'"):
        validate_config(cfg)


def test_from_meta_without_meta_is_none():
    assert TargetBase.from_meta(None, None).kind == "none"


def test_forcing_memory_streamed_in_blocks_equals_one_pass_and_restarts():
    """The memories are causal EWMAs of the normalised channels from the cell's spin-up mean; any blocking (and a
    restart from an earlier month) gives the same numbers."""
    from gtws_dl.target_base import ForcingMemory

    rng = np.random.default_rng(1)
    pred = rng.normal(3.0, 2.0, (300, 2, 2, 3)).astype(np.float32)
    mean, std = np.array([3.0, 0.0]), np.array([2.0, 1.0])
    mem = ForcingMemory(pred, ["tp", "x"], mean, std, {"tp": (1.0, 24.0)}, block=7)
    whole = mem.months(0, 300)
    z = (pred[:, 0] - 3.0) / 2.0
    want = np.empty((300, 2, 2, 3))
    for j, tau in enumerate((1.0, 24.0)):
        a, s = 1 - np.exp(-1 / tau), z[:120].mean(0)
        for t in range(300):
            s = s + a * (z[t] - s)
            want[t, j] = s
    np.testing.assert_allclose(whole, want, atol=1e-5)
    again = ForcingMemory(pred, ["tp", "x"], mean, std, {"tp": (1.0, 24.0)}, block=50)
    parts = [again.months(0, 130), again.months(130, 131), again.months(131, 300), again.months(10, 20)]
    np.testing.assert_allclose(np.concatenate(parts[:3]), whole, atol=1e-6)
    np.testing.assert_allclose(parts[3], whole[10:20], atol=1e-6)
    with pytest.raises(ValueError, match=r"needs predictor channels \['t2m'\]"):
        ForcingMemory(pred, ["tp", "x"], mean, std, {"t2m": (3.0,)})


def test_forcing_memory_kept_state_resumes_bit_identically_without_reading_the_past():
    """The monthly update: the state kept at a month lets a new stream continue there with the same bits, and it
    reads only the months from there on (the past is not read again)."""
    from gtws_dl.target_base import ForcingMemory

    rng = np.random.default_rng(2)
    pred = rng.normal(3.0, 2.0, (200, 2, 2, 3)).astype(np.float32)
    mean, std, memory = np.array([3.0, 0.0]), np.array([2.0, 1.0]), {"tp": (1.0, 6.0, 48.0)}
    first = ForcingMemory(pred, ["tp", "x"], mean, std, memory, block=17)
    first.keep_at = 150
    whole = np.concatenate([first.months(i, min(200, i + 12)) for i in range(0, 200, 12)])
    assert first.kept is not None

    class Past(np.ndarray):  # refuses reads of months before 150
        def __getitem__(self, key):
            t = key[0] if isinstance(key, tuple) else key
            assert isinstance(t, slice) and (t.start or 0) >= 150, f"read the past: {t}"
            return np.asarray(self).__getitem__(key)

    later = ForcingMemory(pred.view(Past), ["tp", "x"], mean, std, memory, block=5)
    later.resume(150, first.kept)
    np.testing.assert_array_equal(np.concatenate([later.months(160, 170), later.months(170, 200)]), whole[160:])
    end = ForcingMemory(pred, ["tp", "x"], mean, std, memory)
    end.keep_at = 200  # the record's end: the state after its last month
    end.months(0, 200)
    resumed = ForcingMemory(pred, ["tp", "x"], mean, std, memory)
    resumed.resume(200, end.kept)
    np.testing.assert_array_equal(resumed.state, first.state)


def test_forcing_memory_base_recovers_a_slow_store_and_holds_it_before_the_fit():
    """A store = 200 mm × the 48-month memory of precipitation + a seasonal cycle, observed (with noise and a −20
    mm/yr loss the forcing cannot explain) only after 2002: the base fitted there reproduces the decades before,
    where a climatology holds still, and leaves the loss to the residual (products.unforced)."""
    times = pd.date_range("1950-01", "2020-12", freq="MS")
    T, H, W = len(times), 2, 3
    rng = np.random.default_rng(2)
    tp = (rng.gamma(2.0, 1.5, (T, H, W)) + 1.0 * np.sin(2 * np.pi * np.arange(T) / 240)[:, None, None])
    pred = tp[:, None].astype(np.float32)
    mean, std = np.array([float(tp.mean())]), np.array([float(tp.std())])
    z = (tp - mean[0]) / std[0]
    a, s = 1 - np.exp(-1 / 48.0), z[:120].mean(0)
    slow = np.empty((T, H, W))
    for t in range(T):
        s = s + a * (z[t] - s)
        slow[t] = s
    seas = 30 * np.sin(2 * np.pi * times.month.values / 12)[:, None, None]
    truth = 200 * slow + seas
    loss = -20.0 * np.clip(decimal_year(times) - 2002.25, 0, None)[:, None, None]
    y = (truth + loss + rng.normal(0, 5, truth.shape))[None].astype(np.float32)
    y[:, times < "2002-04"] = np.nan
    train = np.flatnonzero(times >= "2002-04")
    base = fit_target_base(y, times, train, "forcing_memory", pred=pred, channels=["tp"], mean=mean, std=std,
                           memory={"tp": (1.0, 6.0, 24.0, 48.0, 96.0)})
    assert base.start == "1950-01" and base.meta()["memory"] == {"tp": [1.0, 6.0, 24.0, 48.0, 96.0]}
    at = base.over(pred, times, ["tp"], mean, std)
    field = np.concatenate([at(0, 400), at(400, T)], axis=1)[0]
    pre = times < "2002-01"
    anom_true, anom_fit = truth[pre] - truth[pre].mean(0), field[pre] - field[pre].mean(0)
    assert np.corrcoef(anom_true.ravel(), anom_fit.ravel())[0, 1] > 0.95
    assert 0.8 < anom_fit.std() / anom_true.std() < 1.2  # the slow amplitude is kept, not damped
    grace = times >= "2002-04"
    tt = decimal_year(times)[grace]
    slope = np.polyfit(tt, (field[grace] - truth[grace]).mean(axis=(1, 2)), 1)[0]
    assert abs(slope) < 2.0, f"the base took {slope:.1f} mm/yr of the unexplained loss"
    again = TargetBase.from_meta(base.meta(), base.coef)
    np.testing.assert_allclose(again.over(pred, times, ["tp"], mean, std)(0, T), field[None], rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="starts in 1960-01, but the checkpoint's forcing_memory base"):
        base.over(pred[120:], times[120:], ["tp"], mean, std)


def test_forcing_memory_fit_in_latitude_bands_equals_the_whole_field_fit():
    """The per-cell fit streamed band by band (memory bounded in area: the 0.25 deg global fit's design matrix was
    tens of GB) gives the coefficients of one whole-field pass."""
    from gtws_dl.target_base import _fit_memory

    times = pd.date_range("1990-01", "2012-12", freq="MS")
    T, H, W = len(times), 7, 5
    rng = np.random.default_rng(4)
    pred = rng.gamma(2.0, 1.5, (T, 2, H, W)).astype(np.float32)
    mean, std = pred.mean(axis=(0, 2, 3)), pred.std(axis=(0, 2, 3))
    y = rng.normal(0, 10, (2, T, H, W)).astype(np.float32) + 5 * pred[:, 0][None]
    y[:, times < "2002-04"] = np.nan
    y[1, :, 0, 0] = np.nan  # a cell without data
    train = np.flatnonzero(times >= "2002-04")
    memory = {"tp": (3.0, 24.0), "t2m": (12.0,)}
    whole = _fit_memory(y, times, train, pred, ["tp", "t2m"], mean, std, memory, memory_mb=1e3)
    banded = _fit_memory(y, times, train, pred, ["tp", "t2m"], mean, std, memory, memory_mb=1e-3)  # 1-row bands
    assert np.abs(whole.coef).max() > 0.1
    np.testing.assert_allclose(banded.coef, whole.coef, rtol=1e-5, atol=1e-6)
    assert not whole.coef[1, :, 0, 0].any()


def test_datamodule_forcing_memory_learns_the_residual_of_the_memory_model(synthetic_cube):
    """The synthetic target is 40 × a 6-month memory of tp + a seasonal cycle: the base explains most of it, the
    network's targets are what it leaves, and (twsa − base) / scale round-trips."""
    from gtws_dl.data import CubeDataModule

    dm = CubeDataModule(str(synthetic_cube["dir"]), ["csr"], window=12, warmup=0, patch=None,
                        val_months=12, gap_months=0, target_base="forcing_memory", p_dropout=0.0)
    dm.setup()
    norm = dm.normalisation()["target_base"]
    assert norm["kind"] == "forcing_memory" and list(norm["memory"]) == ["tp"]  # the cube has no t2m
    train = dm.split.train
    y = dm.targ[0, train]
    resid = y - dm.base_field[0, train]
    land = dm.land
    assert np.nanvar(resid[:, land]) < 0.1 * np.nanvar(y[:, land] - np.nanmean(y[:, land], 0))
    ds = dm._dataset(dm.train_starts(), train, patch=None)
    item = ds[len(ds.starts) - 1]
    t0 = int(item["t0"])
    back = item["y"][:, 0].numpy() * dm.scale[0] + dm.base_field[0, t0:t0 + 12]
    m = item["mask"][:, 0].numpy()
    np.testing.assert_allclose(back[m], np.asarray(dm.targ[0, t0:t0 + 12])[m], atol=1e-3)
