"""Command: ``python -m gtws_dl.twin paths.output_dir=outputs/demo grid.res=2 twin.seed=0 twin.era5_layout=new``.

One writer per twin folder (:class:`~gtws_dl.lock.OutputLock`); temp files of a killed run are removed by the next
one; a twin that a finished cube was built from is not regenerated under it unless ``twin.overwrite=true``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from gtws_dl.config import command, conf_dir
from gtws_dl.grid import Grid
from gtws_dl.lock import InputsInUseError, OutputLock, remove_stale_temps_under
from gtws_dl.twin.pipeline import complete_twin, generate, twin_config

LOGGER = logging.getLogger(__name__)


def cube_inputs_under(twin_dir: Path, cube_dir: Path) -> list[str]:
    """Files under ``twin_dir`` that the finished cube in ``cube_dir`` lists as its inputs (manifest ``inputs``,
    path -> sha256) and that still exist."""
    mpath = Path(cube_dir) / "manifest.json"
    try:
        inputs = json.loads(mpath.read_text()).get("inputs") or {}
    except (OSError, ValueError, AttributeError):
        return []
    root = Path(twin_dir).resolve()
    return sorted(f for f in inputs if Path(f).resolve().is_relative_to(root) and Path(f).exists())


def check_cube_inputs(twin_dir: Path, cube_dir: Path) -> None:
    """Refuse (:class:`~gtws_dl.lock.InputsInUseError`) to regenerate files a cube was built from."""
    used = cube_inputs_under(twin_dir, cube_dir)
    if used:
        raise InputsInUseError(
            f"the twin in {twin_dir} would be regenerated (another grid, period or twin.* option) but the cube "
            f"{cube_dir} was built from {len(used)} of its files (e.g. {used[0]}, listed with sha256 in "
            f"{Path(cube_dir) / 'manifest.json'}); pass twin.overwrite=true to regenerate them (then rebuild the "
            "cube: `gtws-dl ingest force=true`) or write this twin elsewhere (paths.output_dir=...)"
        )


def run(cfg: DictConfig) -> dict:
    """Generate the twin Earth described by a composed config (``paths``, ``grid``, ``twin``)."""
    grid = Grid.from_config(cfg.grid.res, cfg.grid.get("bbox"))
    twin = OmegaConf.to_container(cfg.twin, resolve=True)
    out = Path(cfg.paths.twin_dir)
    LOGGER.info("twin Earth on %s, %s..%s, seed %s -> %s", grid, twin.get("start"), twin.get("end"),
                twin.get("seed"), out)
    tc = twin_config(twin)
    dirs = (out, out / "era5", out / "grace")
    with OutputLock(out):
        remove_stale_temps_under(*dirs)  # left by a killed run
        cube_dir = OmegaConf.select(cfg, "paths.cube_dir", default=None)
        if cube_dir and not tc.overwrite and complete_twin(out, grid, tc) is None:
            check_cube_inputs(out, Path(cube_dir))
        try:
            return generate(out, grid, tc)
        except BaseException:  # failed, Ctrl+C or SIGTERM: no temp file of this run stays behind
            remove_stale_temps_under(*dirs, mine=True)
            raise


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="twin")
@command
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
