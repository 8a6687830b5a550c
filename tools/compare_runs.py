"""Compare two run folders (``paths.output_dir``) array by array: ``python tools/compare_runs.py A B``.

Products (NetCDF variables and attributes, timestamps/version/config excepted), the regional workbook, the cube
and reconstruction Zarr arrays, checkpoint weights and the twin's files. ``--atol`` allows a tolerance (e.g. 1e-5
when a change may reorder floating-point work); the default demands bit-identical arrays. Exit 1 on a difference.
Used to check that a refactoring leaves ``make demo`` unchanged (same seed, CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
import zarr

SKIP_ATTRS = {"history", "date_created", "date_modified", "gtws_dl_version", "code_version", "config"}


def same(x: np.ndarray, y: np.ndarray, atol: float) -> bool:
    if x.shape != y.shape:
        return False
    if x.dtype.kind in "fc":
        return bool(np.allclose(x, y, rtol=0, atol=atol, equal_nan=True)) if atol else np.array_equal(x, y, equal_nan=True)
    return bool(np.array_equal(x, y))


def compare_netcdf(a: Path, b: Path, atol: float) -> list[str]:
    out = []
    with xr.open_dataset(a) as da, xr.open_dataset(b) as db:
        out += [f"{a.name}: variable {v} only on one side" for v in set(da.variables) ^ set(db.variables)]
        out += [f"{a.name}: {v} differs" for v in set(da.variables) & set(db.variables)
                if not same(da[v].values, db[v].values, atol)]
        ka = {k: str(v) for k, v in da.attrs.items() if k not in SKIP_ATTRS}
        kb = {k: str(v) for k, v in db.attrs.items() if k not in SKIP_ATTRS}
        out += [f"{a.name}: attribute {k} differs" for k in set(ka) | set(kb) if ka.get(k) != kb.get(k)]
    return out


def compare_zarr(a: Path, b: Path, atol: float) -> list[str]:
    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    arrays_b = dict(gb.arrays())
    return [f"{a}/{name}: differs or missing" for name, arr in ga.arrays()
            if name not in arrays_b or not same(arr[...], arrays_b[name][...], atol)]


def compare(a: Path, b: Path, atol: float = 0.0) -> tuple[int, list[str]]:
    """(number of files and stores compared, differences)."""
    bad, n = [], 0
    for f in sorted(a.glob("products/*.nc")) + sorted(a.glob("twin/**/*.nc")):
        g = b / f.relative_to(a)
        if not g.exists():
            bad.append(f"{g} missing")
        elif f.read_bytes() != g.read_bytes():
            bad += compare_netcdf(f, g, atol)
        n += 1
    for f in sorted(a.glob("products/*.xlsx")):
        s1, s2 = pd.read_excel(f, sheet_name=None), pd.read_excel(b / f.relative_to(a), sheet_name=None)
        bad += [f"{f.name}: sheet {k} differs" for k in s1 if k not in s2 or not s1[k].equals(s2[k])]
        n += 1
    for store in sorted(a.glob("cube/*.zarr")) + sorted(a.glob("recon/*.zarr")):
        bad += compare_zarr(store, b / store.relative_to(a), atol)
        n += 1
    for c in sorted(a.glob("train/**/*.ckpt")):
        s1 = torch.load(c, map_location="cpu", weights_only=False)["state_dict"]
        s2 = torch.load(b / c.relative_to(a), map_location="cpu", weights_only=False)["state_dict"]
        bad += [f"{c.relative_to(a)}: {k} differs" for k in s1
                if k not in s2 or not same(s1[k].numpy(), s2[k].numpy(), atol)]
        n += 1
    if (a / "cube/manifest.json").exists():
        m1, m2 = (json.loads((d / "cube/manifest.json").read_text()) for d in (a, b))
        bad += [f"cube manifest: {k} differs" for k in ("channels", "stats", "grid", "time") if m1.get(k) != m2.get(k)]
    return n, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for float arrays (default: exact)")
    args = ap.parse_args(argv)
    n, bad = compare(args.a, args.b, args.atol)
    print(f"compared {n} files and stores")
    print("\n".join(bad) if bad else "identical" + (f" within {args.atol}" if args.atol else " (bit for bit)"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
