"""Command: build the predictor and target cubes from ERA5/mascon/vegetation files.

``python -m gtws_dl.ingest [data=files data.era5_dir=... data.grace.jpl=...] [grid.res=0.25 grid.bbox=[...]]``
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from gtws_dl.config import command, conf_dir, grid_from, grid_on_command_line, task_overrides, validate_config
from gtws_dl.cube.build import CubeBuilder, CubeSpec
from gtws_dl.lock import OutputLock

LOGGER = logging.getLogger(__name__)


def spec_from(cfg: DictConfig) -> CubeSpec:
    """The :class:`CubeSpec` described by ``cfg.data``."""
    d = cfg.data
    return CubeSpec(
        era5=str(d.era5_dir),
        grace={k: str(v) for k, v in d.grace.items()},
        start=_opt_str(d.get("start")), end=_opt_str(d.get("end")),  # None: from the data (gtws_dl.cube.periods)
        lai=d.get("lai"), sif=d.get("sif"), landcover=d.get("landcover"),
        jpl_gain_factor=d.get("jpl_gain_factor"),
        baseline=tuple(str(b) for b in d.baseline),
        ewma_months=tuple(float(m) for m in d.ewma_months),
        stats_period=None if d.get("stats_period") is None else tuple(str(p) for p in d.stats_period),
        val_months=int((d.get("split") or {}).get("val_months", 24)),
        gap_months=int((d.get("split") or {}).get("gap_months", 24)),
        chunk_months=int(d.chunk_months),
        chunk_lat=int(d.get("chunk_lat", 15)),
        plausibility_skip=tuple(str(v) for v in ((d.get("plausibility") or {}).get("skip") or ())),
        memory_gb=float(cfg.get("memory_gb") or 4.0),
        kind=_opt_str(d.get("kind")),
    )


def _opt_str(v) -> str | None:
    return None if v is None else str(v)


def ingest(cfg: DictConfig) -> dict:
    """Build (or re-use) the cubes in ``cfg.paths.cube_dir``; returns the manifest.

    One writer per cube: a second ingest into the same folder while the first runs is refused
    (:class:`~gtws_dl.lock.OutputLockedError` naming its pid and host); temp stores of a killed ingest are removed
    by the next one (:class:`~gtws_dl.cube.writer.CubeWriter`)."""
    validate_config(cfg)
    grid = grid_from(cfg)
    overrides = task_overrides()
    if overrides is not None and not grid_on_command_line(overrides):
        LOGGER.info("no grid.* on the command line: the default grid %s (grid.res=%s grid.bbox=%s); pass grid.res= "
                    "grid.bbox= for the grid of your input files", grid, grid.res, grid.bbox)
    LOGGER.info("ingest onto %s grid -> %s", grid, cfg.paths.cube_dir)
    with OutputLock(cfg.paths.cube_dir):
        return CubeBuilder(spec_from(cfg), grid, cfg.paths.cube_dir).build(force=bool(cfg.get("force", False)))


@hydra.main(config_path=conf_dir(), config_name="ingest", version_base="1.3")
@command
def main(cfg: DictConfig) -> None:
    ingest(cfg)


if __name__ == "__main__":
    main()
