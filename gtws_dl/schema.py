"""Structured-config schemas of the commands' Hydra configs (``conf/``), registered in Hydra's ConfigStore.

``conf/train.yaml``, ``conf/infer.yaml`` and ``conf/ingest.yaml`` list their schema first in their defaults list
(``- train_schema`` ...), so the YAML files only give values and composition checks, before anything runs:

* **key names**: every node described here is closed, so a misspelt key in a YAML file or an experiment overlay
  (``datamodule: {windw: 12}``) fails at compose time instead of reaching a constructor. ``+key=value`` still adds a
  key (Hydra opens the node for it), as it did before the schemas.
* **types** of the plain leaves (paths, target, data, ``out_dir``, ``amp`` ...): OmegaConf refuses
  ``data.chunk_months=x`` at compose time with a message naming the key.
* **ranges and choices**: keys with one (``datamodule.window >= 1``, ``warmup < window``, ``device`` in
  auto|cpu|cuda, ...) carry a :class:`Check` in their field metadata and are ``Any`` to OmegaConf, so a wrong type
  gets the same message as a wrong range (an OmegaConf type error is raised inside Hydra's compose, as a
  ``ConfigCompositionException`` without an example, before any gtws_dl code could word it; users and tests rely
  on the ``ConfigError`` wording). :func:`gtws_dl.config.validate_config` runs every check (one function
  driven by :func:`checks`), raising ``ConfigError("config key K=V: expected ..., e.g. K=...")`` first thing in
  each command, before any directory is created.

``model`` and ``trainer`` are ``_target_`` nodes handed to ``hydra.utils.instantiate`` and stay open ``Any``: their
key sets depend on the class chosen (the ConvLSTM's ``net`` has ``hidden``/``kernel_size``, the U-Net's
``lags``/``base``/``depth``; only ``trainer=ddp`` has ``strategy``; any Lightning ``Trainer`` argument may be
added with ``+trainer.X=``), and a dataclass field always materialises, so a closed schema would pass keys such as
``lags`` to ``ConvLSTM(...)`` or ``strategy`` to every Trainer. Their two checked keys (``model.optimizer.lr``,
``trainer.max_epochs``) are declared as nested checks of those fields. ``conf/twin.yaml`` (validated by
:class:`gtws_dl.twin.TwinConfig`), ``conf/report.yaml`` and ``conf/leaderboard.yaml`` have no schema.

Field defaults are ``MISSING``: the YAML files are the one place that holds (and comments) the default values. The
field order is the YAML order, which is the key order of the composed config (and of the config dumped into
manifests). No torch import: this module sits on the bottom floor with :mod:`gtws_dl.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import MISSING


@dataclass(frozen=True)
class Check:
    """How :func:`gtws_dl.config.validate_config` checks one key; ``expect`` ends the message
    ``config key K=V: expected <expect>``.

    kind: ``int`` (an integer >= ``lo``; "24" and 24.0 accepted), ``positive`` (a finite number > 0), ``choice``
    (one of ``choices``), ``flag`` (true/false; ``default`` is suggested), ``cells`` ([lat, lon] positive integers,
    or null entries where ``null_cells``), ``bbox`` (grid.bbox), ``path`` (a string).
    ``none_ok``: null passes unchecked. ``required``: an absent key is an error (otherwise only present keys are
    checked, so one function serves every command).
    """

    kind: str
    expect: str = ""
    lo: int | None = None
    choices: tuple = ()
    default: bool | None = None
    null_cells: bool = False
    none_ok: bool = False
    required: bool = False


def checked(check: Check) -> Any:
    """A dataclass field, ``Any`` to OmegaConf, checked by ``check``."""
    return field(default=MISSING, metadata={"check": check})


def open_node(**nested: Check) -> Any:
    """An open (``Any``) node, e.g. a ``_target_`` group, with checks of some keys below it (``optimizer__lr`` for
    ``optimizer.lr``)."""
    return field(default=MISSING, metadata={"nested": {k.replace("__", "."): c for k, c in nested.items()}})


# ingest and infer: the working set of one block / forward pass, GB (null: ingest 4 GB, infer whole fields)
MEMORY_GB = Check("positive", "a number of GB > 0 or null, e.g. memory_gb=4", none_ok=True)


def node(cls) -> Any:
    return field(default_factory=cls)


def _flag(default: bool) -> Any:
    return checked(Check("flag", default=default))


# --------------------------------------------------------------------------------------------- groups
@dataclass
class PathsSchema:
    """``conf/paths/default.yaml``"""

    output_dir: str = MISSING
    twin_dir: str = MISSING
    cube_dir: str = MISSING
    train_dir: str = MISSING
    recon_dir: str = MISSING
    products_dir: str = MISSING


@dataclass
class GridSchema:
    """``conf/grid/*.yaml``"""

    res: Any = checked(Check("positive", "a cell size in degrees > 0, e.g. grid.res=0.5", required=True))
    bbox: Any = checked(Check("bbox", none_ok=True))


@dataclass
class DataSplitSchema:
    """``data.split``: the split that bounds the statistics period chosen from the data."""

    val_months: Any = checked(Check("int", "a number of months >= 0, e.g. data.split.val_months=24", lo=0))
    gap_months: Any = checked(Check("int", "a number of months >= 0, e.g. data.split.gap_months=24", lo=0))


@dataclass
class DataPlausibilitySchema:
    """``data.plausibility``: value checks of the readers (gtws_dl/io/plausibility.py) waived by name."""

    skip: list[str] = MISSING  # ERA5 short names, lwe_thickness, LAI, SIF, land_cover_fraction or all


@dataclass
class DataSchema:
    """``conf/data/base.yaml`` (+ ``twin.yaml`` / ``files.yaml``): the inputs and the cube-build options."""

    kind: str = MISSING
    era5_dir: str = MISSING
    grace: dict[str, str] = MISSING
    jpl_gain_factor: str | None = MISSING
    lai: str | None = MISSING
    sif: str | None = MISSING
    landcover: str | None = MISSING
    truth: str | None = MISSING
    truth_components: str | None = MISSING
    start: str | None = MISSING  # null: from the data (gtws_dl.cube.periods)
    end: str | None = MISSING
    baseline: list[str] = MISSING
    stats_period: list[str] | None = MISSING
    split: DataSplitSchema = node(DataSplitSchema)
    ewma_months: list[Any] = MISSING  # numbers; not list[float], which would turn 3 into 3.0
    chunk_months: int = MISSING
    chunk_lat: int = MISSING
    plausibility: DataPlausibilitySchema = node(DataPlausibilitySchema)


@dataclass
class TargetSchema:
    """``conf/target/*.yaml``"""

    name: str = MISSING
    centres: list[str] = MISSING


@dataclass
class DataModuleSchema:
    """``datamodule`` of ``conf/train.yaml`` (keyword arguments of :class:`gtws_dl.data.CubeDataModule`)."""

    _target_: str = MISSING
    cube_dir: str = MISSING
    targets: list[str] = MISSING
    window: Any = checked(Check("int", "a number of months >= 1, e.g. datamodule.window=24", lo=1))
    warmup: Any = checked(Check("int", "a number of months >= 0, e.g. datamodule.warmup=12", lo=0))
    batch_size: Any = checked(Check("int", "an integer >= 1, e.g. datamodule.batch_size=4", lo=1))
    patch: Any = checked(
        Check(
            "cells",
            "[lat cells, lon cells] (positive integers or null) or null, e.g. datamodule.patch=[16,48]",
            null_cells=True,
            none_ok=True,
        )
    )
    val_months: Any = checked(Check("int", "a number of months >= 0, e.g. datamodule.val_months=24", lo=0))
    gap_months: Any = checked(Check("int", "a number of months >= 0 or null", lo=0, none_ok=True))
    val_block: Any = checked(Check("choice", choices=("last", "first")))
    samples_per_epoch: Any = checked(Check("int", "an integer >= 1 or null", lo=1, none_ok=True))
    num_workers: Any = checked(Check("int", "an integer >= 0, e.g. datamodule.num_workers=0", lo=0))
    in_memory: Any = checked(Check("choice", "auto, true or false", choices=("auto", True, False)))
    seed: Any = MISSING  # ${seed}
    min_scale_mm: float = MISSING
    p_dropout: float = MISSING
    target_base: Any = checked(Check("choice", choices=("none", "seasonal_trend", "forcing_memory")))
    val_tile: Any = checked(Check("int", "cells per side (>= 8) or null, e.g. datamodule.val_tile=128", lo=8,
                                  none_ok=True))
    fit_memory_gb: Any = checked(MEMORY_GB)


@dataclass
class ProductsSchema:
    """``products`` of ``conf/infer.yaml``"""

    decompose_period: list[Any] | None = MISSING  # 'YYYY-MM' strings or decimal years
    n_harmonics: int = MISSING
    zarr_copy: bool = MISSING
    memory_gb: Any = checked(MEMORY_GB)  # latitude bands of the products (gtws_dl.post.publish.band_rows)
    unforced: Any = field(default="none", metadata={"check": Check(  # gtws_dl.post.unforced
        "choice", choices=("off", "none", "grace_trend", "external"))})
    unforced_onset: float = 1990.0  # decimal year where grace_trend's rate reaches zero
    # unforced=external (gtws_dl/io/unforced_inputs.py): CSV of continents' mass series (Gt) and/or a NetCDF
    # storage field (mm; its variable named by unforced_field_variable when the file holds several)
    unforced_series: Any = field(default=None, metadata={"check": Check("path", "a CSV path or null",
                                                                        none_ok=True)})
    unforced_field: Any = field(default=None, metadata={"check": Check("path", "a NetCDF path or null",
                                                                       none_ok=True)})
    unforced_field_variable: Any = None
    unforced_z: Any = field(default=2.0, metadata={"check": Check(  # trends within z standard errors: noise
        "positive", "a number of standard errors > 0, e.g. products.unforced_z=2")})


# ------------------------------------------------------------------------------------- shared checks
SEED = Check("int", "an integer >= 0, e.g. seed=0", lo=0)
CKPT_PATH = Check("path", "a path to a .ckpt file (or 'last' when training)", none_ok=True)
LR = Check("positive", "a learning rate > 0, e.g. model.optimizer.lr=3e-3", none_ok=True)
MAX_EPOCHS = Check("int", "an integer (-1 = no limit), e.g. trainer.max_epochs=6", lo=-1)


# --------------------------------------------------------------------------------------- primaries
@dataclass
class StageSchema:
    """The groups every stage's config holds: where files go, the grid, the cube's inputs."""

    paths: PathsSchema = node(PathsSchema)
    grid: GridSchema = node(GridSchema)
    data: DataSchema = node(DataSchema)


@dataclass
class TargetedSchema(StageSchema):
    """A stage that works on one target (train, infer)."""

    target: TargetSchema = node(TargetSchema)


@dataclass
class TrainSchema(TargetedSchema):
    """``conf/train.yaml``: ``python train.py``"""

    model: Any = open_node(optimizer__lr=LR)
    trainer: Any = open_node(max_epochs=MAX_EPOCHS)
    seed: Any = checked(SEED)
    ckpt_path: Any = checked(CKPT_PATH)
    datamodule: DataModuleSchema = node(DataModuleSchema)
    out_dir: str = MISSING
    multirun_subdir: bool = MISSING
    channels_last: Any = _flag(False)
    compile: Any = _flag(False)


@dataclass
class InferSchema(TargetedSchema):
    """``conf/infer.yaml``: ``python infer.py`` (and ``python -m gtws_dl.evaluate.truth``)"""

    ensemble: list[str] | None = MISSING
    ckpt_path: Any = checked(CKPT_PATH)
    device: Any = checked(Check("choice", choices=("auto", "cpu", "cuda")))
    amp: bool = MISSING
    batch_windows: Any = checked(Check("int", "an integer >= 1, e.g. batch_windows=4", lo=1, none_ok=True))
    memory_gb: Any = checked(MEMORY_GB)
    tile: Any = checked(
        Check(
            "cells", "[lat cells, lon cells] (positive integers) or null, e.g. tile=[128,256]", none_ok=True
        )
    )
    prefetch: Any = _flag(True)
    channels_last: Any = _flag(False)
    compile: Any = _flag(False)
    carry_state: Any = _flag(False)
    products: ProductsSchema = node(ProductsSchema)


@dataclass
class UpdateSchema(InferSchema):
    """``conf/update.yaml``: ``python -m gtws_dl.update`` (the infer keys, plus how the cube is extended)"""

    refit: bool = MISSING
    ingest_memory_gb: Any = checked(MEMORY_GB)


@dataclass
class IngestSchema(StageSchema):
    """``conf/ingest.yaml``: ``python -m gtws_dl.ingest``"""

    force: bool = MISSING
    memory_gb: Any = checked(MEMORY_GB)


SCHEMAS: dict[str, type] = {
    "train_schema": TrainSchema,
    "infer_schema": InferSchema,
    "ingest_schema": IngestSchema,
    "update_schema": UpdateSchema,
}


# -------------------------------------------------------------------------------------------- checks
def _walk(cls, prefix: str = ""):
    for f in fields(cls):
        key = prefix + f.name
        if "check" in f.metadata:
            yield key, f.metadata["check"]
        for sub, check in f.metadata.get("nested", {}).items():
            yield f"{key}.{sub}", check
        sub_cls = f.default_factory if is_dataclass(f.default_factory) else None
        if sub_cls is not None:
            yield from _walk(sub_cls, key + ".")


def checks() -> dict[str, Check]:
    """``{dotted key: Check}`` of every schema, in field order (train, infer, ingest); a key shared by several
    schemas has one check."""
    out: dict[str, Check] = {}
    for cls in SCHEMAS.values():
        for key, check in _walk(cls):
            if out.setdefault(key, check) != check:
                raise AssertionError(f"schemas disagree on the check of {key}")
    return out


# keys checked together: (keys, test of their values, message); run once each key passed its own check
RULES: tuple[tuple[tuple[str, ...], Any, str], ...] = (
    (
        ("datamodule.window", "datamodule.warmup"),
        lambda window, warmup: warmup < window,
        "config key datamodule.warmup={1} must be smaller than datamodule.window={0}: a window needs months after "
        "its warm-up for the loss",
    ),
)


def register() -> None:
    """Store the primary schemas in Hydra's ConfigStore (idempotent); :mod:`gtws_dl.config` calls it on import,
    so every command and test that finds ``conf/`` through :func:`gtws_dl.config.conf_dir` has them."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for name, cls in SCHEMAS.items():
        cs.store(name=name, node=cls)
