"""Command: build the predictor and target cubes from ERA5/mascon/vegetation files.

``python -m gtws_dl.ingest [data=files data.era5_dir=... data.grace.jpl=...] [grid.res=0.25 grid.bbox=[...]]``
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from gtws_dl.config import conf_dir, grid_from, validate_config
from gtws_dl.cube.build import CubeBuilder, CubeSpec

LOGGER = logging.getLogger(__name__)


def spec_from(cfg: DictConfig) -> CubeSpec:
    """The :class:`CubeSpec` described by ``cfg.data``."""
    d = cfg.data
    return CubeSpec(
        era5=str(d.era5_dir),
        grace={k: str(v) for k, v in d.grace.items()},
        start=str(d.start), end=str(d.end),
        lai=d.get("lai"), sif=d.get("sif"), landcover=d.get("landcover"),
        jpl_gain_factor=d.get("jpl_gain_factor"),
        baseline=tuple(str(b) for b in d.baseline),
        ewma_months=tuple(float(m) for m in d.ewma_months),
        stats_period=tuple(str(p) for p in d.stats_period),
        chunk_months=int(d.chunk_months),
        chunk_lat=int(d.get("chunk_lat", 15)),
    )


def ingest(cfg: DictConfig) -> dict:
    """Build (or re-use) the cubes in ``cfg.paths.cube_dir``; returns the manifest."""
    validate_config(cfg)
    grid = grid_from(cfg)
    LOGGER.info("ingest onto %s grid -> %s", grid, cfg.paths.cube_dir)
    return CubeBuilder(spec_from(cfg), grid, cfg.paths.cube_dir).build(force=bool(cfg.get("force", False)))


@hydra.main(config_path=conf_dir(), config_name="ingest", version_base="1.3")
def main(cfg: DictConfig) -> None:
    ingest(cfg)


if __name__ == "__main__":
    main()
