"""Skill of the products against the twin Earth's true TWSA (possible only on the twin).

``python -m gtws_dl.evaluate.truth paths.output_dir=outputs/demo`` prints and writes
``<products_dir>/skill_vs_truth.{md,json}``: per centre, area-weighted medians over land without Greenland and
Antarctica (and over the ice sheets) of Pearson r, NSE and the cyclostationary NSE, on the full signal and on the
signal with each series' mean seasonal cycle removed, for a period with no GRACE (default 1940–2001) and for the
GRACE era.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import xarray as xr
from omegaconf import DictConfig

from gtws_dl.config import conf_dir, grid_from
from gtws_dl.evaluate.skill import area_weighted_median, cyclostationary_nse, deseasonalize, nse, pearson_r
from gtws_dl.lock import write_text_atomic
from gtws_dl.post.products import read_product
from gtws_dl.post.publish import CENTRES, product_name
from gtws_dl.post.regions import region_masks

LOGGER = logging.getLogger(__name__)
PERIODS = {"1940-2001 (no GRACE)": ("1940-01", "2001-12"), "2002-2024 (GRACE era)": ("2002-01", "2024-12")}


def open_truth(path: str | Path) -> xr.DataArray:
    """The twin's true TWSA (time, lat, lon) in mm."""
    ds = xr.open_dataset(path)
    if "twsa" not in ds:
        raise KeyError(f"{path}: no variable 'twsa' (found {list(ds.data_vars)}); is this a twin truth file?")
    return ds["twsa"]


def skill_table(products_dir: str | Path, truth: xr.DataArray, *, grid, periods: dict | None = None,
                centres: Sequence[str] = CENTRES) -> pd.DataFrame:
    """One row per centre × period × signal with area-weighted medians of r, NSE and cyclostationary NSE."""
    periods = periods or PERIODS
    area = grid.cell_area()
    rows = []
    for centre in centres:
        path = Path(products_dir) / product_name(centre)
        if not path.exists():
            continue
        rec = read_product(path, verify=True)["twsa"]
        times = pd.DatetimeIndex(rec["time"].values).to_period("M").to_timestamp()
        tt = pd.DatetimeIndex(truth["time"].values).to_period("M").to_timestamp()
        common = times.intersection(tt)
        land = np.isfinite(rec.isel(time=0).values) & np.isfinite(truth.isel(time=0).values)
        masks = region_masks(grid, land)
        regions = {"land excl. Greenland & Antarctica": masks["global_land_excl_greenland_antarctica"],
                   "Greenland & Antarctica": masks["greenland"] | masks["antarctica"]}
        for pname, (a, b) in periods.items():
            sel = common[(common >= a) & (common <= b)]
            if len(sel) < 24:
                continue
            sim = rec.values[times.get_indexer(sel)]
            obs = truth.values[tt.get_indexer(sel)]
            months = sel.month.values
            for signal, (s, o) in {"full": (sim, obs),
                                   "deseasonalized": (deseasonalize(sim, months), deseasonalize(obs, months))
                                   }.items():
                r, e, c = pearson_r(s, o), nse(s, o), cyclostationary_nse(sim, obs, months)
                for rname, m in regions.items():
                    rows.append({"centre": centre, "period": pname, "signal": signal, "region": rname,
                                 "r": area_weighted_median(r, area, m), "nse": area_weighted_median(e, area, m),
                                 "cyclostationary_nse": area_weighted_median(c, area, m)})
    return pd.DataFrame(rows)


def write_skill(df: pd.DataFrame, products_dir: str | Path) -> Path:
    """``skill_vs_truth.md`` and ``.json`` beside the products (atomic)."""
    out = Path(products_dir)
    md = ["# Skill against the twin Earth's true TWSA", "",
          "Area-weighted medians over cells; r = Pearson correlation, NSE = Nash–Sutcliffe efficiency, "
          "cyclostationary NSE = NSE against the truth's monthly climatology (> 0: better than the seasonal cycle).",
          "", df.to_markdown(index=False, floatfmt=".3f") if len(df) else "(no products found)"]
    for name, text in (("skill_vs_truth.md", "\n".join(md) + "\n"),
                       ("skill_vs_truth.json", df.to_json(orient="records", indent=1))):
        write_text_atomic(out / name, text)
    return out / "skill_vs_truth.md"


@hydra.main(config_path=conf_dir(), config_name="infer", version_base="1.3")
def main(cfg: DictConfig) -> None:
    truth = open_truth(cfg.data.truth)
    df = skill_table(cfg.paths.products_dir, truth, grid=grid_from(cfg))
    path = write_skill(df, cfg.paths.products_dir)
    key = df[(df.region == "land excl. Greenland & Antarctica")]
    print(key.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"written {path}")


if __name__ == "__main__":
    main()
