"""Leaderboard: train/fit every model config on one cube and split, reconstruct, publish, evaluate.

``python -m gtws_dl.experiments.leaderboard [scale=1] [models=[unet,climatology]]`` (config ``conf/leaderboard.yaml``)
writes ``<out_dir>/leaderboard.{md,csv}``: one row per model × target × region with area-weighted medians of
r, NSE, KGE, RMSE, bias and cyclostationary NSE on (a) the held-out GRACE months (the validation block of the
split, never used for fitting or checkpoint choice: the networks are evaluated from ``last.ckpt``) and (b) the twin
truth over ``truth_period``, full and detrended+deseasonalized, plus fit time, parameter count and, for models
with a predicted spread, the calibration (fraction of cell-months with ``|error| < std``, nominal 68 %).

Every model writes a reconstruction store (``recon.zarr``) and products under ``<out_dir>/<model>/`` through the
same code as the demo; finished models are re-used when their spec is unchanged (``reuse``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from gtws_dl.cells import load_cells
from gtws_dl.checkpoint import load_checkpoint
from gtws_dl.config import command, conf_dir, grid_from, to_plain
from gtws_dl.conventions import BASELINE
from gtws_dl.cube.store import open_cube
from gtws_dl.evaluate.protocol import METRICS, SIGNALS, evaluate
from gtws_dl.evaluate.trends import TREND_REGIONS, trend_agreement
from gtws_dl.evaluate.truth import open_truth
from gtws_dl.experiments.baselines import run_baseline
from gtws_dl.hashing import sha256_json
from gtws_dl.lock import write_text_atomic
from gtws_dl.post.products import read_product
from gtws_dl.post.publish import product_name, publish
from gtws_dl.post.regions import EVALUATION_REGIONS, evaluation_masks, region_masks
from gtws_dl.recon_store import combine_ensemble
from gtws_dl.reconstruct import reconstruct
from gtws_dl.seasonal import month_starts
from gtws_dl.split import available_months, time_split
from gtws_dl.training import train

LOGGER = logging.getLogger(__name__)


def ensure_cube(cfg: DictConfig) -> None:
    """Re-use ``paths.cube_dir``; build the twin and the cube with their own commands when it is missing."""
    cube = Path(cfg.paths.cube_dir)
    if (cube / "manifest.json").exists():
        return
    LOGGER.info("no cube in %s: building the twin Earth and the cube (minutes)", cube)
    for mod in ("gtws_dl.twin", "gtws_dl.ingest"):
        subprocess.run([sys.executable, "-m", mod, f"paths.output_dir={cfg.paths.output_dir}"], check=True)


def _spec_hash(spec: dict) -> str:
    return sha256_json(spec, length=16)


def _done(folder: Path, spec: dict) -> dict | None:
    f = folder / "leaderboard_run.json"
    if f.exists():
        info = json.loads(f.read_text())
        if info.get("spec_hash") == _spec_hash(spec) and Path(info["recon"]).exists():
            return info
    return None


def _save(folder: Path, spec: dict, info: dict) -> dict:
    info = {**info, "spec_hash": _spec_hash(spec), "spec": spec}
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "leaderboard_run.json", json.dumps(info, indent=1, default=str))
    return info


def run_deep(cfg: DictConfig, name: str, spec: dict, seed: int) -> dict:
    """Train one network (one seed) through ``train(cfg)`` and reconstruct from its last checkpoint."""
    folder = Path(cfg.out_dir) / name / f"seed{seed}"
    full = {**spec, "seed": seed, "scale": float(cfg.scale), "target": cfg.target}
    if cfg.reuse and (info := _done(folder, full)):
        LOGGER.info("%s seed %d: re-using %s", name, seed, info["recon"])
        return info
    spe = max(8, int(round(int(spec.get("samples_per_epoch", 256)) * float(cfg.scale))))
    overrides = [f"paths.output_dir={cfg.paths.output_dir}", f"paths.cube_dir={cfg.paths.cube_dir}",
                 f"target={cfg.target}", f"seed={seed}", f"out_dir={folder / 'train'}",
                 f"datamodule.val_months={cfg.split.val_months}", f"datamodule.gap_months={cfg.split.gap_months}",
                 f"datamodule.val_block={cfg.split.val_block}",
                 f"datamodule.samples_per_epoch={spe}", "trainer.enable_progress_bar=false",
                 *list(spec.get("overrides", []))]
    tcfg = hydra.compose("train", overrides=overrides)
    summary = train(tcfg)
    ckpt = summary["last_checkpoint"]  # not best.ckpt: that one was chosen on the held-out months
    module = load_checkpoint(ckpt)
    t0 = time.perf_counter()
    recon = reconstruct(module, cfg.paths.cube_dir, folder / "recon.zarr", ckpt_path=ckpt, device="auto",
                        batch_windows=int(cfg.batch_windows), carry_state=bool(cfg.get("carry_state", True)),
                        progress=False)
    info = {"recon": str(recon), "train_seconds": summary["train_seconds"],
            "recon_seconds": time.perf_counter() - t0, "parameters": summary["parameters"],
            "split": summary["split"], "likelihood": summary.get("likelihood", "mse")}
    return _save(folder, full, info)


def run_model(cfg: DictConfig, name: str, spec: dict, cells_cache: dict) -> dict:
    """Fit/train model ``name`` (all its seeds); returns the info of the store to evaluate."""
    folder = Path(cfg.out_dir) / name
    if spec["kind"] == "baseline":
        full = {**spec, "target": cfg.target, "split": to_plain(cfg.split)}
        if cfg.reuse and (info := _done(folder, full)):
            return info
        if "cells" not in cells_cache:
            cells_cache["cells"] = load_cells(cfg.paths.cube_dir, list(cfg.centres),
                                              val_months=int(cfg.split.val_months),
                                              gap_months=int(cfg.split.gap_months),
                                              val_block=str(cfg.split.val_block))
        info = run_baseline(spec["baseline"], cfg.paths.cube_dir, folder / "recon.zarr", targets=list(cfg.centres),
                            cells=cells_cache["cells"], **dict(spec.get("kwargs", {})))
        return _save(folder, full, info)
    seeds = list(spec.get("seeds", [0]))
    members = [run_deep(cfg, name, spec, s) for s in seeds]
    if len(members) == 1:
        return members[0]
    recon = combine_ensemble([m["recon"] for m in members], folder / "recon.zarr")
    return {"recon": str(recon), "train_seconds": sum(m["train_seconds"] for m in members),
            "recon_seconds": sum(m["recon_seconds"] for m in members),
            "parameters": sum(m["parameters"] for m in members), "members": len(members),
            "member_recons": [m["recon"] for m in members]}




def evaluate_model(cfg: DictConfig, name: str, info: dict, truth, forced=None) -> list[dict]:
    """Publish the model's products and evaluate every centre; rows of the leaderboard.

    ``truth`` (and ``forced``, the twin's forced stores) DataArrays (time, lat, lon) mm; ``name="grace_target"``
    evaluates the cube's GRACE targets themselves over their months (the ceiling row), without products."""
    grid = grid_from(cfg)
    manifest, pred_g, targ_g = open_cube(cfg.paths.cube_dir)
    products_dir = Path(cfg.out_dir) / name / "products"
    ceiling = name == GRACE_TARGET
    land = np.asarray(pred_g["land_mask"][:], bool)
    area = grid.cell_area()
    masks = region_masks(grid, land)
    regions = evaluation_masks(masks)
    trend_regions = {k: masks[mask] for k, (mask, _) in TREND_REGIONS.items()}
    cube_targets = [str(t) for t in targ_g["target"][:]]
    times = pd.date_range(manifest["time"]["start"], periods=manifest["time"]["n"], freq="MS")
    obs_all = {c: np.asarray(targ_g["twsa"][cube_targets.index(c)], np.float32) for c in cfg.centres}
    split = time_split(times, available_months(obs_all.values(), land), val_months=int(cfg.split.val_months),
                       gap_months=int(cfg.split.gap_months), block=str(cfg.split.val_block))
    if not ceiling:  # every model is published alike: the cube's predictors and statistics, no model window, the
        # unforced residual trend fitted on the split's training months only (gtws_dl.post.unforced)
        publish(info["recon"], products_dir, grid=grid, cube_dir=cfg.paths.cube_dir, channels=manifest["channels"],
                stats_period=manifest["stats"]["period"], config={"model": name},
                train_period=[f"{times[split.train[0]]:%Y-%m}", f"{times[split.train[-1]]:%Y-%m}"],
                products={"zarr_copy": False, "unforced": str(cfg.get("unforced", "none"))},
                baseline=tuple(manifest.get("baseline", BASELINE)))
    tt = month_starts(truth["time"].values)
    a, b = (pd.Timestamp(p) for p in cfg.truth_period)
    tsel = tt[(tt >= a) & (tt <= b)]
    grace_era = np.flatnonzero(available_months(obs_all.values(), land))  # every GRACE month, training ones too
    rows = []
    for centre in cfg.centres:
        if ceiling:
            sim, std, ptimes = obs_all[centre], None, times
            tsel_c = tt[tt.isin(times[grace_era])]  # the targets score over their own months
        else:
            prod = read_product(products_dir / product_name(centre))
            ptimes = month_starts(prod["time"].values)
            sim = prod["twsa"].values
            std = prod["twsa_std"].values if "twsa_std" in prod else None
            tsel_c = tsel
        iv = ptimes.get_indexer(times[split.val])
        held = evaluate(sim[iv], obs_all[centre][split.val], times[split.val], cell_area=area, regions=regions,
                        sim_std=None if std is None else std[iv])
        it = ptimes.get_indexer(tsel_c)
        ref_idx = tt.get_indexer(tsel_c)
        tru = evaluate(sim[it], truth.values[ref_idx], tsel_c, cell_area=area, regions=regions,
                       sim_std=None if std is None else std[it])
        frc = {} if forced is None else evaluate(sim[it], forced.values[ref_idx], tsel_c, cell_area=area,
                                                 regions=regions)
        ig = ptimes.get_indexer(times[grace_era])
        trd = trend_agreement(sim[ig], obs_all[centre][grace_era], times[grace_era], cell_area=area,
                              regions=trend_regions)
        for rkey, rname in EVALUATION_REGIONS.items():
            row = {"model": name, "target": centre, "region": rname,
                   "parameters": info.get("parameters"), "train_s": round(float(info.get("train_seconds", 0)), 1),
                   "recon_s": round(float(info.get("recon_seconds", 0) or 0), 1)}
            for tag, res in (("heldout", held), ("truth", tru), ("forced", frc)):
                for signal in SIGNALS:
                    for m in METRICS:
                        row[f"{tag}_{signal}_{m}"] = res.get(f"{rkey}_{signal}_{m}")
                row[f"{tag}_calib68"] = res.get(f"{rkey}_calib68")
                row[f"{tag}_median_std_mm"] = res.get(f"{rkey}_median_std_mm")
            # GRACE-era trends (mm/yr) against the GRACE target, over all its months: land, then the ice sheets
            keys = ("land",) if rkey == "land" else ("greenland", "antarctica")
            for k in keys:
                row[f"trend_{k}_mm_yr"] = trd[f"{k}_trend_sim"]
                row[f"trend_{k}_grace_mm_yr"] = trd[f"{k}_trend_obs"]
                row[f"trend_{k}_cell_err_rel"] = trd[f"{k}_trend_err_rel"]
            rows.append(row)
    return rows


GRACE_TARGET = "grace_target"  # the ceiling row: the cube's GRACE targets scored like a model
EVAL_VERSION = 3  # bump when the protocol changes (3: products.unforced_z 8 -> 2): cached evaluations recomputed


def _evaluated(cfg: DictConfig, name: str, info: dict, truth, forced=None) -> list[dict]:
    """:func:`evaluate_model`, cached beside the model while its store and the protocol are unchanged."""
    key = _spec_hash({"info": info, "truth_period": list(cfg.truth_period), "split": to_plain(cfg.split),
                      "unforced": str(cfg.get("unforced", "none")),
                      "centres": list(cfg.centres), "version": EVAL_VERSION})
    f = Path(cfg.out_dir) / name / "leaderboard_eval.json"
    if cfg.reuse and f.exists() and (cached := json.loads(f.read_text())).get("key") == key:
        return cached["rows"]
    rows = evaluate_model(cfg, name, info, truth, forced)
    f.parent.mkdir(parents=True, exist_ok=True)  # the ceiling row has no model folder of its own
    write_text_atomic(f, json.dumps({"key": key, "rows": rows}, default=float))
    return rows


MD_COLUMNS = {  # leaderboard.md (the csv has every metric)
    "model": "model", "target": "target", "parameters": "params", "train_s": "fit s",
    "heldout_full_r": "held r", "heldout_full_nse": "held NSE", "heldout_full_cnse": "held cNSE",
    "heldout_full_rmse": "held RMSE", "heldout_dd_r": "held r dd",
    "truth_full_r": "truth r", "truth_full_nse": "truth NSE", "truth_full_kge": "truth KGE",
    "truth_full_cnse": "truth cNSE", "truth_full_rmse": "truth RMSE", "truth_full_bias": "truth bias",
    "truth_dd_r": "truth r dd", "truth_dd_nse": "truth NSE dd",
    "forced_full_cnse": "forced cNSE", "forced_dd_r": "forced r dd", "forced_lp_r": "forced lp r",
    "forced_lp_amp": "forced lp amp", "trend_land_mm_yr": "trend mm/yr", "trend_land_grace_mm_yr": "GRACE trend",
    "trend_land_cell_err_rel": "trend err rel",
    "heldout_calib68": "calib68 held", "truth_calib68": "calib68 truth",
}


def write_leaderboard(df: pd.DataFrame, out_dir: Path, *, header: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f"leaderboard.csv.tmp-{os.getpid()}"
    df.to_csv(tmp, index=False, float_format="%.4f")
    os.replace(tmp, out_dir / "leaderboard.csv")
    parts = [header, ""]
    for rname in EVALUATION_REGIONS.values():
        sub = df[df.region == rname]
        cols = [c for c in MD_COLUMNS if c in sub]
        if rname != EVALUATION_REGIONS["land"]:
            cols = [c for c in ("model", "target", "heldout_full_r", "heldout_full_nse", "truth_full_r",
                                "truth_full_nse", "truth_full_cnse", "truth_dd_r", "trend_greenland_mm_yr",
                                "trend_greenland_grace_mm_yr", "trend_antarctica_mm_yr",
                                "trend_antarctica_grace_mm_yr") if c in sub]
        t = sub[cols].rename(columns=MD_COLUMNS)
        parts += [f"## {rname}", "", t.to_markdown(index=False, floatfmt=".3f"), ""]
    return write_text_atomic(out_dir / "leaderboard.md", "\n".join(parts) + "\n")


def run_leaderboard(cfg: DictConfig) -> pd.DataFrame:
    t_start = time.perf_counter()
    torch.set_num_threads(int(cfg.threads))
    ensure_cube(cfg)
    truth = open_truth(cfg.data.truth).load()
    comp = cfg.data.get("truth_components")
    forced = open_truth(comp, "twsa_forced").load() if comp and Path(comp).exists() else None
    names = list(cfg.models_to_run) if cfg.get("models_to_run") else list(cfg.models)
    rows, cells_cache = [], {}
    if cfg.get("ceiling", True):  # the GRACE targets themselves: what the training data scores
        rows += _evaluated(cfg, GRACE_TARGET, {"recon": None}, truth, forced)
    for name in names:
        if name not in cfg.models:
            raise KeyError(f"models_to_run names {name!r}; conf/leaderboard.yaml defines {list(cfg.models)}")
        spec = OmegaConf.to_container(cfg.models[name], resolve=True)
        t0 = time.perf_counter()
        info = run_model(cfg, name, spec, cells_cache)
        rows += _evaluated(cfg, name, info, truth, forced)
        LOGGER.info("leaderboard: %s done in %.0f s", name, time.perf_counter() - t0)
    df = pd.DataFrame(rows)
    wall = time.perf_counter() - t_start
    a, b = cfg.truth_period
    header = "\n".join([
        "# gtws-dl leaderboard", "",
        f"Cube `{cfg.paths.cube_dir}`, targets {list(cfg.centres)}, scale={cfg.scale}; held-out = the "
        f"{cfg.split.val_block} {cfg.split.val_months} GRACE months (gap {cfg.split.gap_months} "
        f"months between them and the training months; networks evaluated "
        f"from last.ckpt, never chosen on them); truth = twin truth {a}..{b}. Area-weighted medians over cells. "
        "cNSE = cyclostationary NSE (0 = the reference's own monthly climatology); dd = detrended+deseasonalized; "
        "lp = low-pass (12-month running mean of the deseasonalized anomaly), amp = std(model) ÷ std(reference); "
        "forced = the twin truth's forced stores (no pumping, no land-ice loss) over the truth period; trends = "
        "GRACE-era area-mean trends (mm/yr) against the GRACE target over all its months, trend err rel = median "
        "per-cell |trend error| ÷ median |GRACE trend|; row grace_target = the GRACE targets themselves over their "
        "own months (the ceiling; its held-out rows are trivially perfect). "
        "calib68 = fraction of cell-months with |error| < predicted std (nominal 0.683). "
        f"Wall time of this run {wall:.0f} s (re-used models count their original fit time)."])
    write_leaderboard(df, Path(cfg.out_dir), header=header)
    LOGGER.info("leaderboard written to %s in %.0f s", cfg.out_dir, wall)
    return df


@hydra.main(config_path=conf_dir(), config_name="leaderboard", version_base="1.3")
@command(reads_cube=True)
def main(cfg: DictConfig) -> None:
    df = run_leaderboard(cfg)
    land = df[df.region == EVALUATION_REGIONS["land"]]
    print(land[[c for c in MD_COLUMNS if c in land]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"written {Path(cfg.out_dir) / 'leaderboard.md'}")


if __name__ == "__main__":
    main()
