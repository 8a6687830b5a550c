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
from gtws_dl.evaluate.bands import BAND_MB, LazyField, bands, finite_months, take
from gtws_dl.evaluate.protocol import METRICS, Evaluation, evaluate
from gtws_dl.evaluate.trends import MIN_MONTHS, TREND_REGIONS, TrendAgreement, trend_agreement
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
    both = finite_months(sim, obs)
    rows = []
    for pname, (a, b) in (periods or PERIODS).items():
        sel = np.asarray((times >= pd.Timestamp(a)) & (times <= pd.Timestamp(b)))
        if (sel & both).sum() < min_months:
            continue
        res = evaluate(take(sim, sel), take(obs, sel), times[sel], cell_area=cell_area, regions=regions)
        rows += _protocol_rows(centre, reference, pname, res)
    return rows


def _protocol_rows(centre: str, reference: str, period: str, res: Mapping[str, float]) -> list[dict]:
    return [{"centre": centre, "reference": reference, "period": period, "signal": label, "region": rname,
             **{m: res[f"{key}_{signal}_{m}"] for m in METRICS}}
            for signal, label in SIGNALS.items() for key, rname in EVALUATION_REGIONS.items()]


def trend_rows(name: str, sim: np.ndarray, grace: np.ndarray, truth: np.ndarray, times, *, cell_area: np.ndarray,
               masks: Mapping[str, np.ndarray], period: tuple[str, str] = PERIODS[GRACE_ERA]) -> list[dict]:
    """GRACE-era trends (mm/yr) of ``sim`` against the GRACE target ``grace`` (and the truth's, for reference):
    one row per region of :data:`TREND_REGIONS`, on the months of ``period`` where GRACE has values."""
    times = pd.DatetimeIndex(times)
    sel = np.asarray((times >= pd.Timestamp(period[0])) & (times <= pd.Timestamp(period[1])))
    sel &= finite_months(grace)
    regions = {mask: masks[mask] for mask, _ in TREND_REGIONS.values()}
    if sel.sum() < MIN_MONTHS:
        return []
    sim, grace, truth = take(sim, sel), take(grace, sel), take(truth, sel)
    vs_grace = trend_agreement(sim, grace, times[sel], cell_area=cell_area, regions=regions)
    truth_t = trend_agreement(truth, grace, times[sel], cell_area=cell_area, regions=regions)
    return _trend_rows(name, vs_grace, truth_t)


def _trend_rows(name: str, vs_grace: Mapping[str, float], truth_t: Mapping[str, float]) -> list[dict]:
    return [{"product": name, "region": label, "trend_product_mm_yr": vs_grace[f"{k}_trend_sim"],
             "trend_grace_mm_yr": vs_grace[f"{k}_trend_obs"], "trend_truth_mm_yr": truth_t[f"{k}_trend_sim"],
             "area_mean_error_rel": _rel(vs_grace[f"{k}_trend_sim"], vs_grace[f"{k}_trend_obs"]),
             "cell_median_error_rel": vs_grace[f"{k}_trend_err_rel"]} for k, label in TREND_REGIONS.values()]




def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else float("nan")


def _on_months(da, times: pd.DatetimeIndex, own: pd.DatetimeIndex | None = None) -> LazyField:
    """``da`` (time, lat, lon; xarray, or an array with its months ``own``) on the month stamps ``times`` (NaN for a
    month it lacks), read by latitude bands as float32."""
    own = month_starts(da["time"].values) if own is None else own
    idx = own.get_indexer(times)
    have = idx >= 0
    lo, hi = (int(idx[have].min()), int(idx[have].max()) + 1) if have.any() else (0, 0)

    def read(r0: int, r1: int) -> np.ndarray:
        out = np.full((len(times), r1 - r0, da.shape[-1]), np.nan, np.float32)
        if have.any():
            out[have] = np.asarray(da[lo:hi, r0:r1], np.float32)[idx[have] - lo]
        return out

    return LazyField(read, (len(times), *da.shape[1:]))


