"""Command: ``python -m gtws_dl.twin paths.output_dir=outputs/demo grid.res=2 twin.seed=0 twin.era5_layout=new``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from gtws_dl.grid import Grid
from gtws_dl.twin.pipeline import generate

LOGGER = logging.getLogger(__name__)
CONF_DIR = Path(os.environ.get("GTWS_DL_CONF", Path(__file__).resolve().parents[2] / "conf"))


def run(cfg: DictConfig) -> dict:
    """Generate the twin Earth described by a composed config (``paths``, ``grid``, ``twin``)."""
    grid = Grid.from_config(cfg.grid.res, cfg.grid.get("bbox"))
    twin = OmegaConf.to_container(cfg.twin, resolve=True)
    LOGGER.info("twin Earth on %s, %s..%s, seed %s -> %s", grid, twin.get("start"), twin.get("end"),
                twin.get("seed"), cfg.paths.twin_dir)
    return generate(Path(cfg.paths.twin_dir), grid, twin)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="twin")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
