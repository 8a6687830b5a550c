"""Where the Hydra configs live and small helpers to turn them into objects.

The keys of a command's config are described by the structured-config schemas of :mod:`gtws_dl.schema`
(registered in Hydra's ConfigStore when this module is imported, so key names and plain types are checked at
compose time). :func:`validate_config` runs the range and choice checks those schemas declare, so an override
of the wrong type or range (``grid.res=abc``, ``datamodule.window=x``, ``device=gpu``) fails at once with a
:class:`ConfigError` that names the key, the value and what it should be, instead of a ``TypeError`` deep inside
a constructor.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from gtws_dl import schema
from gtws_dl.diskspace import disk_space_error, free_bytes
from gtws_dl.grid import Grid, GridError
from gtws_dl.heap import limit_arenas
from gtws_dl.schema import Check

schema.register()
LOGGER = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value that has the wrong type or is out of range; the message names the key."""


def conf_dir() -> str:
    """The configs: ``$GTWS_DL_CONF`` if set, else ``gtws_dl/conf`` inside the installed package (package data of
    the wheel, so a non-editable ``pip install`` has them; ``conf/`` at the repository root links to it)."""
    return os.environ.get("GTWS_DL_CONF", str(Path(__file__).resolve().parent / "conf"))


def command_groups(config_name: str) -> str:
    """The config groups a command's primary config composes, one line each (``group: options (default: x)``),
    for its ``--help`` (Hydra's own list shows every group in ``conf/``, also those the command never reads)."""
    import yaml

    root = Path(conf_dir())
    groups: dict[str, str] = {}
    todo, seen = [config_name], set()
    while todo:
        name = todo.pop(0)
        if name in seen or not (root / f"{name}.yaml").is_file():
            continue
        seen.add(name)
        for entry in (yaml.safe_load((root / f"{name}.yaml").read_text()) or {}).get("defaults", []):
            if isinstance(entry, str):
                todo.append(entry)  # another primary config (e.g. update includes infer), or a schema
            elif isinstance(entry, dict):
                for group, option in entry.items():
                    group = str(group).removeprefix("optional ").removeprefix("override ").strip()
                    if group != "hydra":
                        groups.setdefault(group, str(option))
    lines = []
    for group, default in groups.items():
        options = sorted(p.stem for p in (root / group).glob("*.yaml") if p.stem != "base")  # base: shared part
        lines.append(f"{group}: {', '.join(options)} (default: {'none' if default == 'None' else default})")
    return "\n".join(lines) or "(none)"


OmegaConf.register_new_resolver("gtws_groups", command_groups, replace=True)


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


# ------------------------------------------------------------------------------------- command entry points
# User errors: bad config, input, cube, checkpoint, a busy or full output. A command prints their message on one
# line and exits 2; anything else is a bug and keeps its traceback. Matched by class name along the MRO, so this
# core module needs no import of the floors that define them (io, cube, checkpoint, post, evaluate).
USER_ERRORS = frozenset({
    "ConfigError", "GridError", "InputFileError", "CubeError", "CubeNotFoundError", "CheckpointMismatchError",
    "InvalidCheckpointError", "OutputLockedError", "InputsInUseError", "DiskSpaceError", "OutputNotWritableError",
    "ProductsManifestError", "TwinConfigError", "GridMismatch", "NonFiniteLossError", "MissingDependencyError",
    "TargetBaseMismatchError",
})
EXIT_USER_ERROR, EXIT_SIGINT, EXIT_SIGTERM = 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's time limit, ``kill``): raised like Ctrl+C so the same cleanup runs."""


_terminated = False


def _raise_terminated(signum, frame):
    global _terminated
    _terminated = True
    raise Terminated(f"terminated by signal {signum} (SIGTERM)")


def install_sigterm() -> None:
    """SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread: writers drop their temp
    stores in the same ``except BaseException``/``finally`` blocks that handle Ctrl+C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is one of :data:`USER_ERRORS` (or a subclass): a message for the user, not a bug."""
    return any(c.__name__ in USER_ERRORS for c in type(err).__mro__)


def one_line(err: BaseException) -> str:
    """``ErrorName: message`` on one line."""
    return f"{type(err).__name__}: " + " ".join(str(err).split())


def single_lightning_log() -> None:
    """Lightning's ``lightning`` logger prints through its own console handler *and* propagates to the root
    logger that Hydra configured: every message twice. Drop Lightning's console handlers when the root has
    handlers, so each message is printed once (in Hydra's format, and also written to the job's log file)."""
    root = logging.getLogger()
    if not root.handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if type(h) is logging.StreamHandler:
                lg.removeHandler(h)
        lg.propagate = True


