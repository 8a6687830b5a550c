"""``gtws-dl <command>`` (issue 17): subcommands, user errors as one line + exit 2, the grid from the cube, one line
per Lightning message."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from gtws_dl import cli
from gtws_dl.config import adopt_cube_grid, command, conf_dir, single_lightning_log
from gtws_dl.cube.store import CubeError
from gtws_dl.training import train

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ENV.pop("HYDRA_FULL_ERROR", None)


def _gtws_dl(*args: str, env=None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "gtws-dl"  # the console script of `pip install -e .`
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "gtws_dl.cli"]
    return subprocess.run([*cmd, *args], cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand():
    res = _gtws_dl("--help")
    assert res.returncode == 0, res.stderr
    for name in ("twin", "ingest", "train", "infer", "update", "report", "leaderboard", "skill"):
        assert f"  {name} " in res.stdout
    assert cli.main(["nope"]) == 2


def test_a_commands_help_lists_only_its_own_config_groups():
    from gtws_dl.config import command_groups

    ingest = command_groups("ingest")
    assert "grid: box, demo, quarter (default: demo)" in ingest and "data: files, twin (default: twin)" in ingest
    assert "model:" not in ingest and "trainer:" not in ingest and "target:" not in ingest
    train = command_groups("train")
    assert "model: convlstm, unet (default: convlstm)" in train and "experiment: demo, unet (default: none)" in train
    assert "target:" in command_groups("update")  # its groups come from the infer config it includes
    res = _gtws_dl("ingest", "--help")
    assert res.returncode == 0, res.stderr
    assert "== gtws-dl ingest ==" in res.stdout and "data: files, twin (default: twin)" in res.stdout
    assert "model:" not in res.stdout.split("== Config (")[0]


@pytest.mark.slow
def test_a_non_editable_install_ships_the_configs(tmp_path):
    """``pip install .`` (a wheel, not the source tree): every config of ``conf/`` is in it, and a command run
    outside the checkout composes them (before, the wheel had no ``conf/`` and every command failed)."""
    src, wheels = tmp_path / "src", tmp_path / "wheels"  # a copy: setuptools writes build/ into the source tree
    shutil.copytree(REPO / "gtws_dl", src / "gtws_dl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, timeout=300, cwd=tmp_path)
    (wheel,) = wheels.glob("gtws_dl-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path)
    shipped = {p.relative_to(site / "gtws_dl" / "conf") for p in (site / "gtws_dl" / "conf").rglob("*.yaml")}
    source = {p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped == source and len(source) > 20
    env = {**ENV, "PYTHONPATH": str(site)}
    env.pop("GTWS_DL_CONF", None)
    run = tmp_path / "elsewhere"
    run.mkdir()
    res = subprocess.run([sys.executable, "-c", "import gtws_dl, sys; from gtws_dl.cli import main; "
                          "print(gtws_dl.__file__); sys.exit(main(['ingest', '--cfg', 'job']))"],
                         cwd=run, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines()[0].startswith(str(site)), res.stdout[:300]  # the installed copy, not the repo
    assert "memory_gb:" in res.stdout and "era5_dir:" in res.stdout


def test_a_user_error_is_one_line_and_exit_2_and_the_traceback_needs_hydra_full_error(tmp_path):
    args = ("twin", "grid.res=0.7", f"paths.output_dir={tmp_path}")
    res = _gtws_dl(*args)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("GridError: grid.res=0.7 does not divide"), res.stderr
    assert "Traceback" not in res.stderr
    full = _gtws_dl(*args, env={**ENV, "HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr and "GridError" in full.stderr
    assert not (tmp_path / "twin").exists()


def test_hydra_cfg_job_works_through_the_command(tmp_path):
    res = _gtws_dl("twin", "--cfg", "job", f"paths.output_dir={tmp_path}", "grid.res=5")
    assert res.returncode == 0, res.stderr
    assert "era5_layout:" in res.stdout and "res: 5" in res.stdout


@pytest.fixture
def restore_sigterm():
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


def test_command_decorator_user_errors_bugs_and_full_error(capsys, monkeypatch, restore_sigterm):
    @command
    def fails(cfg):
        raise CubeError(f"{cfg}: no cube\nrebuild it")

    with pytest.raises(SystemExit) as exc:
        fails("cube")
    assert exc.value.code == 2
    assert capsys.readouterr().err == "CubeError: cube: no cube rebuild it\n"
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(CubeError):
        fails("cube")
    monkeypatch.delenv("HYDRA_FULL_ERROR")

    @command
    def bug(cfg):
        return 1 / 0

    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        bug(None)


def _hydra_train_cfg(tmp_path, cube_dir, *extra):
    """The train config as under ``@hydra.main`` (HydraConfig set, its overrides = the command line)."""
    overrides = [f"paths.output_dir={tmp_path}", f"paths.cube_dir={cube_dir}", "target=csr",
                 "datamodule.window=12", "datamodule.warmup=6", "datamodule.patch=[8,null]",
                 "datamodule.batch_size=2", "datamodule.samples_per_epoch=4", "datamodule.val_months=12",
                 "model.net.hidden=[4]", "model.net.encoder=4", "trainer.max_epochs=1",
                 "trainer.enable_progress_bar=false", *extra]
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.fixture
def hydra_job():
    yield
    HydraConfig.instance().cfg = None


def test_train_without_grid_reads_the_cubes_grid(synthetic_cube, tmp_path, hydra_job, restore_sigterm):
    cfg = _hydra_train_cfg(tmp_path, synthetic_cube["dir"])
    assert cfg.grid.res == 2.0  # conf/grid/demo.yaml, the cube is 10 deg
    summary = command(reads_cube=True)(train)(cfg)
    assert cfg.grid.res == 10.0 and cfg.grid.bbox is None
    assert summary["config"]["grid"] == {"res": 10.0, "bbox": None}
    assert Path(summary["last_checkpoint"]).exists()


def test_an_explicit_grid_wins_and_a_cube_grid_mismatch_is_still_an_error(synthetic_cube, tmp_path, hydra_job):
    cfg = _hydra_train_cfg(tmp_path, synthetic_cube["dir"], "grid.res=5")
    assert not adopt_cube_grid(cfg) and cfg.grid.res == 5.0
    with pytest.raises(ValueError, match=r"the cube in .* is on a 10.0 deg grid.*asks for 5.0 deg"):
        train(cfg)
    assert adopt_cube_grid(cfg, overrides=[]) and cfg.grid.res == 10.0  # no grid on the command line
    assert not adopt_cube_grid(cfg, overrides=["grid=quarter"])


def test_lightning_messages_are_printed_once(monkeypatch):
    import lightning  # noqa: F401  (adds its own console handler)

    root = logging.getLogger()
    handler = logging.StreamHandler()
    monkeypatch.setattr(root, "handlers", [handler])
    single_lightning_log()
    for name in ("lightning", "lightning.pytorch"):
        lg = logging.getLogger(name)
        assert lg.propagate and not [h for h in lg.handlers if type(h) is logging.StreamHandler]
