"""``infer(cfg)``: reconstruct every month with a trained checkpoint, then write the products."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from gtws_dl.config import grid_from, to_plain
from gtws_dl.cube import open_cube
from gtws_dl.models.module import ReconstructionModule
from gtws_dl.reconstruct import reconstruct
from gtws_dl.training import check_grid

LOGGER = logging.getLogger(__name__)


def load_checkpoint(ckpt_path: str | Path) -> ReconstructionModule:
    """Load a :class:`ReconstructionModule` on the CPU, with a clear error if the file is not one."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(
            f"checkpoint {ckpt_path} does not exist; train first (`python train.py target=...`) "
            "or pass ckpt_path=/path/to/last.ckpt"
        )
    try:
        return ReconstructionModule.load_from_checkpoint(str(ckpt_path), map_location="cpu", weights_only=False)
    except (KeyError, TypeError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{ckpt_path} is not a gtws-dl ReconstructionModule checkpoint ({type(err).__name__}: {err})"
        ) from err


def infer(cfg: DictConfig) -> dict:
    """Reconstruct into ``recon_dir/<target>.zarr`` and publish products; returns their paths."""
    from gtws_dl.post.publish import publish

    module = load_checkpoint(cfg.ckpt_path)
    manifest, _, _ = open_cube(cfg.paths.cube_dir)
    check_grid(cfg, manifest)
    out = Path(cfg.paths.recon_dir) / f"{cfg.target.name}.zarr"
    out.parent.mkdir(parents=True, exist_ok=True)
    bw = cfg.get("batch_windows") or 4
    recon = reconstruct(module, cfg.paths.cube_dir, out, ckpt_path=cfg.ckpt_path, device=cfg.device,
                        amp=bool(cfg.amp), batch_windows=int(bw),
                        tile=tuple(cfg.tile) if cfg.get("tile") else None)
    return publish(recon, cfg.paths.products_dir, grid=grid_from(cfg), cube_dir=cfg.paths.cube_dir,
                   normalisation=dict(module.hparams.normalisation), config=to_plain(cfg),
                   products=to_plain(cfg.products), baseline=tuple(manifest.get("baseline", ("2004-01", "2009-12"))))
