"""Checkpoints and their compatibility with the cube and the config: the one owner of both.

:func:`load_checkpoint` reads a checkpoint file once, validates it and builds the
:class:`~gtws_dl.models.module.ReconstructionModule` from that same dictionary; a file that is not one raises
:class:`InvalidCheckpointError`. The module carries what inference needs (``module.hparams.normalisation``:
channels, statistics, grid, window, targets). The checks refuse, with one message naming the file and the fix:

- :func:`check_grid` — the cube was built on another grid than the config asks for (``ValueError``);
- :func:`check_compatible` — the checkpoint was trained on other predictor channels or another grid than the cube
  holds (:class:`CheckpointMismatchError`);
- :func:`check_normalisation` — the cube's statistics say its predictors hold other numbers than in training;
- :func:`check_inference` — all of the above for ``infer``, plus the targets asked for and the window.
"""

from __future__ import annotations

import inspect
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities.migration import migrate_checkpoint, pl_legacy_patch
from omegaconf import DictConfig

from gtws_dl.config import ConfigError, grid_from
from gtws_dl.models.module import ReconstructionModule

_HPARAMS = ("net", "optimizer", "in_channels", "targets", "normalisation")
_NORM = ("channels", "mean", "std", "grid", "window", "warmup", "targets")


class InvalidCheckpointError(ValueError):
    """A file that is not a readable gtws-dl ReconstructionModule checkpoint."""


class CheckpointMismatchError(ValueError):
    """The checkpoint was trained on another grid or other predictor channels than the cube holds."""


def _not_a_checkpoint(path: Path, why: str) -> InvalidCheckpointError:
    return InvalidCheckpointError(
        f"{path} is not a gtws-dl ReconstructionModule checkpoint: {why}; pass ckpt_path= a last.ckpt/best.ckpt "
        "written by `python train.py` (train/<target>/checkpoints/)"
    )


