"""Where the Hydra configs live and small helpers to turn them into objects.

:func:`validate_config` checks the typed keys of a composed config before anything runs, so an override of the
wrong type (``grid.res=abc``, ``datamodule.window=x``) fails at once with a :class:`ConfigError` that names the
key, the value and what it should be, instead of a ``TypeError`` deep inside a constructor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from gtws_dl.grid import Grid, GridError


class ConfigError(ValueError):
    """A config value that has the wrong type or is out of range; the message names the key."""


def conf_dir() -> str:
    """The ``conf/`` folder: ``$GTWS_DL_CONF`` if set, else the one beside the package (source checkout)."""
    return os.environ.get("GTWS_DL_CONF", str(Path(__file__).resolve().parents[1] / "conf"))


def grid_from(cfg: DictConfig) -> Grid:
    """The :class:`Grid` of ``cfg.grid``; a value of the wrong type raises :class:`ConfigError` naming the key."""
    res = _number(cfg, "grid.res", lambda v: v > 0, "a cell size in degrees > 0, e.g. grid.res=0.5")
    bbox = _get(cfg, "grid.bbox")
    if bbox is not None:
        if not OmegaConf.is_list(bbox) and not isinstance(bbox, list | tuple) or len(bbox) != 4:
            raise ConfigError(f"config key grid.bbox={_show(bbox)}: expected [lon0, lon1, lat0, lat1] in degrees "
                              "or null, e.g. grid.bbox=[0,30,40,60]")
        try:
            bbox = [float(v) for v in bbox]
        except (TypeError, ValueError):
            raise ConfigError(f"config key grid.bbox={_show(list(bbox))}: expected four numbers "
                              "[lon0, lon1, lat0, lat1] in degrees, e.g. grid.bbox=[0,30,40,60]") from None
    try:
        return Grid.from_config(res, bbox)
    except GridError as err:
        raise GridError(f"config grid.res={res} grid.bbox={bbox}: {err}") from None


def to_plain(cfg) -> dict:
    """A resolved plain-dict copy of a config node (for manifests and product attributes)."""
    return OmegaConf.to_container(cfg, resolve=True)


# ------------------------------------------------------------------------------------------ validation
_MISSING = object()


def _get(cfg: DictConfig, key: str, default=_MISSING):
    try:
        node = OmegaConf.select(cfg, key, default=default, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ConfigError(f"config key {key} is required (???) but was not given; pass {key}=...") from None
    return node


def _show(v) -> str:
    return repr(OmegaConf.to_container(v) if OmegaConf.is_config(v) else v)


def _number(cfg, key, ok: Callable[[float], bool], expect: str, *, integer: bool = False):
    v = _get(cfg, key)
    if v is _MISSING:
        raise ConfigError(f"config key {key} is missing; expected {expect}")
    bad = isinstance(v, bool) or not isinstance(v, int | float)
    if isinstance(v, str):  # "0.5" from a YAML string is still a number
        try:
            v = int(v) if integer else float(v)
            bad = False
        except ValueError:
            bad = True
    if not bad and integer and (isinstance(v, float) and not v.is_integer()):
        bad = True
    if bad or not ok(v):
        raise ConfigError(f"config key {key}={_show(v)}: expected {expect}")
    return int(v) if integer else float(v)


def _int(cfg, key, lo: int, expect: str, *, optional: bool = False):
    if optional and _get(cfg, key, None) is None:
        return None
    if _get(cfg, key, _MISSING) is _MISSING:
        return None
    return _number(cfg, key, lambda v: v >= lo, expect, integer=True)


def check_flag(key: str, value, default: bool) -> bool:
    """``value`` of the boolean config key ``key``; anything but true/false raises :class:`ConfigError` naming the
    key and suggesting ``key=<default>``."""
    if not isinstance(value, bool):
        raise ConfigError(
            f"config key {key}={_show(value)}: expected true or false, e.g. {key}={str(default).lower()}"
        )
    return value


def _choice(cfg, key, choices):
    v = _get(cfg, key, _MISSING)
    if v is _MISSING:
        return None
    if v not in choices:
        raise ConfigError(f"config key {key}={_show(v)}: expected one of {list(choices)}")
    return v


def validate_config(cfg: DictConfig) -> None:
    """Check the typed keys of a train/infer/ingest config; raise :class:`ConfigError` naming the first bad key.

    Only keys present in ``cfg`` are checked, so one function serves every command. Call it first, before any
    directory is created.
    """
    grid_from(cfg)
    _int(cfg, "seed", 0, "an integer >= 0, e.g. seed=0")
    if _get(cfg, "datamodule", None) is not None:
        w = _int(cfg, "datamodule.window", 1, "a number of months >= 1, e.g. datamodule.window=24")
        u = _int(cfg, "datamodule.warmup", 0, "a number of months >= 0, e.g. datamodule.warmup=12")
        if w is not None and u is not None and u >= w:
            raise ConfigError(f"config key datamodule.warmup={u} must be smaller than datamodule.window={w}: "
                              "a window needs months after its warm-up for the loss")
        _int(cfg, "datamodule.batch_size", 1, "an integer >= 1, e.g. datamodule.batch_size=4")
        _int(cfg, "datamodule.val_months", 0, "a number of months >= 0, e.g. datamodule.val_months=24")
        _int(cfg, "datamodule.gap_months", 0, "a number of months >= 0 or null", optional=True)
        _int(cfg, "datamodule.samples_per_epoch", 1, "an integer >= 1 or null", optional=True)
        _int(cfg, "datamodule.num_workers", 0, "an integer >= 0, e.g. datamodule.num_workers=0")
        patch = _get(cfg, "datamodule.patch", None)
        if patch is not None:
            if not OmegaConf.is_list(patch) or len(patch) != 2 or not all(
                    p is None or (isinstance(p, int) and not isinstance(p, bool) and p > 0) for p in patch):
                raise ConfigError(f"config key datamodule.patch={_show(patch)}: expected [lat cells, lon cells] "
                                  "(positive integers or null) or null, e.g. datamodule.patch=[16,48]")
        _choice(cfg, "datamodule.target_base", ("none", "seasonal_trend"))
        inm = _get(cfg, "datamodule.in_memory", "auto")
        if inm not in ("auto", True, False):
            raise ConfigError(f"config key datamodule.in_memory={_show(inm)}: expected auto, true or false")
    if _get(cfg, "trainer", None) is not None:
        _int(cfg, "trainer.max_epochs", -1, "an integer (-1 = no limit), e.g. trainer.max_epochs=6")
    if _get(cfg, "model.optimizer.lr", None) is not None:
        _number(cfg, "model.optimizer.lr", lambda v: v > 0 and v == v and v < float("inf"),
                "a learning rate > 0, e.g. model.optimizer.lr=3e-3")
    _choice(cfg, "device", ("auto", "cpu", "cuda"))
    if _get(cfg, "batch_windows", None) is not None:
        _int(cfg, "batch_windows", 1, "an integer >= 1, e.g. batch_windows=4")
    tile = _get(cfg, "tile", None)
    if tile is not None and (not OmegaConf.is_list(tile) or len(tile) != 2
                             or not all(isinstance(t, int) and not isinstance(t, bool) and t > 0 for t in tile)):
        raise ConfigError(f"config key tile={_show(tile)}: expected [lat cells, lon cells] (positive integers) "
                          "or null, e.g. tile=[128,256]")
    ckpt = _get(cfg, "ckpt_path", None)
    if ckpt is not None and not isinstance(ckpt, str):
        raise ConfigError(f"config key ckpt_path={_show(ckpt)}: expected a path to a .ckpt file (or 'last' "
                          "when training)")
