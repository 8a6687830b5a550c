"""Skill of the products against the twin Earth's true TWSA (possible only on the twin).

``python -m gtws_dl.evaluate.truth paths.output_dir=outputs/demo`` prints and writes
``<products_dir>/skill_vs_truth.{md,json}``: per centre, the evaluation protocol of the leaderboard
(:func:`gtws_dl.evaluate.protocol.evaluate`, also section 8 of the report): area-weighted medians over land without
Greenland and Antarctica (and over the ice sheets) of Pearson r, NSE, KGE, RMSE, bias, the cyclostationary NSE and
the amplitude ratio, on the full, the detrended+deseasonalized and the low-pass signal, for a period with no GRACE
(default 1940–2001) and for the GRACE era; against the truth and against its forced stores (``truth_components.nc``:
without pumping and land-ice loss); the GRACE targets scored alike over their months (the ceiling rows); and the
GRACE-era trends of the products against the GRACE targets (:mod:`gtws_dl.evaluate.trends`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import xarray as xr
from omegaconf import DictConfig

from gtws_dl.config import command, conf_dir, grid_from
from gtws_dl.conventions import CENTRES
from gtws_dl.cube.store import open_cube
from gtws_dl.evaluate.protocol import METRICS, evaluate
from gtws_dl.evaluate.trends import MIN_MONTHS, TREND_REGIONS, trend_agreement
from gtws_dl.lock import write_text_atomic
from gtws_dl.post.products import read_product
from gtws_dl.post.publish import product_name
from gtws_dl.post.regions import EVALUATION_REGIONS, evaluation_masks, region_masks
from gtws_dl.seasonal import month_starts

LOGGER = logging.getLogger(__name__)
PERIODS = {"1940-2001 (no GRACE)": ("1940-01", "2001-12"), "2002-2024 (GRACE era)": ("2002-01", "2024-12")}
GRACE_ERA = "2002-2024 (GRACE era)"
SIGNALS = {"full": "full", "dd": "detrended+deseasonalized", "lp": "low-pass"}  # protocol signal -> table label
REFERENCES = {"truth": "twin truth", "forced": "twin truth, forced stores"}


def open_truth(path: str | Path, variable: str = "twsa") -> xr.DataArray:
    """The twin's true TWSA (time, lat, lon) in mm (``variable="twsa_forced"`` in ``truth_components.nc``: the
    forced stores only)."""
    ds = xr.open_dataset(path)
    if variable not in ds:
        raise KeyError(f"{path}: no variable {variable!r} (found {list(ds.data_vars)}); is this a twin truth file?")
    return ds[variable]


def skill_rows(centre: str, sim: np.ndarray, obs: np.ndarray, times, *, cell_area: np.ndarray,
               regions: Mapping[str, np.ndarray], periods: dict | None = None, reference: str = "twin truth",
               min_months: int = 24) -> list[dict]:
    """Rows centre × period × signal × region of the evaluation protocol (:func:`gtws_dl.evaluate.protocol.evaluate`).

    ``sim``, ``obs`` (time, lat, lon) mm on the months ``times``; ``regions`` keyed like
    :data:`gtws_dl.post.regions.EVALUATION_REGIONS` (:func:`~gtws_dl.post.regions.evaluation_masks`). A period
    with fewer than ``min_months`` months where both have values is left out.
    """
    times = pd.DatetimeIndex(times)
    both = (np.isfinite(sim) & np.isfinite(obs)).any(axis=(1, 2))
    rows = []
    for pname, (a, b) in (periods or PERIODS).items():
        sel = np.asarray((times >= pd.Timestamp(a)) & (times <= pd.Timestamp(b)))
        if (sel & both).sum() < min_months:
            continue
        res = evaluate(sim[sel], obs[sel], times[sel], cell_area=cell_area, regions=regions)
        for signal, label in SIGNALS.items():
            for key, rname in EVALUATION_REGIONS.items():
                rows.append({"centre": centre, "reference": reference, "period": pname, "signal": label,
                             "region": rname, **{m: res[f"{key}_{signal}_{m}"] for m in METRICS}})
    return rows


def trend_rows(name: str, sim: np.ndarray, grace: np.ndarray, truth: np.ndarray, times, *, cell_area: np.ndarray,
               masks: Mapping[str, np.ndarray], period: tuple[str, str] = PERIODS[GRACE_ERA]) -> list[dict]:
    """GRACE-era trends (mm/yr) of ``sim`` against the GRACE target ``grace`` (and the truth's, for reference):
    one row per region of :data:`TREND_REGIONS`, on the months of ``period`` where GRACE has values."""
    times = pd.DatetimeIndex(times)
    sel = np.asarray((times >= pd.Timestamp(period[0])) & (times <= pd.Timestamp(period[1])))
    sel &= np.isfinite(grace).any(axis=(1, 2))
    regions = {mask: masks[mask] for mask, _ in TREND_REGIONS.values()}
    if sel.sum() < MIN_MONTHS:
        return []
    vs_grace = trend_agreement(sim[sel], grace[sel], times[sel], cell_area=cell_area, regions=regions)
    truth_t = trend_agreement(truth[sel], grace[sel], times[sel], cell_area=cell_area, regions=regions)
    return [{"product": name, "region": label, "trend_product_mm_yr": vs_grace[f"{k}_trend_sim"],
             "trend_grace_mm_yr": vs_grace[f"{k}_trend_obs"], "trend_truth_mm_yr": truth_t[f"{k}_trend_sim"],
             "area_mean_error_rel": _rel(vs_grace[f"{k}_trend_sim"], vs_grace[f"{k}_trend_obs"]),
             "cell_median_error_rel": vs_grace[f"{k}_trend_err_rel"]} for k, label in TREND_REGIONS.values()]




def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else float("nan")


def _on_months(da: xr.DataArray, times: pd.DatetimeIndex) -> np.ndarray:
    """``da`` (time, lat, lon) on the month stamps ``times`` (NaN for a month it lacks), float32."""
    own = month_starts(da["time"].values)
    idx = own.get_indexer(times)
    out = np.full((len(times),) + da.shape[1:], np.nan, np.float32)
    out[idx >= 0] = da.values[idx[idx >= 0]]
    return out


def skill_table(products_dir: str | Path, truth: xr.DataArray, *, grid, periods: dict | None = None,
                centres: Sequence[str] = CENTRES, forced: xr.DataArray | None = None,
                cube_dir: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Skill of every centre's product in ``products_dir`` against ``truth`` (and the forced stores ``forced``) and,
    from the cube's GRACE targets, the ceiling rows (the target itself against the truth) and the GRACE-era trend
    agreement; returns (skill rows, trend rows)."""
    area = grid.cell_area()
    truth = truth.load()  # read once, not once per centre and reference
    forced = None if forced is None else forced.load()
    targets = _cube_targets(cube_dir) if cube_dir else {}
    rows, trends = [], []
    for centre in centres:
        path = Path(products_dir) / product_name(centre)
        if not path.exists():
            continue
        rec = read_product(path, verify=True)["twsa"]
        times = month_starts(rec["time"].values)
        sim = rec.values
        land = np.isfinite(sim[0])
        obs = _on_months(truth, times)
        land &= np.isfinite(obs).any(0)
        sim = np.where(land, sim, np.nan)
        obs[:, ~land] = np.nan
        masks = region_masks(grid, land)
        regions = evaluation_masks(masks)
        refs = {REFERENCES["truth"]: obs}
        if forced is not None:
            refs[REFERENCES["forced"]] = np.where(land, _on_months(forced, times), np.nan)
        grace = None
        if centre in targets:
            grace = np.where(land, targets[centre][1][targets[centre][0].get_indexer(times)], np.nan)
        for ref, o in refs.items():
            rows += skill_rows(centre, sim, o, times, cell_area=area, regions=regions, periods=periods, reference=ref)
            if grace is not None:  # the ceiling: what the training data itself scores (its own months)
                rows += skill_rows(f"GRACE {centre} (target)", grace, o, times, cell_area=area, regions=regions,
                                   periods={GRACE_ERA: PERIODS[GRACE_ERA]}, reference=ref)
        if grace is not None:
            trends += trend_rows(f"gtws-dl {centre}", sim, grace, obs, times, cell_area=area, masks=masks)
    return pd.DataFrame(rows), pd.DataFrame(trends)


def _cube_targets(cube_dir: str | Path) -> dict[str, tuple[pd.DatetimeIndex, np.ndarray]]:
    """The cube's GRACE targets {centre: (months, (time, lat, lon) mm)}."""
    manifest, _, targ = open_cube(cube_dir)
    times = pd.date_range(manifest["time"]["start"], periods=manifest["time"]["n"], freq="MS")
    names = [str(t) for t in targ["target"][:]]
    out = {}
    for i, c in enumerate(names):
        a = np.asarray(targ["twsa"][i], np.float32)
        out[c] = (times, a)
    return out


def write_skill(df: pd.DataFrame, products_dir: str | Path, trends: pd.DataFrame | None = None) -> Path:
    """``skill_vs_truth.md`` and ``.json`` beside the products (atomic)."""
    out = Path(products_dir)
    md = ["# Skill against the twin Earth's true TWSA", "",
          "Area-weighted medians over cells (gtws_dl.evaluate.protocol); r = Pearson correlation, NSE = "
          "Nash–Sutcliffe efficiency, KGE = Kling–Gupta efficiency, RMSE and bias in mm, cnse = NSE against the "
          "reference's monthly climatology (> 0: better than the seasonal cycle), amp = std(product) ÷ "
          "std(reference); detrended+deseasonalized = each series' own linear trend and monthly climatology over "
          "the period removed; low-pass = 12-month running mean of the deseasonalized anomaly (droughts, decades, "
          "trends). Reference *twin truth, forced stores* = the truth without groundwater pumping and land-ice loss "
          "(what the forcing explains). Rows *GRACE <centre> (target)* score the training data itself over its "
          "months: the ceiling a model trained on it should reach or pass.",
          "", df.to_markdown(index=False, floatfmt=".3f") if len(df) else "(no products found)"]
    if trends is not None and len(trends):
        md += ["", "## GRACE-era trends (mm/yr) against the GRACE target", "",
               "Area-mean trends (linear + monthly climatology, least squares over the GRACE months) of the product, "
               "the GRACE target it was trained on and the truth; area_mean_error_rel = |product − GRACE| ÷ |GRACE|; "
               "cell_median_error_rel = area-weighted median per-cell |trend error| ÷ median |GRACE trend|.", "",
               trends.to_markdown(index=False, floatfmt=".3f")]
    payload = {"skill": df.to_dict(orient="records"),
               "trends": [] if trends is None else trends.to_dict(orient="records")}
    for name, text in (("skill_vs_truth.md", "\n".join(md) + "\n"),
                       ("skill_vs_truth.json", json.dumps(payload, indent=1, default=float))):
        write_text_atomic(out / name, text)
    return out / "skill_vs_truth.md"


@hydra.main(config_path=conf_dir(), config_name="infer", version_base="1.3")
@command(reads_cube=True)
def main(cfg: DictConfig) -> None:
    truth = open_truth(cfg.data.truth)
    comp = cfg.data.get("truth_components")
    forced = open_truth(comp, "twsa_forced") if comp and Path(comp).exists() else None
    df, trends = skill_table(cfg.paths.products_dir, truth, grid=grid_from(cfg), forced=forced,
                             cube_dir=cfg.paths.cube_dir)
    path = write_skill(df, cfg.paths.products_dir, trends)
    key = df[(df.region == EVALUATION_REGIONS["land"])]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(key.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if len(trends):
            print(trends.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"written {path}")


if __name__ == "__main__":
    main()
