"""Area scaling of memory: peak RSS of each stage on a 0.25° box 4× larger ÷ on the smaller one.

``python -m bench.area [--work DIR] [--out BENCHMARKS.md]`` runs twin → ingest → train (a short run) → infer
(reconstruction + products) on two 0.25° boxes of the same latitude range, each stage in a fresh process that
reports its own peak RSS (``VmHWM``), and writes the table into the "Area scaling of memory" section of
``BENCHMARKS.md`` (also part of ``python -m bench.run``). Every stage's budget is scaled down with the boxes
(:data:`BUDGETS`) so that both boxes exceed it — one band, tile or block — and what is measured is whether memory
follows the budget or the domain. The network is trained with 8-month windows (4 of warm-up): its halo, windows ×
layers cells (16; 8 when the state is carried), is then small against the boxes, where the default 24-month
window's (48) is as wide as the small box and a tile would read it all. The land masks are derived before the
first measured stage (``global-land-mask`` costs ≈ 1 GB once per grid). Goal: every ratio ≤ 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL = [0.0, 20.0, 40.0, 50.0]  # lon0, lon1, lat0, lat1: 40 x 80 cells at 0.25 deg (Europe: land and sea)
LARGE = [0.0, 40.0, 30.0, 50.0]  # 80 x 160 cells: 4x the area
PERIOD = ("2002-01", "2009-12")  # the GRACE era's start: 96 months, 2004-2009 baseline inside
MEMORY_GB = 0.05  # inference budget for these boxes (tiles of 68 cells + an 8-cell halo on both)
# each stage's budget, scaled down with the boxes so that the small one exceeds it too
BUDGETS = {
    "twin": ["twin.memory_gb=0.01"],  # the anomaly pass and the variance budget in bands
    "ingest": ["memory_gb=0.04"],  # bands x blocks, the open files' chunk caches inside it
    "train": ["datamodule.in_memory=false", "datamodule.val_tile=16", "datamodule.fit_memory_gb=0.01"],
    "infer": [f"memory_gb={MEMORY_GB}", "products.memory_gb=0.01"],
}
WINDOW = ["datamodule.window=8", "datamodule.warmup=4"]  # a halo small against the boxes (see the docstring)
SECTION = "## Area scaling of memory"

# the child: run one stage (a module or a script) in this process and print its own peak RSS
CHILD = r"""
import json, runpy, sys
target, out, args = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.argv = [target, *args]
code = 0
try:
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
open(out, "w").write(json.dumps({"peak_mb": hwm, "code": code}))
sys.exit(code)
"""


def _stages(box: list[float], out: Path) -> list[tuple[str, str, list[str]]]:
    grid = ["grid.res=0.25", f"grid.bbox=[{','.join(f'{v:g}' for v in box)}]", f"paths.output_dir={out}"]
    return [
        ("twin", "gtws_dl.twin", [*grid, f"twin.start={PERIOD[0]}", f"twin.end={PERIOD[1]}", "twin.progress=false",
                                  *BUDGETS["twin"]]),
        ("ingest", "gtws_dl.ingest", [*grid, *BUDGETS["ingest"]]),
        ("train", str(REPO / "train.py"), [*grid, "target=csr", "trainer.max_epochs=1", "datamodule.samples_per_epoch=16",
                                           "datamodule.batch_size=4", "trainer.enable_progress_bar=false", *WINDOW,
                                           *BUDGETS["train"]]),
        ("infer", str(REPO / "infer.py"), [*grid, "target=csr", "batch_windows=1", *BUDGETS["infer"]]),
    ]


# derive and cache the boxes' land masks (``global-land-mask`` is ≈ 1 GB to import) outside the measured stages
WARM = r"""
import sys
from gtws_dl.grid import Grid
from gtws_dl.landmask import land_fraction
for box in sys.argv[1:]:
    land_fraction(Grid(0.25, tuple(float(v) for v in box.split(","))))
