"""Builders of bad inputs for the reliability corpus: everything is written in ``tmp_path`` (no committed binaries).

The file-format builders of the reader tests (``test_io_era5.write_new``, ``test_io_mascon.write_mascon``,
``test_io_vegetation.write_monthly``) are reused, not duplicated.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import lightning
import netCDF4
import numpy as np
import torch
from hydra import compose, initialize_config_dir

from gtws_dl.config import conf_dir
from gtws_dl.models.module import ReconstructionModule

SYN_CHANNELS = ["tp", "sin_phase", "cos_phase", "static"]


def tree_state(*paths: Path) -> dict:
    """{path: sha256 (file) | 'dir' | None (absent)} for every entry under ``paths``: a before/after fingerprint."""
    out: dict = {}
    for root in paths:
        root = Path(root)
        if not root.exists():
            out[str(root)] = None
            continue
        entries = [root] + sorted(root.rglob("*")) if root.is_dir() else [root]
        for p in entries:
            if p.is_dir():
                out[str(p)] = "dir"
            else:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def product_numbers(products_dir: Path, names) -> dict:
    """The numbers users read from a products folder: each NetCDF product's ``twsa`` (key: its file name), its Zarr
    copy's (``<name>.zarr``), and every workbook sheet but the README (``xlsx:<sheet>``)."""
    import pandas as pd
    import xarray as xr

    out = {}
    for name in names:
        with xr.open_dataset(products_dir / name) as ds:
            out[name] = ds["twsa"].values
        out[name + ".zarr"] = xr.open_zarr(products_dir / name.replace(".nc", ".zarr"),
                                           consolidated=False)["twsa"].values
    for sheet, df in pd.read_excel(products_dir / "gtws_dl_regional_series.xlsx", sheet_name=None).items():
        if sheet != "README":
            out["xlsx:" + sheet] = df.drop(columns="time").to_numpy(float)
    return out


def copy_cube(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_manifest(cube_dir: Path, fn) -> None:
    """Apply ``fn(manifest_dict)`` (edits in place; its return value is ignored) to ``cube_dir/manifest.json``."""
    mpath = Path(cube_dir) / "manifest.json"
    m = json.loads(mpath.read_text())
    fn(m)
    mpath.write_text(json.dumps(m))


def module_for(cube_dir: Path, *, channels=None, res: float = 10.0, shape=(18, 36), targets=("csr",),
               window: int = 12, warmup: int = 6, hidden=(4,), seed: int = 0, mean=None, std=None):
    """An untrained :class:`ReconstructionModule` whose normalisation comes from the cube's manifest."""
    m = json.loads((Path(cube_dir) / "manifest.json").read_text())
    channels = list(channels or m["channels"])
    st = m["stats"]
    norm = {"channels": channels,
            "mean": list(mean if mean is not None else st["mean"][:len(channels)] + [0.0] * (len(channels) - len(st["mean"]))),
            "std": list(std if std is not None else st["std"][:len(channels)] + [1.0] * (len(channels) - len(st["std"]))),
            "targets": list(targets), "min_scale_mm": 10.0,
            "grid": {"res": float(res), "bbox": [-180.0, 180.0, -90.0, 90.0], "shape": list(shape)},
            "stats_period": list(st["period"]), "train_period": ["2002-04", "2008-12"],
            "val_period": ["2010-01", "2012-12"], "window": window, "warmup": warmup}
    torch.manual_seed(seed)
    return ReconstructionModule(
        net={"_target_": "gtws_dl.models.convlstm.ConvLSTM", "hidden": list(hidden), "kernel_size": 3,
             "encoder": 4},
        optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3}, in_channels=len(channels),
        targets=list(targets), normalisation=norm, lon_circular=True)


def save_checkpoint(module, path: Path) -> Path:
    """The Lightning checkpoint layout (what ``Trainer.save_checkpoint`` writes for weights + hparams)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__, "epoch": 0, "global_step": 0}, path)
    return path


def infer_cfg(out_dir: Path, cube_dir: Path, ckpt: Path, *extra: str):
    """The real ``infer`` config composed with Hydra, on the synthetic cube."""
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("infer", overrides=[f"paths.output_dir={out_dir}", f"paths.cube_dir={cube_dir}",
                                           "grid.res=10", "target=csr", f"ckpt_path={ckpt}", "device=cpu",
                                           *extra])


def train_cfg(out_dir: Path, cube_dir: Path, *extra: str):
    """The real ``train`` config, tiny and on CPU."""
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("train", overrides=[
            f"paths.output_dir={out_dir}", f"paths.cube_dir={cube_dir}", "grid.res=10", "target=csr",
            "datamodule.window=12", "datamodule.warmup=6", "datamodule.patch=[8,null]", "datamodule.batch_size=2",
            "datamodule.samples_per_epoch=4", "datamodule.val_months=12", "model.net.hidden=[4]",
            "model.net.encoder=4", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1", *extra])


def write_landcover_without_class(path: Path) -> Path:
    """A land-cover file whose fraction variable lacks the ``class`` dimension."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 2)
        nc.createDimension("lat", 2)
        nc.createDimension("lon", 3)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2000-01-01", "standard"
        t[:] = [0, 366]
        nc.createVariable("lat", "f4", ("lat",))[:] = [-45, 45]
        nc.createVariable("lon", "f4", ("lon",))[:] = [-120, 0, 120]
        x = nc.createVariable("land_cover_fraction", "f4", ("time", "lat", "lon"))
        x.units = "1"
        x[:] = np.full((2, 2, 3), 0.5)
    return path


def write_mascon_no_time_units(path: Path) -> Path:
    """A mascon file whose ``time`` has no units attribute."""
    with netCDF4.Dataset(path, "w") as nc:
        for d, n in (("time", 2), ("lat", 6), ("lon", 12)):
            nc.createDimension(d, n)
        nc.createVariable("time", "f8", ("time",))[:] = [15.5, 45.0]
        nc.createVariable("lat", "f8", ("lat",))[:] = np.arange(-75, 90, 30)
        nc.createVariable("lon", "f8", ("lon",))[:] = np.arange(15, 360, 30)
        x = nc.createVariable("lwe_thickness", "f8", ("time", "lat", "lon"))
        x.units = "cm"
        x[:] = np.zeros((2, 6, 12))
    return path


def write_mascon_station_layout(path: Path) -> Path:
    """``lwe_thickness`` on (time, mascon) — a native mascon-index layout, not a lat/lon grid."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 2)
        nc.createDimension("mascon", 5)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2002-01-01", "gregorian"
        t[:] = [15.5, 45.0]
        x = nc.createVariable("lwe_thickness", "f8", ("time", "mascon"))
        x.units = "cm"
        x[:] = np.zeros((2, 5))
    return path
