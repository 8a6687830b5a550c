"""Skill of the products against the twin Earth's true TWSA (possible only on the twin).

``python -m gtws_dl.evaluate.truth paths.output_dir=outputs/demo`` prints and writes
``<products_dir>/skill_vs_truth.{md,json}``: per centre, the evaluation protocol of the leaderboard
(:func:`gtws_dl.evaluate.protocol.evaluate`, also section 8 of the report): area-weighted medians over land without
Greenland and Antarctica (and over the ice sheets) of Pearson r, NSE, KGE, RMSE, bias and the cyclostationary NSE, on
the full signal and on the detrended+deseasonalized signal, for a period with no GRACE (default 1940–2001) and for
the GRACE era.
"""

from __future__ import annotations

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
from gtws_dl.evaluate.protocol import METRICS, evaluate
from gtws_dl.lock import write_text_atomic
from gtws_dl.post.products import read_product
from gtws_dl.post.publish import product_name
from gtws_dl.post.regions import EVALUATION_REGIONS, evaluation_masks, region_masks
from gtws_dl.seasonal import month_starts

LOGGER = logging.getLogger(__name__)
PERIODS = {"1940-2001 (no GRACE)": ("1940-01", "2001-12"), "2002-2024 (GRACE era)": ("2002-01", "2024-12")}
SIGNALS = {"full": "full", "dd": "detrended+deseasonalized"}  # protocol signal -> table label


def open_truth(path: str | Path) -> xr.DataArray:
    """The twin's true TWSA (time, lat, lon) in mm."""
    ds = xr.open_dataset(path)
    if "twsa" not in ds:
        raise KeyError(f"{path}: no variable 'twsa' (found {list(ds.data_vars)}); is this a twin truth file?")
    return ds["twsa"]


def skill_rows(centre: str, sim: np.ndarray, obs: np.ndarray, times, *, cell_area: np.ndarray,
               regions: Mapping[str, np.ndarray], periods: dict | None = None) -> list[dict]:
    """Rows centre × period × signal × region of the evaluation protocol (:func:`gtws_dl.evaluate.protocol.evaluate`).

    ``sim``, ``obs`` (time, lat, lon) mm on the months ``times``; ``regions`` keyed like
    :data:`gtws_dl.post.regions.EVALUATION_REGIONS` (:func:`~gtws_dl.post.regions.evaluation_masks`). A period
    with fewer than 24 of the months is left out.
    """
    times = pd.DatetimeIndex(times)
    rows = []
    for pname, (a, b) in (periods or PERIODS).items():
        sel = np.asarray((times >= pd.Timestamp(a)) & (times <= pd.Timestamp(b)))
        if sel.sum() < 24:
            continue
        res = evaluate(sim[sel], obs[sel], times[sel], cell_area=cell_area, regions=regions)
        for signal, label in SIGNALS.items():
            for key, rname in EVALUATION_REGIONS.items():
                rows.append({"centre": centre, "period": pname, "signal": label, "region": rname,
                             **{m: res[f"{key}_{signal}_{m}"] for m in METRICS}})
    return rows


def skill_table(products_dir: str | Path, truth: xr.DataArray, *, grid, periods: dict | None = None,
                centres: Sequence[str] = CENTRES) -> pd.DataFrame:
    """:func:`skill_rows` of every centre's product in ``products_dir`` against ``truth`` (same grid)."""
    area = grid.cell_area()
    rows = []
    for centre in centres:
        path = Path(products_dir) / product_name(centre)
        if not path.exists():
            continue
        rec = read_product(path, verify=True)["twsa"]
        times = month_starts(rec["time"].values)
        tt = month_starts(truth["time"].values)
        common = times.intersection(tt)
        land = np.isfinite(rec.isel(time=0).values) & np.isfinite(truth.isel(time=0).values)
        sim = rec.values[times.get_indexer(common)]
        obs = truth.values[tt.get_indexer(common)]
        rows += skill_rows(centre, sim, obs, common, cell_area=area, regions=evaluation_masks(region_masks(grid, land)),
                           periods=periods)
    return pd.DataFrame(rows)


def write_skill(df: pd.DataFrame, products_dir: str | Path) -> Path:
    """``skill_vs_truth.md`` and ``.json`` beside the products (atomic)."""
    out = Path(products_dir)
    md = ["# Skill against the twin Earth's true TWSA", "",
          "Area-weighted medians over cells (gtws_dl.evaluate.protocol); r = Pearson correlation, NSE = "
          "Nash–Sutcliffe efficiency, KGE = Kling–Gupta efficiency, RMSE and bias in mm, cnse = NSE against the "
          "truth's monthly climatology (> 0: better than the seasonal cycle); detrended+deseasonalized = each "
          "series' own linear trend and monthly climatology over the period removed.",
          "", df.to_markdown(index=False, floatfmt=".3f") if len(df) else "(no products found)"]
    for name, text in (("skill_vs_truth.md", "\n".join(md) + "\n"),
                       ("skill_vs_truth.json", df.to_json(orient="records", indent=1))):
        write_text_atomic(out / name, text)
    return out / "skill_vs_truth.md"


@hydra.main(config_path=conf_dir(), config_name="infer", version_base="1.3")
@command(reads_cube=True)
def main(cfg: DictConfig) -> None:
    truth = open_truth(cfg.data.truth)
    df = skill_table(cfg.paths.products_dir, truth, grid=grid_from(cfg))
    path = write_skill(df, cfg.paths.products_dir)
    key = df[(df.region == EVALUATION_REGIONS["land"])]
    print(key.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"written {path}")


if __name__ == "__main__":
    main()
