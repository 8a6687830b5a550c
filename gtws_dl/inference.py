"""``infer(cfg)``: reconstruct every month with a trained checkpoint, then write the products.

Everything that can be known before the first month is predicted is checked first — config types, the
checkpoint, the cube, their compatibility, that the outputs are writable and that the disk has room — so a bad
run refuses with one clear error and touches no output.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from gtws_dl.config import check_flag, grid_from, to_plain, validate_config
from gtws_dl.cube.store import CubeError, open_cube
from gtws_dl.diskspace import check_free_space, check_writable, float32_bytes
from gtws_dl.models.module import ReconstructionModule
from gtws_dl.reconstruct import CheckpointMismatchError, check_compatible, reconstruct, reconstruct_ensemble
from gtws_dl.training import check_grid

LOGGER = logging.getLogger(__name__)

_HPARAMS = ("net", "optimizer", "in_channels", "targets", "normalisation")
_NORM = ("channels", "mean", "std", "grid", "window", "warmup", "targets")


class InvalidCheckpointError(ValueError):
    """A file that is not a readable gtws-dl ReconstructionModule checkpoint."""


def _not_a_checkpoint(path: Path, why: str) -> InvalidCheckpointError:
    return InvalidCheckpointError(
        f"{path} is not a gtws-dl ReconstructionModule checkpoint: {why}; pass ckpt_path= a last.ckpt/best.ckpt "
        "written by `python train.py` (train/<target>/checkpoints/)"
    )


def load_checkpoint(ckpt_path: str | Path) -> ReconstructionModule:
    """Load a :class:`ReconstructionModule` on the CPU; a file that is not one raises :class:`InvalidCheckpointError`.

    The file is validated before the module is built: readable torch archive, Lightning keys, the module's
    hyper-parameters and the normalisation statistics inference needs.
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
    del ckpt
    try:
        return ReconstructionModule.load_from_checkpoint(
            str(ckpt_path), map_location="cpu", weights_only=False
        )
    except (KeyError, TypeError, RuntimeError, EOFError, ValueError) as err:
        raise _not_a_checkpoint(
            ckpt_path,
            f"its weights do not fit the model its hyper-parameters describe "
            f"({type(err).__name__}: {str(err)[:300]})",
        ) from err


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


SPEED_OPTIONS = {"prefetch": True, "channels_last": False, "compile": False}  # conf/infer.yaml keys, defaults


def speed_options(cfg: DictConfig) -> dict[str, bool]:
    """``prefetch``, ``channels_last``, ``compile`` of an infer config (defaults where absent); each must be a
    boolean, else :class:`~gtws_dl.config.ConfigError` naming the key."""
    return {key: check_flag(key, cfg.get(key, default), default) for key, default in SPEED_OPTIONS.items()}


def preflight(cfg: DictConfig) -> tuple[ReconstructionModule, dict]:
    """Every check of :func:`infer` that needs no output: returns (module, cube manifest)."""
    validate_config(cfg)
    speed_options(cfg)
    if cfg.get("ckpt_path") in (None, "", "last"):
        raise InvalidCheckpointError(
            "ckpt_path must name a checkpoint file for inference, e.g. "
            "ckpt_path=outputs/demo/train/csr/checkpoints/best.ckpt"
        )
    module = load_checkpoint(cfg.ckpt_path)
    manifest, pred_g, targ_g = open_cube(cfg.paths.cube_dir)
    check_grid(cfg, manifest)
    norm = dict(module.hparams.normalisation)
    check_compatible(norm, manifest, str(cfg.ckpt_path))
    check_normalisation(norm, manifest, str(cfg.ckpt_path))
    want = [str(c) for c in cfg.target.centres]
    have = [str(t) for t in module.hparams.targets]
    if sorted(want) != sorted(have):
        raise CheckpointMismatchError(
            f"{cfg.ckpt_path}: the checkpoint predicts targets {have}, but target={cfg.target.name} asks for "
            f"{want}; pass the checkpoint of train/{cfg.target.name}/ or set target= to match the checkpoint"
        )
    if int(norm["warmup"]) >= int(norm["window"]):
        raise InvalidCheckpointError(f"{cfg.ckpt_path}: warm-up {norm['warmup']} >= window {norm['window']}")
    nt, nc, H, W = pred_g["predictors"].shape
    if nt == 0:
        raise CubeError(f"{cfg.paths.cube_dir}: the cube holds no month")
    recon_dir, products_dir = Path(cfg.paths.recon_dir), Path(cfg.paths.products_dir)
    check_writable(recon_dir, what="reconstruction directory", config_key="paths.recon_dir")
    check_writable(products_dir, what="products directory", config_key="paths.products_dir")
    K = len(have)
    check_free_space(
        recon_dir,
        float32_bytes(K, nt, H, W),
        what=f"reconstruction {recon_dir} ({K} x {nt} months)",
        config_key="paths.recon_dir",
    )
    # per centre: NetCDF + Zarr copy of the product and of its detrended+deseasonalized twin
    zcopy = bool(cfg.get("products", {}).get("zarr_copy", True))
    check_free_space(
        products_dir,
        float32_bytes(K * 2 * (2 if zcopy else 1), nt, H, W),
        what=f"products {products_dir}",
        config_key="paths.products_dir",
    )
    del targ_g
    return module, manifest