"""


def _run_stage(target: str, args: list[str], work: Path, name: str) -> dict:
    rss = work / f"{name}.rss.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, target, str(rss), *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not rss.exists():
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return {**json.loads(rss.read_text()), "seconds": seconds}


def bench_area(work: Path) -> dict:
    """Peak RSS and wall time of every stage on both boxes, and their ratios."""
    rows = {}
    subprocess.run([sys.executable, "-c", WARM, *(",".join(f"{v:g}" for v in b) for b in (SMALL, LARGE))], cwd=REPO,
                   check=True, capture_output=True)
    for label, box in (("small", SMALL), ("large", LARGE)):
        out = work / f"area-{label}"
        for stage, target, args in _stages(box, out):
            rows.setdefault(stage, {})[label] = _run_stage(target, args, work, f"{label}-{stage}")
            print(f"area {label} {stage}: {rows[stage][label]['peak_mb']:.0f} MB, "
                  f"{rows[stage][label]['seconds']:.0f} s", flush=True)
    cells = {k: int(round((b[1] - b[0]) / 0.25 * (b[3] - b[2]) / 0.25)) for k, b in (("small", SMALL), ("large", LARGE))}
    for r in rows.values():
        r["ratio"] = r["large"]["peak_mb"] / r["small"]["peak_mb"]
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "stages": rows, "cells": cells,
            "boxes": {"small": SMALL, "large": LARGE}, "period": list(PERIOD), "budgets": BUDGETS, "window": WINDOW}


def render_area(res: dict) -> str:
    c, b = res["cells"], res["boxes"]
    lines = [
        SECTION, "",
        f"`bench/area.py`: twin → ingest → train (1 epoch of 16 samples) → infer (reconstruction + products) on two "
        f"0.25° boxes over {res['period'][0]}..{res['period'][1]}: bbox {b['small']} ({c['small']:,} cells) and "
        f"{b['large']} ({c['large']:,} cells, 4×). Each stage runs in a fresh process and reports its own peak RSS "
        "(VmHWM), the land masks derived before. Every stage's budget is scaled down with the boxes, so that both "
        "exceed one band, tile or block: "
        + "; ".join(f"{k} `{' '.join(v)}`" for k, v in res["budgets"].items())
        + f". The network trains with `{' '.join(res['window'])}`, so that its halo (windows × layers: 16 cells, 8 "
        "carried) is small against the boxes (the default 24-month window's 48 cells is the small box's width). "
        "Goal: ratio ≤ 1.2 for every stage.", "",
        f"- Command: `python -m bench.area` (also run by `python -m bench.run`), {res.get('date', '')}.", "",
        "| stage | small box MB | large box MB | ratio (4× area) | small s | large s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for stage, r in res["stages"].items():
        lines.append(f"| {stage} | {r['small']['peak_mb']:.0f} | {r['large']['peak_mb']:.0f} | {r['ratio']:.2f} | "
                     f"{r['small']['seconds']:.0f} | {r['large']['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def replace_section(markdown: str, section: str) -> str:
    """``markdown`` with the section of ``section``'s heading (its first line) replaced by it (appended if
    absent)."""
    pat = re.compile(re.escape(section.splitlines()[0]) + r".*?(?=\n## |\Z)", re.S)
    if pat.search(markdown):
        return pat.sub(lambda _: section.rstrip("\n"), markdown, count=1).rstrip("\n") + "\n"
    return markdown.rstrip("\n") + "\n\n" + section


def section_main(name: str, doc: str, run, render, argv: list[str] | None = None) -> None:
    """The command of one benchmark that owns a section of ``BENCHMARKS.md``: ``python -m bench.<name> [--work DIR]
    [--out FILE]`` runs ``run(scratch_dir)`` and replaces the section ``render(result)`` in ``--out``."""
    ap = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: system temp)")
    ap.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="report whose section is replaced")
    a = ap.parse_args(argv)
    if a.work is not None:
        a.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"gtws-{name}-", dir=a.work) as tmp:
        res = run(Path(tmp))
    section = render(res)
    text = a.out.read_text() if a.out.exists() else "# gtws-dl benchmarks\n"
    a.out.write_text(replace_section(text, section))
    print(section)


def main(argv: list[str] | None = None) -> None:
    section_main("area", __doc__, bench_area, render_area, argv)


if __name__ == "__main__":
    main()
