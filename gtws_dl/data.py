"""Lightning DataModule: windows of months read from the Zarr cubes, with the honest time split of
:mod:`gtws_dl.split`.

Batches are dicts of tensors:
``x`` [B, T, C, H, W] normalised predictors (NaN → 0); ``y`` [B, T, K, H, W] targets minus their per-cell
base (:mod:`gtws_dl.target_base`; zero with ``target_base="none"``) divided by the per-cell
training-period scale ((mm − base) / scale); ``mask`` [B, T, K, H, W] bool, True where the loss counts
(land, finite target, past the warm-up, month in the split).
"""

from __future__ import annotations

import logging
import warnings

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from gtws_dl.config import ConfigError
from gtws_dl.cube.store import check_cube_targets, cube_location, open_cube
from gtws_dl.split import available_months, time_split
from gtws_dl.target_base import MEMORY, base_of_every_month, fit_target_base

LOGGER = logging.getLogger(__name__)


class WindowDataset(Dataset):
    """Windows of ``window`` months; training samples land-centred spatial patches, validation the full field.

    ``scale`` (K, H, W) is the per-cell target scale in mm, ``base`` (K, T, H, W) the per-cell base in mm
    subtracted from the targets first (None: none). ``dropout`` lists (channel, availability channel,
    climatology (12, H, W)) triples: with probability ``p_dropout`` a training window sees such a predictor
    replaced by its climatology (availability 0) before a random month, as before the record starts (LAI
    before 1982, SIF before 2001), so the network learns the regime it meets in the pre-satellite years.
    """

    def __init__(self, pred, targ, *, starts, loss_months, land, mean, std, scale, window, warmup,
                 months, patch=None, seed=0, epoch_len=None, dropout=(), p_dropout=0.0, base=None,
                 times=None, tiles=None) -> None:
        self.pred, self.targ = pred, targ  # array-likes (zarr or numpy), (T, C, H, W) and (K, T, H, W)
        self.starts = np.asarray(starts)
        self.loss_months = np.zeros(pred.shape[0], dtype=bool)
        self.loss_months[loss_months] = True
        self.land = land
        self.land_cells = np.argwhere(land)
        self.mean = mean[:, None, None].astype(np.float32)
        self.std = std[:, None, None].astype(np.float32)
        self.scale = scale.astype(np.float32)
        self.months = np.asarray(months)  # calendar month (1..12) of every cube month
        self.window, self.warmup, self.patch, self.seed = window, warmup, patch, seed
        self.epoch_len = epoch_len or len(self.starts)
        self.dropout, self.p_dropout = list(dropout), float(p_dropout)
        self.base = base  # (K, T, H, W) mm subtracted from the targets, or None
        self.times = times
        self.epoch = 0
        # validation in tiles (:func:`gtws_dl.tiling.plan`: core + halo, ocean-only tiles left out): item i is
        # window i // len(tiles) on tile i % len(tiles); the loss mask keeps the tile's core only
        self.tiles = list(tiles) if tiles else None
        if self.tiles:
            self.epoch_len = len(self.starts) * len(self.tiles)

    def __len__(self) -> int:
        return self.epoch_len

    def _tile_item(self, i: int) -> dict[str, torch.Tensor]:
        t = self.tiles[i % len(self.tiles)]
        t0 = int(self.starts[i // len(self.tiles)])
        rows, cols, runs = slice(*t.read_rows), np.asarray(t.read_cols), t.col_runs  # across the dateline: 2 runs
        x = np.concatenate([np.asarray(self.pred[t0:t0 + self.window, :, rows, c], np.float32) for c in runs], -1)
        core = np.zeros((rows.stop - rows.start, len(cols)), bool)
        core[t.core] = True
        item = self._pack(x, t0, lambda a: np.concatenate([a[:, t0:t0 + self.window, rows, c] for c in runs], -1),
                          (rows, cols), core)
        item["origin"] = torch.tensor([t.read_rows[0], int(cols[0])])
        item["scale"] = torch.from_numpy(np.ascontiguousarray(self.scale[:, rows][..., cols]))
        return item

    def _pack(self, x: np.ndarray, t0: int, window_of, where: tuple, loss_cells: np.ndarray | None = None) -> dict:
        """The sample of window ``t0``: ``x`` (T, C, h, w) raw predictors normalised; targets ``window_of(a)``
        of a (K, time, H, W) array, less the base, over the scale; the mask of finite land loss months (and
        ``loss_cells``); ``where`` = (rows, cols) of the sample in the grid (orthogonal indices)."""
        x = (x - self.mean) / self.std
        x[~np.isfinite(x)] = 0.0
        y = np.asarray(window_of(self.targ), dtype=np.float32)
        if self.base is not None:
            y = y - window_of(self.base)
        rows, cols = where
        y = y.transpose(1, 0, 2, 3) / self.scale[None, :, rows][..., cols]
        m = np.isfinite(y) & self.land[rows][:, cols][None, None]
        if loss_cells is not None:
            m &= loss_cells
        keep = self.loss_months[t0:t0 + self.window].copy()
        keep[: self.warmup] = False
        m &= keep[:, None, None, None]
        y[~m] = 0.0
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(y), "mask": torch.from_numpy(m),
                "t0": torch.tensor(t0)}

    def _crop(self, rng) -> tuple[int, int, int, int]:
        H, W = self.land.shape
        if self.patch is None:
            return 0, 0, H, W
        ph, pw = min(self.patch[0] or H, H), min(self.patch[1] or W, W)
        ci, cj = self.land_cells[rng.integers(len(self.land_cells))]  # centred on a random land cell
        la = int(np.clip(ci - ph // 2, 0, H - ph))
        lo = int(np.clip(cj - pw // 2, 0, W - pw))
        return la, lo, ph, pw

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.tiles:
            return self._tile_item(i)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        t0 = int(self.starts[i % len(self.starts)] if self.epoch_len == len(self.starts)
                 else self.starts[rng.integers(len(self.starts))])
        t1 = t0 + self.window
        la, lo, ph, pw = self._crop(rng)
        sl = (slice(la, la + ph), slice(lo, lo + pw))
        x = np.array(self.pred[t0:t1, :, sl[0], sl[1]], dtype=np.float32)
        for ch, ch_avail, clim in self.dropout:
            if rng.random() < self.p_dropout:
                cut = int(rng.integers(1, self.window + 1))  # months before `cut` lack the record
                x[:cut, ch] = clim[self.months[t0:t0 + cut] - 1][:, sl[0], sl[1]]
                x[:cut, ch_avail] = 0.0
        item = self._pack(x, t0, lambda a: a[:, t0:t1, sl[0], sl[1]], sl)
        item["origin"] = torch.tensor([la, lo])
        return item


def availability_climatologies(pred, channels: list[str]) -> list[tuple[int, int, np.ndarray]]:
    """(channel, availability channel, climatology (12, H, W)) for every ``X`` with an ``X_available`` twin.

    The climatology is what the cube holds before the predictor's record starts (the reader's fill), so the
    training-time replacement equals what inference meets. Channels whose record covers the cube are skipped.
    """
    out = []
    for name in channels:
        if f"{name}_available" not in channels:
            continue
        ch, ca = channels.index(name), channels.index(f"{name}_available")
        gaps = np.flatnonzero(np.asarray(pred[:, ca, 0, 0]) < 0.5)
        if len(gaps) < 12:
            continue
        out.append((ch, ca, np.asarray(pred[gaps[0]:gaps[0] + 12, ch], dtype=np.float32)))  # 12 filled months
    return out


VAL_WHOLE_CELLS = 2**17  # validation on whole fields up to this many cells (a 0.25 deg box of ~32 x 64 degrees)
VAL_TILE = 128  # cells per side of the validation tiles beyond it (plus the halo: 224 x 224 for a ConvLSTM)


class CubeDataModule(L.LightningDataModule):
    """Reads ``cube_dir`` (see :mod:`gtws_dl.cube.build`) for the target centres in ``targets``.

    Parameters
    ----------
    window, warmup : months per sample and months at its start excluded from the loss (state spin-up)
    patch : (lat, lon) cells of the random training crops; None = full field
    val_months, gap_months : blocked split (gap defaults to ``window``)
    val_block : ``last`` (the last GRACE months validate: forward) or ``first`` (the first GRACE months
        validate, training starts after them: backward, the direction a reconstruction extrapolates in)
    in_memory : "auto" loads the cubes into RAM when they are smaller than ``max_in_memory_gb``
    min_scale_mm : floor of the per-cell target scale (GRACE noise level), mm
    target_base : ``forcing_memory`` = the network learns the departure from each cell's linear model of
        decayed precipitation and temperature memories (GRACE-REC's, fitted on the training months);
        ``seasonal_trend`` = from each cell's training-period climatology + held linear trend
        (:mod:`gtws_dl.target_base`); ``none`` = the whole signal
    p_dropout : probability that a training window loses a partial-record predictor (LAI, SIF) as before
        its record starts
    val_tile : cells per side of the validation tiles (each with the network's halo, so the loss is the whole
        field's); None = whole fields up to :data:`VAL_WHOLE_CELLS` cells, tiles of :data:`VAL_TILE` beyond
    fit_memory_gb : working set (GB) of the per-cell base's fit and evaluation, in latitude bands (the same
        numbers whatever it is); None = :data:`gtws_dl.target_base.FIT_MEMORY_MB`
    """

    def __init__(self, cube_dir: str, targets: list[str], *, window: int = 24, warmup: int = 12,
                 batch_size: int = 4, patch: list[int] | None = None, val_months: int = 24,
                 gap_months: int | None = None, samples_per_epoch: int | None = None, num_workers: int = 0,
                 in_memory: str | bool = "auto", max_in_memory_gb: float = 6.0, seed: int = 0,
                 min_scale_mm: float = 10.0, p_dropout: float = 0.5, target_base: str = "none",
                 val_block: str = "last", val_tile: int | None = None, fit_memory_gb: float | None = None) -> None:
        super().__init__()
        if warmup >= window:
            raise ValueError(f"datamodule.warmup={warmup} must be smaller than datamodule.window={window}")
        self.cube_dir = cube_location(cube_dir)  # a directory or an fsspec URL
        self.targets = list(targets)
        self.window, self.warmup, self.batch_size = window, warmup, batch_size
        self.patch = tuple(patch) if patch is not None else None
        self.val_months = val_months
        self.gap_months = window if gap_months is None else gap_months
        self.val_block = str(val_block)
        self.samples_per_epoch, self.num_workers = samples_per_epoch, num_workers
        self.in_memory, self.max_in_memory_gb, self.seed = in_memory, max_in_memory_gb, seed
        self.min_scale_mm, self.p_dropout = float(min_scale_mm), float(p_dropout)
        self.target_base = str(target_base)
        self.val_tile = None if val_tile is None else int(val_tile)
        self.fit_memory_mb = None if fit_memory_gb is None else float(fit_memory_gb) * 1024.0
        self.val_tiles = None  # validation tiles (gtws_dl.tiling.Tile), planned by gtws_dl.training with the net
        self._ready = False

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        manifest, pred_g, targ_g = open_cube(self.cube_dir)
        self.manifest = manifest
        self.channels = list(manifest["channels"])
        self.times = pd.DatetimeIndex(pd.date_range(manifest["time"]["start"], periods=manifest["time"]["n"],
                                                    freq="MS"))
        cube_targets = [str(t) for t in targ_g["target"][:]]
        check_cube_targets(self.cube_dir, self.targets)
        tidx = [cube_targets.index(t) for t in self.targets]
        pred, targ = pred_g["predictors"], targ_g["twsa"]
        self.land = np.asarray(pred_g["land_mask"][:], dtype=bool)
        gb = pred.nbytes / 1e9
        load = self.in_memory is True or (self.in_memory == "auto" and gb <= self.max_in_memory_gb)
        if load:
            LOGGER.info("loading %.2f GB predictor cube into memory", gb)
            pred = pred[:]
        self.pred = pred
        self.targ = targ.get_orthogonal_selection((tidx, slice(None), slice(None), slice(None)))
        self.split = time_split(self.times, available_months(self.targ, self.land), val_months=self.val_months,
                                gap_months=self.gap_months, block=self.val_block)
        LOGGER.info("split: %s", self.split.describe())
        self.mean = np.asarray(manifest["stats"]["mean"], dtype=np.float32)
        self.std = np.asarray(manifest["stats"]["std"], dtype=np.float32)
        lo, hi = (pd.Timestamp(p) for p in manifest["stats"]["period"])
        if hi > self.times[self.split.train_end]:
            stats = (manifest.get("periods") or {}).get("stats") or {}
            how = (f" (chosen from the data with data.split.val_months={stats['split'][0]}, "
                   f"data.split.gap_months={stats['split'][1]})" if stats.get("from") == "data" and "split" in stats
                   else " (data.stats_period)")
            raise ConfigError(  # a user error: one line, no traceback (gtws_dl.config.command)
                f"the cube's normalisation statistics use months up to {hi:%Y-%m}{how}, after the last training "
                f"month {self.times[self.split.train_end]:%Y-%m} of this split (datamodule.val_months="
                f"{self.val_months}, gap_months={self.gap_months}); rebuild the cube with data.stats_period ending "
                f"by {self.times[self.split.train_end]:%Y-%m} (before the validation months) or with data.split "
                "matching the training split"
            )
        for name, role in (("train", self.split.train), ("validation", self.split.val)):
            if len(role):
                LOGGER.info("period %s chosen from the data: %s .. %s (%d GRACE months of %s)", name,
                            f"{self.times[role[0]]:%Y-%m}", f"{self.times[role[-1]]:%Y-%m}", len(role),
                            ", ".join(self.targets))
        # per-cell base (K, P, H, W) from the training months only; the network learns what it leaves over
        self.base = fit_target_base(self.targ, self.times, self.split.train, self.target_base, pred=self.pred,
                                    channels=self.channels, mean=self.mean, std=self.std,
                                    memory=self._memory() if self.target_base == "forcing_memory" else None,
                                    memory_mb=self.fit_memory_mb)
        # the base of every month (K, T, H, W) mm, as large as the targets held above; None for "none"
        self.base_field = None
        if self.base.kind != "none":
            self.base_field = base_of_every_month(self.base, self.pred, self.times, self.channels, self.mean,
                                                  self.std, where=str(self.cube_dir), memory_mb=self.fit_memory_mb)
        self.scale = self._scale()
        self.months = self.times.month.values
        self.dropout = availability_climatologies(self.pred, self.channels) if self.p_dropout > 0 else []
        self._ready = True

    def _scale(self, rows: int = 64) -> np.ndarray:
        """Per-cell target scale (K, H, W) mm, the std of the training months' residual (target less base), in
        bands of ``rows`` latitude rows (no whole-field copies): every land cell weighs alike in the loss."""
        K, _, H, W = self.targ.shape
        sd = np.empty((K, H, W), np.float32)
        train = self.split.train
        for r0 in range(0, H, rows):
            band = slice(r0, min(H, r0 + rows))
            resid = self.targ[:, train, band]
            if self.base_field is not None:
                resid = resid - self.base_field[:, train, band]
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN ocean cells
                sd[:, band] = np.nanstd(resid, axis=1)
        return np.where(np.isfinite(sd), np.maximum(sd, self.min_scale_mm), 1.0).astype(np.float32)

    def _memory(self) -> dict:
        """The forcing memories of the ``forcing_memory`` base that this cube's channels allow."""
        memory = {c: taus for c, taus in MEMORY.items() if c in self.channels}
        if "tp" not in memory:
            raise ConfigError(f"datamodule.target_base=forcing_memory needs the precipitation channel 'tp', which "
                              f"the cube {self.cube_dir} lacks (channels {self.channels}); use "
                              "datamodule.target_base=none or seasonal_trend")
        if len(memory) < len(MEMORY):
            LOGGER.warning("forcing_memory base: the cube has no %s channel; its memories are left out",
                           sorted(set(MEMORY) - set(memory)))
        return memory

    def normalisation(self) -> dict:
        """What inference needs to reproduce the inputs: saved with the checkpoint."""
        return {"channels": self.channels, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "targets": self.targets, "min_scale_mm": self.min_scale_mm,
                "grid": self.manifest["grid"], "stats_period": self.manifest["stats"]["period"],
                "train_period": [f"{self.times[self.split.train[0]]:%Y-%m}",
                                 f"{self.times[self.split.train[-1]]:%Y-%m}"],
                "val_period": [f"{self.times[self.split.val[0]]:%Y-%m}",
                               f"{self.times[self.split.val[-1]]:%Y-%m}"] if len(self.split.val) else None,
                "val_block": self.val_block,
                "window": self.window, "warmup": self.warmup, "target_base": self.base.meta()}

    def _dataset(self, starts, loss_months, *, patch, epoch_len=None, train=False, tiles=None) -> WindowDataset:
        return WindowDataset(self.pred, self.targ, starts=starts, loss_months=loss_months, land=self.land,
                             mean=self.mean, std=self.std, scale=self.scale, window=self.window,
                             warmup=self.warmup, months=self.months, patch=patch, seed=self.seed,
                             epoch_len=epoch_len, dropout=self.dropout if train else (),
                             p_dropout=self.p_dropout, base=self.base_field, times=self.times, tiles=tiles)

    def train_starts(self) -> np.ndarray:
        """Window starts whose loss part holds a training month and which end by ``train_end``."""
        s = self.split
        starts = np.arange(0, s.train_end - self.window + 2)
        loss = np.zeros(len(self.times), dtype=bool)
        loss[s.train] = True
        ok = [t0 for t0 in starts if loss[t0 + self.warmup:t0 + self.window].any()]
        return np.asarray(ok)

    def val_starts(self) -> np.ndarray:
        """Windows whose post-warm-up parts tile the validation months once each."""
        s = self.split
        stride = self.window - self.warmup
        first = s.val[0] - self.warmup
        starts = np.arange(first, s.val[-1] - self.warmup + 1, stride).clip(0, len(self.times) - self.window)
        starts = np.unique(starts)  # a record starting with the validation months clips several starts to 0
        scored = np.zeros(len(self.times), dtype=bool)
        for t0 in starts:
            scored[t0 + self.warmup:t0 + self.window] = True
        lost = [t for t in s.val if not scored[t]]
        if lost:
            span = f"{self.times[lost[0]]:%Y-%m}..{self.times[lost[-1]]:%Y-%m}"
            fix = (f"ingest forcing from at least {self.warmup} months before the first validation month, "
                   "or set data.split.val_block=last, or a smaller datamodule.warmup")
            if len(lost) == len(s.val):
                raise ConfigError(
                    f"no validation month can be scored: all {len(lost)} ({span}) fall in the first "
                    f"datamodule.warmup={self.warmup} months of the record ({self.times[0]:%Y-%m}), which only "
                    f"spin the model's state up; {fix}")
            LOGGER.warning("%d validation months (%s) fall in the record's first datamodule.warmup=%d months and are "
                        "not scored; %s", len(lost), span, self.warmup, fix)
        return starts

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset(self.train_starts(), self.split.train, patch=self.patch,
                           epoch_len=self.samples_per_epoch, train=True)
        ds.epoch = self.trainer.current_epoch if self.trainer is not None else 0
        # an explicit per-epoch order: a resumed run (which iterates the loader once more) sees the same batches
        order = np.random.default_rng((self.seed, ds.epoch)).permutation(len(ds)).tolist()
        return DataLoader(ds, batch_size=self.batch_size, sampler=order, num_workers=self.num_workers,
                          persistent_workers=False, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        # in tiles when gtws_dl.training planned them (it needs the net's halo)
        ds = self._dataset(self.val_starts(), self.split.val, patch=None, tiles=self.val_tiles)
        return DataLoader(ds, batch_size=1, shuffle=False, num_workers=self.num_workers)
