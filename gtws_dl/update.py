"""Command: keep a reconstruction current — ``python -m gtws_dl.update`` (``gtws-dl update``).

Takes the new ERA5/ERA5T months of the input files and appends them to the cube, the reconstruction and the
products, with the trained checkpoint and the cube's frozen normalisation: no retraining, no rebuild.

* Months already published stay byte-identical, except the ERA5T (preliminary) months whose final ERA5 is now
  in the files: they are recomputed, with the months whose inputs they feed; both lists are logged and recorded
  in the cube manifest (``updates``) and the products manifest.
* Products flag preliminary months (``preliminary``, CF ``flag_values``/``flag_meanings``); the detrended and
  deseasonalized products keep the fit period recorded in their attributes (``refit=true`` refits it over the
  new record, and says so).
* All or nothing (:mod:`gtws_dl.journal`): a killed update leaves nothing half-written once the same command runs
  again — it rolls back to the previous state and redoes the update, giving the same result as an uninterrupted
  one. Until then the previous products stay where they were, complete.
* Files that do not continue the record (a gap, another grid, other variables or units, other numbers for a
  month the cube holds) are refused before anything is written, naming the file and month.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from gtws_dl.config import command, conf_dir, grid_from, validate_config
from gtws_dl.cube.extend import apply_update, plan_update
from gtws_dl.inference import _publish, preflight, reconstruct_options, speed_options
from gtws_dl.ingest import spec_from
from gtws_dl.journal import Journal, exchange, link_tree, remove
from gtws_dl.lock import OutputLock
from gtws_dl.post.publish import recorded_fit_period
from gtws_dl.recon_store import combine_ensemble, progress_path
from gtws_dl.reconstruct import reconstruct

LOGGER = logging.getLogger(__name__)


def journal_for(cfg: DictConfig) -> Journal:
    """The update's journal: ``.<products folder name>.update-journal.json`` beside the products folder."""
    products = Path(cfg.paths.products_dir).resolve()
    return Journal(products.with_name(f".{products.name}.update-journal.json"), "update")


def update(cfg: DictConfig) -> dict:
    """Extend the cube, the reconstruction and the products of ``cfg.paths`` with the files' new months.

    Returns ``{"plan": ..., "written": {...}}`` (``written`` empty when the products were already current)."""
    validate_config(cfg)
    speed_options(cfg)
    grid = grid_from(cfg)
    spec = spec_from(cfg)
    spec.memory_gb = float(cfg.get("ingest_memory_gb") or 4.0)
    cube_dir, products_dir = Path(cfg.paths.cube_dir), Path(cfg.paths.products_dir)
    recon = Path(cfg.paths.recon_dir) / f"{cfg.target.name}.zarr"
    members = [str(p) for p in (cfg.get("ensemble") or [])]
    member_stores = [recon.with_name(f"{recon.stem}.member{i}.zarr") for i in range(len(members))]
    journal = journal_for(cfg)
    with OutputLock(cube_dir), OutputLock(products_dir):
        journal.recover()  # an interrupted update: back to the state before it, then redo it
        checked = [preflight(OmegaConf.merge(cfg, {"ckpt_path": m})) for m in members] or [preflight(cfg)]
        plan, opened = plan_update(cube_dir, spec, grid)
        if plan.empty:
            LOGGER.info("%s is current: the input files hold no new month and no ERA5T month turned final",
                        cube_dir)
            print(f"up to date: {plan.times[0]:%Y-%m}..{plan.times[-1]:%Y-%m}; nothing to update")
            return {"plan": plan.summary(), "written": {}}
        fit = None if cfg.get("refit") else recorded_fit_period(products_dir)
        if cfg.get("refit"):
            LOGGER.warning("refit=true: the detrended+deseasonalized products are refitted over the new record; "
                           "their earlier months change")
        stores = [recon, *member_stores]
        stage = products_dir.with_name(f".{products_dir.name}.update")  # the new products, swapped in at the end
        journal.begin([cube_dir, *stores, *(progress_path(s) for s in stores), products_dir, stage],
                      info=plan.summary())
        manifest = apply_update(plan, opened, spec, grid, progress=bool(cfg.get("progress", True)))
        kwargs = {**reconstruct_options(cfg), "first_month": plan.first}
        module = checked[0][0]
        if members:
            for (mod, _), ckpt, store in zip(checked, members, member_stores, strict=True):
                reconstruct(mod, cube_dir, store, ckpt_path=ckpt, **kwargs)
            combine_ensemble(member_stores, recon)
        else:
            reconstruct(module, cube_dir, recon, ckpt_path=cfg.ckpt_path, **kwargs)
        # published into a linked copy of the folder: the previous products stay in place, complete, until
        # the new set is whole and swapped in
        remove(stage)
        link_tree(products_dir, stage)
        pub = OmegaConf.merge(cfg, {"paths": {"products_dir": str(stage)}})
        if fit:
            pub = OmegaConf.merge(pub, {"products": {"decompose_period": list(fit)}})
        written = _publish(pub, recon, module, manifest, module.hparams.normalisation, members,
                           extra={"update": {**plan.summary(), "refit": bool(cfg.get("refit"))}},
                           append_from=None if cfg.get("refit") else plan.first)
        exchange(stage, products_dir)  # atomic: the previous products until this instant, the new ones after
        journal.commit()
        remove(stage)  # now the previous products
        written = {k: products_dir / Path(v).name for k, v in written.items()}
    _report(plan)
    return {"plan": plan.summary(), "written": written}


def _report(plan) -> None:
    lines = [f"updated to {plan.times[0]:%Y-%m}..{plan.times[-1]:%Y-%m}: appended "
             f"{', '.join(plan.appended) or 'none'}; recomputed (ERA5T now final) {', '.join(plan.recomputed) or 'none'}"]
    if plan.preliminary:
        lines.append(f"preliminary (ERA5T) months, flagged in the products: {', '.join(plan.preliminary)}")
    print("\n".join(lines))


@hydra.main(config_path=conf_dir(), config_name="update", version_base="1.3")
@command(reads_cube=True)
def main(cfg: DictConfig) -> None:
    """``gtws-dl update`` / ``python -m gtws_dl.update``."""
    update(cfg)


if __name__ == "__main__":
    main()