def infer(cfg: DictConfig) -> dict:
    """Reconstruct into ``recon_dir/<target>.zarr`` and publish products; returns their paths.

    Writes ``products_dir/manifest.json`` (inputs, checksums, config, code version) last.
    """
    from gtws_dl.post.manifest import write_products_manifest
    from gtws_dl.post.publish import publish

    members = [str(p) for p in (cfg.get("ensemble") or [])]
    for member in members:  # every member passes the same pre-flight checks before anything is written
        preflight(OmegaConf.merge(cfg, {"ckpt_path": member}))
    module, manifest = preflight(OmegaConf.merge(cfg, {"ckpt_path": members[0]}) if members else cfg)
    out = Path(cfg.paths.recon_dir) / f"{cfg.target.name}.zarr"
    out.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {
        "device": cfg.device,
        "amp": bool(cfg.amp),
        "batch_windows": int(cfg.get("batch_windows") or 4),
        "tile": tuple(cfg.tile) if cfg.get("tile") else None,
        **speed_options(cfg),
    }
    if members:  # ensemble mean -> twsa, total spread -> twsa_std
        recon = reconstruct_ensemble(members, cfg.paths.cube_dir, out, load=load_checkpoint, **kwargs)
    else:
        recon = reconstruct(module, cfg.paths.cube_dir, out, ckpt_path=cfg.ckpt_path, **kwargs)
    written = publish(
        recon,
        cfg.paths.products_dir,
        grid=grid_from(cfg),
        cube_dir=cfg.paths.cube_dir,
        normalisation=dict(module.hparams.normalisation),
        config=to_plain(cfg),
        products=to_plain(cfg.products),
        baseline=tuple(manifest.get("baseline", ("2004-01", "2009-12"))),
    )
    written["manifest"] = write_products_manifest(
        cfg.paths.products_dir,
        written=written,
        checkpoint=members[0] if members else cfg.ckpt_path,
        cube_manifest=manifest,
        reconstruction=recon,
        config=to_plain(cfg),
    )
    print(summary(written, grid=grid_from(cfg), centres=list(module.targets)))
    return written


def summary(written: dict, *, grid, centres: list[str]) -> str:
    """A few lines for the terminal: period, grid, products and regional trends (Gt/yr, whole record)."""
    import numpy as np
    import pandas as pd

    sheets = pd.read_excel(written["xlsx"], sheet_name=centres)
    first = sheets[centres[0]]
    lines = [
        f"reconstructed {first['time'].iloc[0]}..{first['time'].iloc[-1]} ({len(first)} months) "
        f"on a {grid} grid",
        f"products in {Path(written['xlsx']).parent}: "
        + ", ".join(sorted(Path(p).name for k, p in written.items() if str(p).endswith(".nc"))),
    ]
    regions = ("global_land", "global_land_excl_greenland_antarctica", "greenland", "antarctica")
    lines.append(
        "linear trend, Gt/yr (whole record): "
        + "; ".join(
            f"{c}: "
            + ", ".join(
                f"{r} {np.polyfit(np.arange(len(df)) / 12.0, df[f'{r}_Gt'].to_numpy(float), 1)[0]:+.1f}"
                for r in regions
                if f"{r}_Gt" in df and np.isfinite(df[f"{r}_Gt"]).all()
            )
            for c, df in sheets.items()
        )
    )
    return "\n".join(lines)
