"""The report's table of sections and its atomic writer (``report.md``, PNG figures, ``numbers.json``)."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import time as _time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from gtws_dl import __version__
from gtws_dl.evaluate.report.basins import section_basins
from gtws_dl.evaluate.report.context import Context, Skip, load_context
from gtws_dl.evaluate.report.discharge import section_discharge
from gtws_dl.evaluate.report.elnino import section_enso
from gtws_dl.evaluate.report.maps import section_maps
from gtws_dl.evaluate.report.mass import section_sle
from gtws_dl.evaluate.report.published import section_published
from gtws_dl.evaluate.report.regional import section_regional
from gtws_dl.evaluate.report.truth_skill import section_skill
from gtws_dl.lock import remove_stale_temps

LOGGER = logging.getLogger(__name__)

SECTIONS: list[tuple[str, Callable[[Context], list[str]]]] = [
    ("1. Skill, trend and seasonal-amplitude maps", section_maps),
    ("2. Regional series", section_regional),
    ("3. Global land mass as sea-level equivalent (land–ocean mass budget)", section_sle),
    ("4. Basin water balance", section_basins),
    ("5. Discharge check", section_discharge),
    ("6. El Niño composites", section_enso),
    ("7. Comparison with published reconstructions", section_published),
    ("8. Skill against the twin truth", section_skill),
]


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return str(v)


def run_sections(ctx: Context) -> tuple[list[str], dict[str, str]]:
    """Markdown of every section and its status; a skipped or failed section says why, the others still run."""
    body: list[str] = []
    status: dict[str, str] = {}
    for title, fn in SECTIONS:
        LOGGER.info("section %s", title)
        body += [f"## {title}", ""]
        try:
            body += fn(ctx)
            status[title] = "done"
        except Skip as exc:
            LOGGER.warning("%s skipped: %s", title, exc)
            body += [f"**Skipped:** {exc}", ""]
            status[title] = f"skipped: {exc}"
        except Exception as exc:  # a broken section must not hide the others, nor be hidden
            LOGGER.exception("%s failed", title)
            body += [f"**Failed:** `{type(exc).__name__}: {exc}` (see the log)", ""]
            status[title] = f"failed: {type(exc).__name__}: {exc}"
    return body, status


def build_report(cfg: DictConfig) -> Path:
    """Write ``cfg.report.out_dir`` (report.md, PNGs, numbers.json) atomically; return the report.md path."""
    t0 = _time.time()
    final = Path(cfg.report.out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final.parent, prefix=f"{final.name}.")  # a killed report's folder and staged fields
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    scratch = final.with_name(f"{final.name}.fields.tmp-{os.getpid()}")  # the inputs staged in latitude bands
    try:
        ctx = load_context(cfg, tmp, scratch)
        body, status = run_sections(ctx)
        head = _header(ctx, status, _time.time() - t0)
        (tmp / "report.md").write_text("\n".join(head + body + _footer(cfg)) + "\n")
        (tmp / "numbers.json").write_text(json.dumps({"status": status, **ctx.numbers}, indent=1,
                                                     default=_json_default))
        old = final.with_name(f"{final.name}.old-{os.getpid()}")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    LOGGER.info("wrote %s in %.0f s", final / "report.md", _time.time() - t0)
    return final / "report.md"


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)


def _header(ctx: Context, status: dict[str, str], seconds: float) -> list[str]:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    key = [(k, v) for k, v in ctx.numbers.items() if not isinstance(v, list)]
    md = ["# gtws-dl evaluation report", "",
          f"Generated {now} by gtws-dl {__version__} in {seconds:.0f} s. Output directory: "
          f"`{ctx.cfg.paths.output_dir}`; products: {', '.join(f'`{p.name}`' for p in ctx.products.values())}; "
          f"grid {ctx.grid} ({ctx.grid_source}); {len(ctx.times)} months "
          f"{ctx.times[0]:%Y-%m}–{ctx.times[-1]:%Y-%m}.", "",
          "| section | status |", "|---|---|"] + [f"| {k} | {v} |" for k, v in status.items()]
    md += ["", "Inputs absent: " + ("; ".join(f"{k}: {v}" for k, v in ctx.notes.items()) or "none") + ".", ""]
    if key:
        md += ["## Key numbers", "", "| quantity | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in key]
        md += ["", "`budget_<centre>_r_truth`: correlation of the monthly global land mass with the twin truth over "
               f"{ctx.rc.truth_period[0]}–{ctx.rc.truth_period[1]}; `budget_<centre>_trend_error_gt_yr`: its trend "
               "minus the truth's (Gt yr⁻¹). Full tables in the sections and in numbers.json.", ""]
    return md


def _footer(cfg: DictConfig) -> list[str]:
    return ["## Configuration", "", "```yaml", OmegaConf.to_yaml(cfg, resolve=True).rstrip(), "```"]


def print_key_numbers(numbers_path: Path) -> None:
    """Key numbers and section status of a written report, one per line."""
    nums = json.loads(numbers_path.read_text())
    for k, v in nums.items():
        if not isinstance(v, (list, dict)):
            print(f"{k}: {_fmt(v)}")
    for title, st in nums["status"].items():
        print(f"{title}: {st}")
