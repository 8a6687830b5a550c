"""The Hydra configs: structured-config schemas (compose-time key/type checks), the schema-driven validation,
trainer and data configs that inherit from one default, and one Hydra log-folder pattern."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict, read_write

from gtws_dl import schema
from gtws_dl.config import ConfigError, conf_dir, validate_config
from gtws_dl.training import trainer_options

CONF = Path(conf_dir())
PRIMARIES = ("train", "infer", "ingest", "twin", "leaderboard", "report")


def _compose(name: str, *overrides: str, config_dir: Path = CONF, hydra: bool = False):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=hydra)


# ------------------------------------------------------------------------------------------ schemas
def test_every_key_validate_config_checks_is_declared_by_a_schema():
    keys = set(schema.checks())
    assert {
        "grid.res", "grid.bbox", "seed", "ckpt_path", "model.optimizer.lr", "trainer.max_epochs", "device",
        "batch_windows", "tile", "prefetch", "channels_last", "compile", "datamodule.window", "datamodule.warmup",
        "datamodule.batch_size", "datamodule.patch", "datamodule.val_months", "datamodule.gap_months",
        "datamodule.samples_per_epoch", "datamodule.num_workers", "datamodule.in_memory", "datamodule.target_base",
    } <= keys  # fmt: skip
    for name in ("train", "infer", "ingest"):
        assert OmegaConf.get_type(_compose(name)) is schema.SCHEMAS[f"{name}_schema"]


def test_a_misspelt_key_fails_at_compose_time_even_in_a_yaml_overlay(tmp_path):
    with pytest.raises(ConfigCompositionException, match="windw"):
        _compose("train", "datamodule.windw=3")
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "experiment" / "typo.yaml").write_text("# @package _global_\ndatamodule:\n  windw: 12\n")
    with pytest.raises(ConfigCompositionException, match="Key 'windw' not in 'DataModuleSchema'"):
        _compose("train", "experiment=typo", config_dir=conf)


@pytest.mark.parametrize("name, override", [
    ("train", "data.chunk_months=x"), ("train", "multirun_subdir=maybe"), ("train", "target.centres=csr"),
    ("infer", "amp=maybe"), ("infer", "products.n_harmonics=x"), ("ingest", "force=maybe"),
])  # fmt: skip
def test_a_plainly_typed_key_of_the_wrong_type_fails_at_compose_time(name, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException, match=f"Error merging override {key}") as info:
        _compose(name, override)
    assert key in str(info.value.__cause__)  # OmegaConf's message names the full key


@pytest.mark.parametrize("override", [
    "+trainer.accumulate_grad_batches=2", "+datamodule.extra=1", "+model.net.dropout=0.1", "+newkey=1",
    "~model.optimizer.weight_decay", "model=unet", "model.net.hidden=[8]", "trainer=ddp", "data=files",
    "datamodule.patch=null", "datamodule.gap_months=null", "model.optimizer.lr=null",
])  # fmt: skip
def test_existing_overrides_and_plus_keys_still_compose(override):
    cfg = _compose("train", override)
    if override.startswith("+"):
        key, value = override[1:].split("=")
        assert OmegaConf.select(cfg, key) == yaml.safe_load(value)


@pytest.mark.parametrize("override, match", [
    ("seed=-1", r"config key seed=-1: expected an integer >= 0, e.g. seed=0"),
    ("seed=null", r"config key seed=None: expected an integer >= 0"),
    ("trainer.max_epochs=-2", r"config key trainer\.max_epochs=-2: expected an integer \(-1 = no limit\)"),
    ("ckpt_path=3", r"config key ckpt_path=3: expected a path to a \.ckpt file"),
    ("datamodule.in_memory=maybe", r"config key datamodule\.in_memory='maybe': expected auto, true or false"),
    ("datamodule.patch=[0,3]", r"config key datamodule\.patch=\[0, 3\]: expected \[lat cells, lon cells\]"),
    ("datamodule.gap_months=-1", r"config key datamodule\.gap_months=-1: expected a number of months >= 0 or null"),
    ("datamodule.num_workers=x", r"config key datamodule\.num_workers='x': expected an integer >= 0"),
    ("grid.res=inf", r"config key grid\.res=inf: expected a cell size in degrees > 0"),
    ("grid.bbox=[a,b,c,d]", r"config key grid\.bbox=\['a', 'b', 'c', 'd'\]: expected four numbers"),
    ("grid.res=???", r"config key grid\.res is required \(\?\?\?\) but was not given; pass grid\.res=\.\.\."),
    ("compile=maybe", r"config key compile='maybe': expected true or false, e.g\. compile=false"),
])  # fmt: skip
def test_schema_driven_checks_name_the_key_the_value_and_an_example(override, match):
    cfg = _compose("train", override)
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


def test_the_defaults_pass_and_numbers_given_as_strings_are_accepted():
    for name in ("train", "infer", "ingest"):
        validate_config(_compose(name))
    validate_config(_compose("train", "datamodule.window='24'", "grid.res='2'", "experiment=demo"))
    validate_config(_compose("infer", "batch_windows=null", "tile=[128,256]", "device=cpu"))


# ----------------------------------------------------------------------------------- trainer, data
TRAINER_DEFAULT = {
    "_target_": "lightning.pytorch.Trainer", "accelerator": "cpu", "devices": 1, "precision": "32-true",
    "max_epochs": 6, "max_steps": -1, "max_time": None, "log_every_n_steps": 10,
    "reload_dataloaders_every_n_epochs": 1, "enable_model_summary": False, "enable_progress_bar": True,
    "gradient_clip_val": 1.0, "deterministic": False,
}  # fmt: skip
TRAINER_DELTAS = {
    "cpu": {},
    "gpu": {"accelerator": "gpu", "precision": "bf16-mixed", "max_epochs": 30, "log_every_n_steps": 20},
    "ddp": {"accelerator": "auto", "devices": 2, "strategy": "ddp", "max_epochs": 30, "log_every_n_steps": 20},
}


@pytest.mark.parametrize("trainer", sorted(TRAINER_DELTAS))
def test_trainer_configs_are_the_default_plus_their_changes(trainer):
    own = yaml.safe_load((CONF / "trainer" / f"{trainer}.yaml").read_text())
    assert own.pop("defaults") == ["default", "_self_"] and own == TRAINER_DELTAS[trainer]
    cfg = _compose("train", f"trainer={trainer}")
    tcfg, speed = trainer_options(cfg)
    assert tcfg == {**TRAINER_DEFAULT, **TRAINER_DELTAS[trainer]}  # nothing popped: only Trainer arguments
    assert speed == {"channels_last": False, "compile": False}


def test_speed_options_are_top_level_keys_not_trainer_arguments():
    tcfg, speed = trainer_options(_compose("train", "channels_last=true", "compile=true"))
    assert speed == {"channels_last": True, "compile": True} and not {"channels_last", "compile"} & set(tcfg)
    with pytest.raises(ConfigCompositionException, match="trainer.compile"):
        _compose("train", "trainer.compile=true")  # moved: compile=true


def test_data_configs_share_one_base():
    base = yaml.safe_load((CONF / "data" / "base.yaml").read_text())
    twin, files = (_compose("ingest", f"data={d}").data for d in ("twin", "files"))
    assert list(twin) == list(files) == list(base)  # one key order: the base's
    shared = ("start", "end", "baseline", "stats_period", "ewma_months", "chunk_months", "chunk_lat",
              "jpl_gain_factor")  # fmt: skip
    for key in shared:
        assert OmegaConf.to_container(twin)[key] == OmegaConf.to_container(files)[key] == base[key]
        for d in ("twin", "files"):
            assert key not in yaml.safe_load((CONF / "data" / f"{d}.yaml").read_text())
    assert OmegaConf.is_missing(files, "era5_dir") and OmegaConf.is_missing(files.grace, "jpl")
    assert twin.kind == "twin" and files.kind == "files"


# ------------------------------------------------------------------------------------ hydra folders
def _run_dir(name: str, *overrides: str) -> tuple[str, str]:
    cfg = _compose(name, *overrides, hydra=True)
    with read_write(cfg), open_dict(cfg):
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return str(Path(cfg.hydra.run.dir).parent), str(Path(cfg.hydra.sweep.dir).parent / cfg.hydra.sweep.subdir)


def test_one_hydra_folder_pattern_for_every_command():
    for name in PRIMARIES:
        text = yaml.safe_load((CONF / f"{name}.yaml").read_text())
        assert "hydra" not in text and {"hydra": "default"} in text["defaults"], name
    assert _run_dir("train", "target=csr") == ("outputs/demo/hydra/train/csr", "outputs/demo/hydra/multirun-train/0-csr")
    assert _run_dir("infer", "target=all")[0] == "outputs/demo/hydra/infer/all"
    assert _run_dir("ingest", "paths.output_dir=/x") == ("/x/hydra/ingest", "/x/hydra/multirun-ingest/0-ingest")
    for name in ("twin", "report", "leaderboard"):
        assert _run_dir(name)[0] == f"outputs/demo/hydra/{name}"
    assert _compose("report", hydra=True).hydra.job.chdir is False


def test_every_config_group_is_used_by_a_primary_config():
    used = set()
    for name in PRIMARIES:
        for entry in yaml.safe_load((CONF / f"{name}.yaml").read_text())["defaults"]:
            if isinstance(entry, dict):
                used |= set(entry)
    used |= {"experiment", "model", "target"}  # selected on the command line / by experiments
    groups = {p.name for p in CONF.iterdir() if p.is_dir()}
    assert groups <= used, f"config groups nothing composes: {groups - used}"
