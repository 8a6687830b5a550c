"""``infer(cfg)``: reconstruct every month with a trained checkpoint, then write the products.

Everything that can be known before the first month is predicted is checked first — config types, the
checkpoint, the cube, their compatibility, that the outputs are writable and that the disk has room — so a bad
run refuses with one clear error and touches no output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from gtws_dl.checkpoint import InvalidCheckpointError, check_inference, load_checkpoint
from gtws_dl.config import check_flag, command, conf_dir, grid_from, to_plain, validate_config
from gtws_dl.conventions import BASELINE
from gtws_dl.cube.periods import first_grace_month
from gtws_dl.cube.store import CubeError, open_cube
from gtws_dl.diskspace import check_free_space, check_writable, float32_bytes
from gtws_dl.heap import release_memory
from gtws_dl.lock import OutputLock, remove_stale_temps
from gtws_dl.models.module import ReconstructionModule
from gtws_dl.post.append import append_products
from gtws_dl.post.manifest import write_products_manifest
from gtws_dl.post.publish import publish
from gtws_dl.post.unforced import External
from gtws_dl.reconstruct import reconstruct, reconstruct_ensemble

LOGGER = logging.getLogger(__name__)

SPEED_OPTIONS = {"prefetch": True, "channels_last": False, "compile": False}  # conf/infer.yaml keys, defaults


def speed_options(cfg: DictConfig) -> dict[str, bool]:
    """``prefetch``, ``channels_last``, ``compile`` of an infer config (defaults where absent); each must be a
    boolean, else :class:`~gtws_dl.config.ConfigError` naming the key."""
    return {key: check_flag(key, cfg.get(key, default), default) for key, default in SPEED_OPTIONS.items()}


def reconstruct_options(cfg: DictConfig) -> dict:
    """The keyword arguments of :func:`~gtws_dl.reconstruct.reconstruct` from an infer (or update) config."""
    return {
        "device": cfg.device,
        "amp": bool(cfg.amp),
        "batch_windows": int(cfg.get("batch_windows") or 4),
        "tile": tuple(cfg.tile) if cfg.get("tile") else None,
        "memory_gb": None if cfg.get("memory_gb") is None else float(cfg.memory_gb),
        "carry_state": check_flag("carry_state", cfg.get("carry_state", False), False),
        **speed_options(cfg),
    }


def preflight(cfg: DictConfig) -> tuple[ReconstructionModule, dict]:
    """Every check of :func:`infer` that needs no output: returns (module, cube manifest).

    The checkpoint is loaded once (:func:`~gtws_dl.checkpoint.load_checkpoint`) and checked against the cube and
    the config (:func:`~gtws_dl.checkpoint.check_inference`)."""
    validate_config(cfg)
    speed_options(cfg)
    if cfg.get("ckpt_path") in (None, "", "last"):
        raise InvalidCheckpointError(
            "ckpt_path must name a checkpoint file for inference, e.g. "
            "ckpt_path=outputs/demo/train/csr/checkpoints/best.ckpt"
        )
    module = load_checkpoint(cfg.ckpt_path)
    manifest, pred_g, targ_g = open_cube(cfg.paths.cube_dir)
    check_inference(cfg, module, manifest)
    nt, nc, H, W = pred_g["predictors"].shape
    if nt == 0:
        raise CubeError(f"{cfg.paths.cube_dir}: the cube holds no month")
    recon_dir, products_dir = Path(cfg.paths.recon_dir), Path(cfg.paths.products_dir)
    check_writable(recon_dir, what="reconstruction directory", config_key="paths.recon_dir")
    check_writable(products_dir, what="products directory", config_key="paths.products_dir")
    K = len(module.hparams.targets)
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
    if str(cfg.get("products", {}).get("unforced")) == "external":  # its files, before hours of reconstruction
        ext = External.from_config(to_plain(cfg.products))
        for c in module.hparams.targets:
            if first := first_grace_month(manifest, c):
                ext.check_reaches(first)
    return module, manifest


def infer(cfg: DictConfig) -> dict:
    """Reconstruct into ``recon_dir/<target>.zarr`` and publish products; returns their paths.

    Writes ``products_dir/manifest.json`` (inputs, checksums, config, code version) last.
    """
    members = [str(p) for p in (cfg.get("ensemble") or [])]
    # every member passes the same pre-flight checks before anything is written; each is loaded once
    checked = [preflight(OmegaConf.merge(cfg, {"ckpt_path": m})) for m in members] or [preflight(cfg)]
    module, manifest = checked[0]
    out = Path(cfg.paths.recon_dir) / f"{cfg.target.name}.zarr"
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent, prefix=f"{out.name}.")  # whole-store temps of a killed run (ensembles)
    kwargs = reconstruct_options(cfg)
    if members:  # ensemble mean -> twsa, total spread -> twsa_std
        modules = [m for m, _ in checked]  # loaded by preflight, not again
        recon = reconstruct_ensemble(members, cfg.paths.cube_dir, out, modules=modules, **kwargs)
    else:
        recon = reconstruct(module, cfg.paths.cube_dir, out, ckpt_path=cfg.ckpt_path, **kwargs)
    norm = module.hparams.normalisation  # the products' provenance attributes
    release_memory()  # the reconstruction's freed heap, before the products' bands are allocated
    with OutputLock(cfg.paths.products_dir):  # one publisher per products folder (its manifest is shared)
        written = _publish(cfg, recon, module, manifest, norm, members)
    print(summary(written, grid=grid_from(cfg), centres=list(module.targets)))
    return written


def _publish(cfg: DictConfig, recon, module, manifest: dict, norm: dict, members: list[str],
             extra: dict | None = None, append_from: int | None = None) -> dict:
    """Write the products of ``recon`` and the products manifest (``extra``: added to this run's record).

    ``append_from``: write only months ``append_from ..`` into the products already there (the update;
    :func:`gtws_dl.post.append.append_products`), publishing whole where they cannot take them."""
    written = None
    if append_from is not None:
        written = append_products(recon, cfg.paths.products_dir, first=append_from, grid=grid_from(cfg),
                                  cube_dir=cfg.paths.cube_dir, train_period=norm.get("train_period"),
                                  products=to_plain(cfg.products), baseline=tuple(manifest.get("baseline", BASELINE)))
    written = written or publish(
        recon,
        cfg.paths.products_dir,
        grid=grid_from(cfg),
        cube_dir=cfg.paths.cube_dir,
        channels=norm["channels"],
        window=norm["window"],
        train_period=norm.get("train_period"),
        val_period=norm.get("val_period"),
        stats_period=norm.get("stats_period"),
        config=to_plain(cfg),
        products=to_plain(cfg.products),
        baseline=tuple(manifest.get("baseline", BASELINE)),
    )
    written["manifest"] = write_products_manifest(
        cfg.paths.products_dir,
        written=written,
        checkpoint=members[0] if members else cfg.ckpt_path,
        cube_manifest=manifest,
        reconstruction=recon,
        config=to_plain(cfg),
        extra=extra,
    )
    return written


@hydra.main(config_path=conf_dir(), config_name="infer", version_base="1.3")
@command(reads_cube=True)
def main(cfg: DictConfig) -> None:
    """``gtws-dl infer`` / ``python infer.py``."""
    infer(cfg)


def summary(written: dict, *, grid, centres: list[str]) -> str:
    """A few lines for the terminal: period, grid, products and regional trends (Gt/yr, whole record)."""
    sheets = pd.read_excel(written["xlsx"], sheet_name=centres, engine="calamine")
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