def _as_disk_full(cfg, err: Exception) -> Exception | None:
    """A :class:`~gtws_dl.diskspace.DiskSpaceError` for ``err`` when it is a full disk (ENOSPC, or HDF5's errno-less
    errors on a nearly full file system) under the command's ``paths.*`` folder with the least free space."""
    try:
        paths = OmegaConf.to_container(cfg.paths, resolve=True) if isinstance(cfg, DictConfig) else {}
    except Exception:  # noqa: BLE001 - an unresolvable path: nothing to name
        return None
    folders = [(k, v) for k, v in (paths or {}).items() if isinstance(v, str) and v]
    if not folders:
        return None
    key, path = min(folders, key=lambda kv: free_bytes(kv[1]))
    mapped = disk_space_error(err, path, what="output", config_key=f"paths.{key}")
    if mapped is not None:
        mapped.__cause__ = err
    return mapped


def command(fn=None, *, reads_cube: bool = False):
    """Decorator of a command's task function (under ``@hydra.main``): SIGTERM handled like Ctrl+C, user errors
    (:data:`USER_ERRORS`) printed as one line on stderr with exit status 2 (the traceback only with
    ``HYDRA_FULL_ERROR=1``), interrupts exit 130 (SIGINT) / 143 (SIGTERM) after the writers' cleanup, one line per
    Lightning message. ``reads_cube``: the grid comes from the cube's manifest unless ``grid.*`` is on the
    command line (:func:`adopt_cube_grid`)."""

    def deco(task):
        @functools.wraps(task)
        def wrapper(cfg, *args, **kwargs):
            limit_arenas()  # before the reader threads start (gtws_dl.heap)
            install_sigterm()
            single_lightning_log()
            full = os.environ.get("HYDRA_FULL_ERROR") == "1"
            try:
                if reads_cube:
                    adopt_cube_grid(cfg)
                return task(cfg, *args, **kwargs)
            except KeyboardInterrupt as err:
                if full:
                    raise
                term = isinstance(err, Terminated) or _terminated
                print(f"gtws-dl: {'terminated (SIGTERM)' if term else 'interrupted (SIGINT)'}; temporary files "
                      "were removed, re-run the same command to go on", file=sys.stderr)
                sys.exit(EXIT_SIGTERM if term else EXIT_SIGINT)
            except SystemExit:
                if _terminated:  # Lightning turns the interrupt into sys.exit(1) after its graceful shutdown
                    print("gtws-dl: terminated (SIGTERM); re-run the same command to go on", file=sys.stderr)
                    sys.exit(EXIT_SIGTERM)
                raise
            except Exception as err:
                if not is_user_error(err):
                    err = _as_disk_full(cfg, err) or err  # a writer without its own mapping met a full disk
                if full or not is_user_error(err):
                    raise
                print(one_line(err), file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)

        return wrapper

    return deco(fn) if fn is not None else deco


# ---------------------------------------------------------------------------------------- grid from the cube
def grid_on_command_line(overrides) -> bool:
    """Whether Hydra overrides set the grid (``grid.res=``, ``grid.bbox=``, ``grid=quarter``, ``+grid...``)."""
    for o in overrides:
        key = str(o).split("=", 1)[0].lstrip("+~")
        if key == "grid" or key.startswith("grid."):
            return True
    return False


def task_overrides() -> list[str] | None:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not under @hydra.main: a composed config is taken as it is
        return None


def adopt_cube_grid(cfg: DictConfig, overrides=None) -> bool:
    """Take ``grid.res``/``grid.bbox`` from the manifest of the cube in ``paths.cube_dir`` unless the grid is on
    the command line (``overrides``, default: the Hydra job's), so later commands need not repeat the ingest's
    ``grid.*``. Explicit overrides win and are still checked against the cube. Returns whether it changed
    ``cfg``; no cube (or not under Hydra, no ``overrides``): nothing changes."""
    overrides = task_overrides() if overrides is None else list(overrides)
    if overrides is None or grid_on_command_line(overrides) or OmegaConf.select(cfg, "grid") is None:
        return False
    cube_dir = OmegaConf.select(cfg, "paths.cube_dir", default=None)
    mpath = Path(str(cube_dir)) / "manifest.json" if cube_dir and "://" not in str(cube_dir) else None
    if mpath is None or not mpath.is_file():
        return False
    try:
        grid = json.loads(mpath.read_text())["grid"]
        res, bbox = float(grid["res"]), [float(b) for b in grid["bbox"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # an unreadable manifest is refused with its own message when the cube is opened
    bbox = None if bbox == [-180.0, 180.0, -90.0, 90.0] else bbox
    if OmegaConf.select(cfg, "grid.res") == res and OmegaConf.select(cfg, "grid.bbox") == bbox:
        return False
    with open_dict(cfg):
        cfg.grid.res, cfg.grid.bbox = res, bbox
    LOGGER.info("grid from the cube %s: grid.res=%s grid.bbox=%s (pass grid.* to choose another)", mpath, res, bbox)
    return True