def skill_table(products_dir: str | Path, truth: xr.DataArray, *, grid, periods: dict | None = None,
                centres: Sequence[str] = CENTRES, forced: xr.DataArray | None = None,
                cube_dir: str | Path | None = None, min_months: int = 24) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Skill of every centre's product in ``products_dir`` against ``truth`` (and the forced stores ``forced``) and,
    from the cube's GRACE targets, the ceiling rows (the target itself against the truth) and the GRACE-era trend
    agreement; returns (skill rows, trend rows). One pass over latitude bands per centre: each field's band is read
    once and feeds every period and reference (memory bounded in area, each file read once)."""
    area = grid.cell_area()
    targets = _cube_targets(cube_dir) if cube_dir else {}
    rows, trends = [], []
    for centre in centres:
        path = Path(products_dir) / product_name(centre)
        if not path.exists():
            continue
        rec = read_product(path, verify=True)["twsa"]
        times = month_starts(rec["time"].values)
        fields = {"sim": _on_months(rec, times), "truth": _on_months(truth, times)}
        land = np.isfinite(np.asarray(rec[0], np.float32)) & _finite_cells(fields["truth"])
        refs = {REFERENCES["truth"]: "truth"}
        if forced is not None:
            fields["forced"] = _on_months(forced, times)
            refs[REFERENCES["forced"]] = "forced"
        if centre in targets:
            fields["grace"] = _on_months(targets[centre][1], times, targets[centre][0]).masked(land)
        fields = {k: f.masked(land) for k, f in fields.items()}
        masks = region_masks(grid, land)
        regions = evaluation_masks(masks)
        jobs = []  # (centre label, reference label, period, sim key, obs key, months, Evaluation, months both have)
        for ref, okey in refs.items():
            scored = [(centre, "sim", periods or PERIODS)]
            if "grace" in fields:  # the ceiling: what the training data itself scores (its own months)
                scored.append((f"GRACE {centre} (target)", "grace", {GRACE_ERA: PERIODS[GRACE_ERA]}))
            for label, skey, prd in scored:
                for pname, (a, b) in prd.items():
                    sel = np.flatnonzero((times >= pd.Timestamp(a)) & (times <= pd.Timestamp(b)))
                    if len(sel) >= min_months:
                        jobs.append((label, ref, pname, skey, okey, sel,
                                     Evaluation(times[sel], land.shape, cell_area=area, regions=regions),
                                     np.zeros(len(sel), bool)))
        trend = None
        if "grace" in fields:
            lo, hi = PERIODS[GRACE_ERA]
            gsel = np.flatnonzero((times >= pd.Timestamp(lo)) & (times <= pd.Timestamp(hi))
                                  & finite_months(fields["grace"]))
            tregions = {mask: masks[mask] for mask, _ in TREND_REGIONS.values()}
            if len(gsel) >= MIN_MONTHS:
                trend = [gsel] + [TrendAgreement(times[gsel], land.shape, cell_area=area, regions=tregions)
                                  for _ in range(2)]
        for r0, r1 in bands((len(times), *land.shape), BAND_MB / (1 + len(fields) / 4)):
            b = {k: f.band(r0, r1) for k, f in fields.items()}
            for _, _, _, skey, okey, sel, ev, both in jobs:
                s, o = b[skey][sel], b[okey][sel]
                both |= (np.isfinite(s) & np.isfinite(o)).any(axis=(1, 2))
                ev.add(r0, s, o)
            if trend is not None:
                gsel, vs_grace, vs_truth = trend
                vs_grace.add(r0, b["sim"][gsel], b["grace"][gsel])
                vs_truth.add(r0, b["truth"][gsel], b["grace"][gsel])
        for label, ref, pname, _, _, _, ev, both in jobs:
            if both.sum() >= min_months:  # a period with too few months where both have values is left out
                rows += _protocol_rows(label, ref, pname, ev.result())
        if trend is not None:
            trends += _trend_rows(f"gtws-dl {centre}", trend[1].result(), trend[2].result())
    return pd.DataFrame(rows), pd.DataFrame(trends)


def _finite_cells(field: LazyField) -> np.ndarray:
    """(lat, lon) True where ``field`` has a finite value in some month."""
    out = np.zeros(field.shape[1:], bool)
    for r0, r1 in bands(field.shape):
        out[r0:r1] = np.isfinite(field.band(r0, r1)).any(0)
    return out


def _cube_targets(cube_dir: str | Path) -> dict[str, tuple[pd.DatetimeIndex, object]]:
    """The cube's GRACE targets {centre: (months, (time, lat, lon) mm, read from the zarr store when sliced)}."""
    manifest, _, targ = open_cube(cube_dir)
    times = pd.date_range(manifest["time"]["start"], periods=manifest["time"]["n"], freq="MS")
    names = [str(t) for t in targ["target"][:]]
    return {c: (times, _Target(targ["twsa"], i)) for i, c in enumerate(names)}


class _Target:
    """Target ``i`` of the cube's (target, time, lat, lon) zarr array, sliced as (time, lat, lon)."""

    def __init__(self, arr, i: int) -> None:
        self.arr, self.i, self.shape = arr, i, tuple(arr.shape[1:])

    def __getitem__(self, key) -> np.ndarray:
        return self.arr[(self.i, *key)]


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