def load_checkpoint(ckpt_path: str | Path) -> ReconstructionModule:
    """Load a :class:`ReconstructionModule` on the CPU; a file that is not one raises :class:`InvalidCheckpointError`.

    The file is read once (``torch.load``) and validated before the module is built from it: readable torch
    archive, Lightning keys, the module's hyper-parameters and the normalisation statistics inference needs
    (``module.hparams.normalisation``). The module is built as ``ReconstructionModule.load_from_checkpoint``
    builds it (version migration, ``on_load_checkpoint``, strict ``load_state_dict``).
    """
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(
            f"checkpoint {ckpt_path} does not exist; train first (`python train.py target=...`) "
            "or pass ckpt_path=/path/to/last.ckpt"
        )
    if ckpt_path.stat().st_size == 0:
        raise _not_a_checkpoint(ckpt_path, "the file is empty (an interrupted copy?)")
    try:
        with pl_legacy_patch():
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except (
        pickle.UnpicklingError,
        EOFError,
        RuntimeError,
        OSError,
        ValueError,
        zipfile.BadZipFile,
        AttributeError,
        ImportError,
        ModuleNotFoundError,
        IndexError,
        KeyError,
        TypeError,
    ) as err:
        raise _not_a_checkpoint(
            ckpt_path,
            f"torch.load fails ({type(err).__name__}: {err}); the file is "
            "truncated, corrupt or of another kind",
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise _not_a_checkpoint(
            ckpt_path, f"expected a Lightning checkpoint with state_dict and hyper_parameters, found {keys}"
        )
    hp = ckpt["hyper_parameters"]
    missing = [k for k in _HPARAMS if k not in hp]
    if missing:
        raise _not_a_checkpoint(
            ckpt_path,
            f"a checkpoint of another model: its hyper_parameters lack {missing} (found {sorted(hp)[:8]})",
        )
    norm = hp["normalisation"] or {}
    missing = [k for k in _NORM if k not in norm]
    if missing:
        raise _not_a_checkpoint(ckpt_path, f"its normalisation statistics lack {missing}")
    if len(norm["mean"]) != len(norm["channels"]) or len(norm["std"]) != len(norm["channels"]):
        raise _not_a_checkpoint(
            ckpt_path,
            f"its normalisation holds {len(norm['mean'])} means for {len(norm['channels'])} channels",
        )
    try:
        return _build(ckpt)
    except (KeyError, TypeError, RuntimeError, EOFError, ValueError) as err:
        raise _not_a_checkpoint(
            ckpt_path,
            f"its weights do not fit the model its hyper-parameters describe "
            f"({type(err).__name__}: {str(err)[:300]})",
        ) from err


def _build(ckpt: dict) -> ReconstructionModule:
    """The module of a loaded checkpoint dictionary, as ``LightningModule.load_from_checkpoint`` builds it."""
    ckpt, _ = migrate_checkpoint(ckpt)
    init = set(inspect.signature(ReconstructionModule.__init__).parameters) - {"self"}
    module = ReconstructionModule(**{k: v for k, v in ckpt["hyper_parameters"].items() if k in init})
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"], strict=True)
    return module


def check_grid(cfg: DictConfig, manifest: dict) -> None:
    """Refuse a cube built on another grid than the one configured."""
    grid = grid_from(cfg)
    cube = manifest["grid"]
    if abs(cube["res"] - grid.res) > 1e-9 or [round(v, 6) for v in cube["bbox"]] != [
        round(v, 6) for v in grid.bounds
    ]:
        raise ConfigError(
            f"the cube in {cfg.paths.cube_dir} is on a {cube['res']} deg grid over {cube['bbox']}, but the config "
            f"asks for {grid}; re-run `python -m gtws_dl.ingest` with the same grid.* overrides"
        )


def check_compatible(norm: dict, manifest: dict, ckpt: str) -> None:
    """Refuse a checkpoint whose channels or grid differ from the cube's."""
    if list(norm["channels"]) != list(manifest["channels"]):
        extra = sorted(set(norm["channels"]) ^ set(manifest["channels"]))
        raise CheckpointMismatchError(
            f"{ckpt}: trained on predictor channels that differ from the cube's (differences: {extra}); "
            "use a checkpoint trained on this cube or rebuild the cube with the same data config"
        )
    g1, g2 = norm["grid"], manifest["grid"]
    if abs(g1["res"] - g2["res"]) > 1e-9 or g1["shape"] != g2["shape"]:
        raise CheckpointMismatchError(
            f"{ckpt}: trained on a {g1['res']} deg grid of shape {g1['shape']}, the cube is {g2['res']} deg "
            f"{g2['shape']}; reconstruct with a cube on the training grid (grid.* overrides)"
        )


def check_normalisation(norm: dict, manifest: dict, ckpt: str, *, tol_sd: float = 1.0) -> None:
    """Refuse a cube whose statistics say its predictors are not the ones the checkpoint was trained on.

    Inference always uses the checkpoint's statistics (never the cube's). But when both were fitted over the same
    months, a channel whose cube mean moved by more than ``tol_sd`` training standard deviations, or whose spread
    changed by more than 2x, holds other numbers than in training (other units, another source): refuse.
    """
    stats = manifest["stats"]
    if list(stats.get("period", [])) != list(norm.get("stats_period") or []):
        return
    m0, s0 = np.asarray(norm["mean"], float), np.asarray(norm["std"], float)
    m1, s1 = np.asarray(stats["mean"], float), np.asarray(stats["std"], float)
    bad = (np.abs(m1 - m0) > tol_sd * s0) | (s1 > 2 * s0) | (s1 < 0.5 * s0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CheckpointMismatchError(
            f"{ckpt}: the cube's normalisation statistics for predictor {norm['channels'][i]!r} (mean {m1[i]:.4g}, "
            f"std {s1[i]:.4g}) differ from the checkpoint's (mean {m0[i]:.4g}, std {s0[i]:.4g}) over the same "
            f"months {stats['period']}: the inputs changed units or source since training; rebuild the cube with "
            "the data config the model was trained on, or retrain"
        )


def check_inference(cfg: DictConfig, module: ReconstructionModule, manifest: dict) -> None:
    """Every check that the checkpoint ``cfg.ckpt_path`` (loaded as ``module``) fits the cube and the config of
    ``infer``: config grid vs cube, channels and grid, normalisation statistics, targets, warm-up < window."""
    ckpt = str(cfg.ckpt_path)
    check_grid(cfg, manifest)
    norm = dict(module.hparams.normalisation)
    check_compatible(norm, manifest, ckpt)
    check_normalisation(norm, manifest, ckpt)
    want = [str(c) for c in cfg.target.centres]
    have = [str(t) for t in module.hparams.targets]
    if sorted(want) != sorted(have):
        raise CheckpointMismatchError(
            f"{cfg.ckpt_path}: the checkpoint predicts targets {have}, but target={cfg.target.name} asks for "
            f"{want}; pass the checkpoint of train/{cfg.target.name}/ or set target= to match the checkpoint"
        )
    if int(norm["warmup"]) >= int(norm["window"]):
        raise InvalidCheckpointError(f"{cfg.ckpt_path}: warm-up {norm['warmup']} >= window {norm['window']}")
