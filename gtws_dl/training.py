"""``train(cfg)``: fit a network on the cube for one or several GRACE centres."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from gtws_dl import tiling
from gtws_dl.checkpoint import check_grid
from gtws_dl.config import (
    check_flag,
    command,
    conf_dir,
    grid_from,
    single_lightning_log,
    to_plain,
    validate_config,
)
from gtws_dl.cube.shift import warnings as shift_warnings
from gtws_dl.data import VAL_TILE, VAL_WHOLE_CELLS
from gtws_dl.lock import OutputLock, remove_stale_temps_under, write_text_atomic
from gtws_dl.models.accel import accelerate

LOGGER = logging.getLogger(__name__)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, default=str))


def run_dir(cfg: DictConfig) -> Path:
    """``cfg.out_dir``; in a Hydra multirun that sweeps keys other than ``target``, plus a folder named by this
    job's values of those swept keys (e.g. ``train/csr/model.net.hidden=[16]``), so every sweep job writes its own
    checkpoints and ``train_summary.json`` while a sweep over centres alone keeps ``train/<target>/``."""
    out_dir = Path(cfg.out_dir)
    if not cfg.get("multirun_subdir", False):
        return out_dir
    try:
        hc = HydraConfig.get()
    except ValueError:  # not under @hydra.main (tests, the leaderboard)
        return out_dir
    if hc.mode != RunMode.MULTIRUN:
        return out_dir
    parser = OverridesParser.create()
    cli = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
    swept = {o.key_or_group for o in parser.parse_overrides(cli) if o.is_sweep_override()} - {"target"}
    mine = [o for o in parser.parse_overrides(list(hc.overrides.task)) if o.key_or_group in swept]
    if not mine:
        return out_dir
    name = ",".join(f"{o.key_or_group}={o.get_value_element_as_str()}" for o in mine).replace("/", "_")
    return out_dir / name


# top-level keys of conf/train.yaml (as in conf/infer.yaml) applied to the network, not Trainer arguments
TRAINER_SPEED_OPTIONS = ("channels_last", "compile")


def trainer_options(cfg: DictConfig) -> tuple[dict, dict[str, bool]]:
    """(the Trainer arguments ``cfg.trainer``, the speed options ``{channels_last, compile}``: top-level keys);
    each option must be a boolean (absent: false), else :class:`~gtws_dl.config.ConfigError` naming the key."""
    speed = {key: check_flag(key, cfg.get(key, False), False) for key in TRAINER_SPEED_OPTIONS}
    return OmegaConf.to_container(cfg.trainer, resolve=True), speed


def validation_tiles(dm, net) -> list | None:
    """The validation tiles of ``dm`` for ``net`` (None: whole fields): ``datamodule.val_tile`` cells per side,
    or :data:`gtws_dl.data.VAL_TILE` when the field exceeds :data:`gtws_dl.data.VAL_WHOLE_CELLS`; each with the
    net's halo for a window, so the validation loss is the whole field's, in bounded memory."""
    H, W = dm.land.shape
    side = dm.val_tile or (VAL_TILE if H * W > VAL_WHOLE_CELLS else None)
    if side is None or (side >= H and side >= W):
        return None
    tiles = tiling.plan(net, dm.window, (H, W), (side, side), dm.land)
    LOGGER.info("validation in %d tiles of up to %dx%d cells plus the halo (datamodule.val_tile)", len(tiles),
                side, side)
    return tiles


def _rank_zero() -> bool:
    """Whether this process is the first rank (or the only process): under DDP only it holds the writer lock."""
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0) == 0


def train(cfg: DictConfig) -> dict:
    """Train and return a summary (best checkpoint, validation loss, parameters, wall time).

    One writer per run folder: a second training into the same ``out_dir`` while the first runs is refused
    (:class:`~gtws_dl.lock.OutputLockedError`); temp files of a killed run are removed."""
    validate_config(cfg)  # a bad override is refused before anything is created
    trainer_options(cfg)
    single_lightning_log()
    out_dir = run_dir(cfg)
    with OutputLock(out_dir) if _rank_zero() else nullcontext():
        remove_stale_temps_under(out_dir, out_dir / "checkpoints")
        return _fit(cfg, out_dir)


def _fit(cfg: DictConfig, out_dir: Path) -> dict:
    L.seed_everything(int(cfg.seed), workers=True)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    dm = instantiate(cfg.datamodule)
    dm.setup("fit")
    check_grid(cfg, dm.manifest)
    grid = grid_from(cfg)
    lon_circular = grid.nlon * grid.res >= 360 - 1e-9  # global: convolutions wrap at the dateline
    norm = dm.normalisation()
    model = instantiate(
        cfg.model,
        in_channels=len(dm.channels),
        targets=dm.targets,
        normalisation=norm,
        lon_circular=bool(lon_circular),
        _convert_="all",
    )
    dm.val_tiles = validation_tiles(dm, model.net)
    model.target_scale.copy_(torch.from_numpy(dm.scale))
    if dm.base.kind != "none":
        model.target_base.copy_(torch.from_numpy(dm.base.coef))
    LOGGER.info(
        "model %s: %d parameters; %s", type(model.net).__name__, model.n_parameters(), dm.split.describe()
    )
    shift = dm.manifest.get("predictor_shift")
    shift_lines = shift_warnings(shift)
    for line in shift_lines:  # the reconstruction extrapolates there (gtws_dl/cube/shift.py)
        LOGGER.warning("predictor %s", line)

    # no version counter: a resumed run must keep updating last.ckpt/best.ckpt, not write last-v1.ckpt
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val_loss",
        mode="min",
        save_last=True,
        save_top_k=1,
        enable_version_counter=False,
    )
    trainer_cfg, speed = trainer_options(cfg)
    accelerate(model.net, **speed)  # in place: the checkpoint's state_dict keys stay those of the plain net
    trainer = instantiate(
        trainer_cfg,
        callbacks=[checkpoint],
        logger=CSVLogger(out_dir, name="logs"),
        default_root_dir=str(out_dir),
    )
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last":
        last = ckpt_dir / "last.ckpt"
        ckpt_path = str(last) if last.exists() else None
        LOGGER.info("resuming from %s", ckpt_path or "scratch (no last.ckpt yet)")
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    wall = time.perf_counter() - t0
    summary = {
        "target": cfg.target.name,
        "centres": list(cfg.target.centres),
        "out_dir": str(out_dir),
        "model": type(model.net).__name__,
        "likelihood": model.likelihood,
        "best_checkpoint": checkpoint.best_model_path,
        "last_checkpoint": str(ckpt_dir / "last.ckpt"),
        "best_val_loss": float(checkpoint.best_model_score)
        if checkpoint.best_model_score is not None
        else None,
        "parameters": model.n_parameters(),
        "train_seconds": wall,
        "global_step": trainer.global_step,
        "split": dm.split.describe(),
        "predictor_shift": shift,
        "predictor_shift_warnings": shift_lines,
        "config": to_plain(cfg),
    }
    if trainer.is_global_zero:  # under DDP every rank gets here; rank 0 holds the checkpoint callback's view
        write_json_atomic(out_dir / "train_summary.json", summary)
    LOGGER.info(
        "trained %s in %.0f s; best val_loss %s; checkpoints in %s",
        cfg.target.name,
        wall,
        summary["best_val_loss"],
        ckpt_dir,
    )
    return summary


@hydra.main(config_path=conf_dir(), config_name="train", version_base="1.3")
@command(reads_cube=True)
def main(cfg: DictConfig) -> float | None:
    """``gtws-dl train`` / ``python train.py``: the best validation loss (for Hydra sweepers)."""
    return train(cfg)["best_val_loss"]
