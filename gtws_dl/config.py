"""Where the Hydra configs live and small helpers to turn them into objects."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gtws_dl.grid import Grid


def conf_dir() -> str:
    """The ``conf/`` folder: ``$GTWS_DL_CONF`` if set, else the one beside the package (source checkout)."""
    return os.environ.get("GTWS_DL_CONF", str(Path(__file__).resolve().parents[1] / "conf"))


def grid_from(cfg: DictConfig) -> Grid:
    """The :class:`Grid` of ``cfg.grid``."""
    bbox = cfg.grid.get("bbox")
    return Grid.from_config(cfg.grid.res, None if bbox is None else list(bbox))


def to_plain(cfg) -> dict:
    """A resolved plain-dict copy of a config node (for manifests and product attributes)."""
    return OmegaConf.to_container(cfg, resolve=True)
