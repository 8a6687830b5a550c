"""Data-parallel training through the real ``train.py trainer=ddp``: 2 CPU processes on gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, make_synthetic_cube

OVERRIDES = [
    "grid.res=10",
    "target=csr",
    "model.net.hidden=[8]",
    "model.net.encoder=8",
    "datamodule.window=12",
    "datamodule.warmup=6",
    "datamodule.batch_size=4",
    "datamodule.samples_per_epoch=8",
    "trainer.max_epochs=1",
]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One 2-rank run shared by the tests of this file (about 20 s on 2 cores)."""
    tmp = tmp_path_factory.mktemp("ddp")
    cube, out = tmp / "cube", tmp / "run"
    make_synthetic_cube(cube)
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",  # on CPU Lightning's DDP uses gloo
        f"paths.output_dir={out}",
        f"paths.cube_dir={cube}",
        *OVERRIDES,
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
    ]
    # no GPU even where one exists: this is the gloo/CPU path; one torch thread per rank on small machines
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("MASTER_PORT", None)  # Lightning picks a free port
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=180)
    return {
        "proc": proc,
        "log": proc.stdout + proc.stderr,
        "cube": cube,
        "out": out,
        "ckpt_dir": out / "train" / "csr" / "checkpoints",
    }


@pytest.mark.slow
def test_train_ddp_two_cpu_processes_writes_checkpoint(ddp_run):
    proc, log = ddp_run["proc"], ddp_run["log"]
    assert proc.returncode == 0, f"train.py trainer=ddp failed ({proc.returncode}):\n{log[-5000:]}"
    assert "distributed_backend=gloo" in log and "MEMBER: 2/2" in log, (
        "two gloo ranks expected:\n" + log[-3000:]
    )

    ckpt_dir = ddp_run["ckpt_dir"]
    assert (ckpt_dir / "last.ckpt").is_file() and (ckpt_dir / "best.ckpt").is_file()
    summary = json.loads((ckpt_dir.parent / "train_summary.json").read_text())
    # 8 samples per epoch, sharded over 2 ranks by the DistributedSampler, batches of 4 -> 1 optimizer step
    assert summary["global_step"] == 1, summary["global_step"]

    from gtws_dl.models.module import ReconstructionModule

    module = ReconstructionModule.load_from_checkpoint(ckpt_dir / "last.ckpt", map_location="cpu")
    assert module.hparams.normalisation["window"] == 12 and module.targets == ["csr"]
    y, _ = module(torch.zeros(1, 12, len(module.hparams.normalisation["channels"]), 18, 36))
    assert y.shape == (1, 12, 1, 18, 36) and torch.isfinite(y).all()


@pytest.mark.slow
def test_ddp_best_score_is_the_loss_over_all_validation_windows(ddp_run):
    """The monitored val_loss must be the mean over *every* validation window, not over one rank's share."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from gtws_dl.config import conf_dir
    from gtws_dl.models.module import ReconstructionModule, masked_mse

    assert ddp_run["proc"].returncode == 0, ddp_run["log"][-3000:]
    ckpt = torch.load(ddp_run["ckpt_dir"] / "best.ckpt", map_location="cpu", weights_only=False)
    best = next(float(v["best_model_score"]) for k, v in ckpt["callbacks"].items() if "ModelCheckpoint" in k)
    module = ReconstructionModule.load_from_checkpoint(
        ddp_run["ckpt_dir"] / "best.ckpt", map_location="cpu"
    ).eval()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.cube_dir={ddp_run['cube']}", *OVERRIDES])
    dm = instantiate(cfg.datamodule)
    dm.setup("fit")
    with torch.no_grad():
        losses = [float(masked_mse(module(b["x"])[0], b["y"], b["mask"])) for b in dm.val_dataloader()]
    assert len(losses) >= 2
    assert best == pytest.approx(sum(losses) / len(losses), rel=1e-4), (best, losses)
