"""Where the Hydra configs live and small helpers to turn them into objects.

The keys of a command's config are described by the structured-config schemas of :mod:`gtws_dl.schema`
(registered in Hydra's ConfigStore when this module is imported, so key names and plain types are checked at
compose time). :func:`validate_config` runs the range and choice checks those schemas declare, so an override
of the wrong type or range (``grid.res=abc``, ``datamodule.window=x``, ``device=gpu``) fails at once with a
:class:`ConfigError` that names the key, the value and what it should be, instead of a ``TypeError`` deep inside
a constructor.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from gtws_dl import schema
from gtws_dl.grid import Grid, GridError
from gtws_dl.schema import Check

schema.register()


class ConfigError(ValueError):
    """A config value that has the wrong type or is out of range; the message names the key."""


def conf_dir() -> str:
    """The ``conf/`` folder: ``$GTWS_DL_CONF`` if set, else the one beside the package (source checkout)."""
    return os.environ.get("GTWS_DL_CONF", str(Path(__file__).resolve().parents[1] / "conf"))


def grid_from(cfg: DictConfig) -> Grid:
    """The :class:`Grid` of ``cfg.grid``; a value of the wrong type raises :class:`ConfigError` naming the key."""
    res = check_key(cfg, "grid.res")
    bbox = check_key(cfg, "grid.bbox")
    bbox = None if bbox is _MISSING else bbox
    try:
        return Grid.from_config(res, bbox)
    except GridError as err:
        raise GridError(f"config grid.res={res} grid.bbox={bbox}: {err}") from None


def to_plain(cfg) -> dict:
    """A resolved plain-dict copy of a config node (for manifests and product attributes)."""
    return OmegaConf.to_container(cfg, resolve=True)


# ------------------------------------------------------------------------------------------ validation
_MISSING = object()
CHECKS: dict[str, Check] = schema.checks()


def _get(cfg: DictConfig, key: str, default=_MISSING):
    try:
        node = OmegaConf.select(cfg, key, default=default, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ConfigError(f"config key {key} is required (???) but was not given; pass {key}=...") from None
    return node


def _show(v) -> str:
    return repr(OmegaConf.to_container(v) if OmegaConf.is_config(v) else v)


def _bad(key: str, v, expect: str) -> ConfigError:
    return ConfigError(f"config key {key}={_show(v)}: expected {expect}")


def _number(key: str, v, check: Check):
    integer = check.kind == "int"
    bad = isinstance(v, bool) or not isinstance(v, int | float)
    if isinstance(v, str):  # "0.5" from a YAML string is still a number
        try:
            v = int(v) if integer else float(v)
            bad = False
        except ValueError:
            bad = True
    if not bad and integer and (isinstance(v, float) and not v.is_integer()):
        bad = True
    if not bad:
        bad = v < check.lo if integer else not (v > 0 and math.isfinite(v))
    if bad:
        raise _bad(key, v, check.expect)
    return int(v) if integer else float(v)


def _cells(v, null_ok: bool) -> bool:
    return (
        OmegaConf.is_list(v)
        and len(v) == 2
        and all(
            (null_ok and c is None) or (isinstance(c, int) and not isinstance(c, bool) and c > 0) for c in v
        )
    )


def _bbox(key: str, v) -> list[float]:
    if not OmegaConf.is_list(v) and not isinstance(v, list | tuple) or len(v) != 4:
        raise ConfigError(
            f"config key {key}={_show(v)}: expected [lon0, lon1, lat0, lat1] in degrees "
            "or null, e.g. grid.bbox=[0,30,40,60]"
        )
    try:
        return [float(c) for c in v]
    except (TypeError, ValueError):
        raise ConfigError(
            f"config key {key}={_show(list(v))}: expected four numbers "
            "[lon0, lon1, lat0, lat1] in degrees, e.g. grid.bbox=[0,30,40,60]"
        ) from None


def check_key(cfg: DictConfig, key: str, check: Check | None = None):
    """The value of ``key`` in ``cfg`` checked by ``check`` (default: the schema's :data:`CHECKS` ``[key]``):
    numbers converted (``int``: int, ``positive``: float), ``_MISSING`` when absent and not required."""
    check = check or CHECKS[key]
    v = _get(cfg, key)
    if v is _MISSING:
        if check.required:
            raise ConfigError(f"config key {key} is missing; expected {check.expect}")
        return _MISSING
    if v is None and check.none_ok:
        return None
    kind = check.kind
    if kind in ("int", "positive"):
        return _number(key, v, check)
    if kind == "choice":
        if v not in check.choices:
            raise _bad(key, v, check.expect or f"one of {list(check.choices)}")
    elif kind == "flag":
        check_flag(key, v, check.default)
    elif kind == "cells":
        if not _cells(v, check.null_cells):
            raise _bad(key, v, check.expect)
    elif kind == "bbox":
        return _bbox(key, v)
    elif kind == "path":
        if not isinstance(v, str):
            raise _bad(key, v, check.expect)
    else:
        raise AssertionError(f"unknown check kind {kind!r} of {key}")
    return v


def check_flag(key: str, value, default: bool) -> bool:
    """``value`` of the boolean config key ``key``; anything but true/false raises :class:`ConfigError` naming the
    key and suggesting ``key=<default>``."""
    if not isinstance(value, bool):
        raise ConfigError(
            f"config key {key}={_show(value)}: expected true or false, e.g. {key}={str(default).lower()}"
        )
    return value


def validate_config(cfg: DictConfig) -> None:
    """Run the checks the schemas of :mod:`gtws_dl.schema` declare on the keys of a train/infer/ingest config, then
    :data:`gtws_dl.schema.RULES` and the grid itself; raise :class:`ConfigError` naming the first bad key.

    Only keys present in ``cfg`` are checked (``grid.res`` is required), so one function serves every command.
    Call it first, before any directory is created.
    """
    values = {key: check_key(cfg, key, check) for key, check in CHECKS.items()}
    for keys, ok, message in schema.RULES:
        args = [values.get(k, _MISSING) for k in keys]
        if all(a is not _MISSING and a is not None for a in args) and not ok(*args):
            raise ConfigError(message.format(*args))
    grid_from(cfg)
