"""LightningModule shared by every network: masked loss, optimisation, saved normalisation.

The network is built from its config (``net``) with the channel counts known only at run time, so a
checkpoint alone rebuilds the model (``ReconstructionModule.load_from_checkpoint``).
"""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from hydra.utils import instantiate

from gtws_dl.target_base import TargetBase, n_coefficients

LOGGER = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss; the last good checkpoint is kept."""


def masked_mse(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over ``mask`` (pred, y, mask broadcastable, [B, T, K, H, W])."""
    n = mask.sum()
    return ((pred - y) ** 2 * mask).sum() / n.clamp(min=1)


def masked_gaussian_nll(mean, log_var, y, mask):
    """Gaussian negative log-likelihood (up to a constant) over ``mask``."""
    n = mask.sum()
    nll = 0.5 * (log_var + (y - mean) ** 2 * torch.exp(-log_var))
    return (nll * mask).sum() / n.clamp(min=1)


def masked_laplace_nll(mean, log_b, y, mask):
    """Laplace negative log-likelihood ``log b + |y − μ| / b`` (up to a constant) over ``mask``."""
    n = mask.sum()
    nll = log_b + (y - mean).abs() * torch.exp(-log_b)
    return (nll * mask).sum() / n.clamp(min=1)


def masked_slow_mse(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, min_months: int = 6) -> torch.Tensor:
    """MSE of the time means over each window's loss months ([B, T, K, H, W] → mean over T of the masked months):
    the error of the window's mean anomaly, where single-month MSE rewards damping slow signals. A cell of a window
    counts with at least ``min_months`` loss months."""
    m = mask.to(pred.dtype)
    n = m.sum(1)
    ok = (n >= min_months).to(pred.dtype)
    nn = n.clamp(min=1)
    err = ((pred - y) * m).sum(1) / nn
    return (err**2 * ok).sum() / ok.sum().clamp(min=1)


LIKELIHOODS = ("mse", "gaussian", "laplace")
LOG_SCALE_RANGE = (-7.0, 5.0)  # clamp of the predicted log-variance / log-b (normalised units): stable NLL


def split_output(y, likelihood: str):
    """Network output [..., K or 2K, H, W] → (mean, std) in normalised units; std is None for ``mse``.

    Works on torch tensors and numpy arrays. Gaussian head: log-variance, std = exp(log_var / 2);
    Laplace head: log b, std = √2 · b.
    """
    if likelihood == "mse":
        return y, None
    K = y.shape[-3] // 2
    mean, s = y[..., :K, :, :], y[..., K:, :, :]
    if isinstance(s, torch.Tensor):
        s = s.clamp(*LOG_SCALE_RANGE)
        return mean, (torch.exp(0.5 * s) if likelihood == "gaussian" else 2**0.5 * torch.exp(s))
    import numpy as np

    s = np.clip(s, *LOG_SCALE_RANGE)
    return mean, (np.exp(0.5 * s) if likelihood == "gaussian" else np.sqrt(2.0) * np.exp(s))


class ReconstructionModule(L.LightningModule):
    """Maps predictor windows to TWSA for one or several GRACE centres.

    Parameters
    ----------
    net : config of the network (``_target_`` + kwargs); called with ``in_channels``, ``out_channels``
    optimizer : config of a torch optimizer (``_target_`` + kwargs, params added here)
    scheduler : optional config of an LR scheduler (``_target_`` + kwargs)
    in_channels : predictor channels C
    targets : centres predicted, e.g. ["csr"] or ["jpl", "csr", "gsfc"]
    normalisation : what :meth:`gtws_dl.data.CubeDataModule.normalisation` returns
    likelihood : ``mse`` (point estimate), ``gaussian`` or ``laplace`` (heteroscedastic head: the net outputs
        2K channels, mean and log-scale, trained by negative log-likelihood; reconstruction writes ``twsa_std``)
    slow_weight : weight of :func:`masked_slow_mse` (error of each window's mean over its loss months) added to the
        loss; 0 = off
    """

    def __init__(self, net: dict, optimizer: dict, in_channels: int, targets: list[str],
                 normalisation: dict, scheduler: dict | None = None, lon_circular: bool = False,
                 likelihood: str = "mse", slow_weight: float = 0.0) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"model.likelihood={likelihood!r}; expected one of {LIKELIHOODS}")
        self.save_hyperparameters()
        self.targets = list(targets)
        self.likelihood = likelihood
        n_out = len(self.targets) * (1 if likelihood == "mse" else 2)
        self.net = instantiate(net, in_channels=in_channels, out_channels=n_out, lon_circular=lon_circular)
        # per-cell target scale (K, H, W), mm: outputs × target_scale = TWSA in mm; filled by train(), saved
        # in the state dict so inference needs nothing but the checkpoint
        shape = normalisation["grid"]["shape"]
        self.register_buffer("target_scale", torch.ones(len(self.targets), *shape))
        # per-cell target base coefficients (K, P, H, W), mm (gtws_dl.target_base); P = 0 without one
        meta = normalisation.get("target_base") or {"kind": "none"}
        n_coef = n_coefficients(meta["kind"], meta.get("memory"))
        self.register_buffer("target_base", torch.zeros(len(self.targets), n_coef, *shape))
        self._val_sums = torch.zeros(2, dtype=torch.float64)  # validation: squared error mm², cell-months

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # checkpoints written before the target base existed carry no buffer: a zero-coefficient base
        sd = checkpoint.get("state_dict", {})
        if "target_base" not in sd:
            sd["target_base"] = torch.zeros_like(self.target_base)

    def base(self) -> TargetBase:
        """The per-cell base the outputs are added to (kind ``none``: zero)."""
        meta = self.hparams.normalisation.get("target_base")
        return TargetBase.from_meta(meta, self.target_base.detach().cpu().numpy())

    def forward(self, x: torch.Tensor, state=None):
        return self.net(x, state)

    def _step(self, batch, stage: str) -> torch.Tensor:
        # wrap around in longitude only when the batch spans the whole (global) longitude circle
        self.net.lon_circular = bool(self.hparams.lon_circular) and batch["x"].shape[-1] == self.target_scale.shape[-1]
        out, _ = self(batch["x"])
        self.net.lon_circular = bool(self.hparams.lon_circular)
        out = out.float()
        K = len(self.targets)
        pred = out[:, :, :K]
        if self.likelihood == "mse":
            loss = masked_mse(pred, batch["y"], batch["mask"])
        else:
            log_s = out[:, :, K:].clamp(*LOG_SCALE_RANGE)
            nll = masked_gaussian_nll if self.likelihood == "gaussian" else masked_laplace_nll
            loss = nll(pred, log_s, batch["y"], batch["mask"])
        if self.hparams.get("slow_weight", 0.0):
            loss = loss + float(self.hparams.slow_weight) * masked_slow_mse(pred, batch["y"], batch["mask"])
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{stage} loss is {loss.item()} at step {self.global_step}; inputs or learning rate "
                "(model.optimizer.lr) are at fault. The last good checkpoint is kept in the checkpoint folder."
            )
        # validation: each batch weighs by its loss cell-months, so the epoch's loss is the masked mean over
        # every validation cell-month, the same whether fields come whole or in tiles (gtws_dl.training)
        bs = batch["x"].shape[0] if stage == "train" else max(1, int(batch["mask"].sum()))
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=bs, on_epoch=True, on_step=stage == "train",
                 sync_dist=stage == "val")  # DDP: the best checkpoint judges all validation windows
        if stage == "val":  # RMSE in mm over every validation cell-month and centre, for humans (epoch end)
            scale = batch["scale"][:, None] if "scale" in batch else self.target_scale[None, None]  # tiles: theirs
            se = ((pred - batch["y"]) * scale) ** 2 * batch["mask"]
            self._val_sums += torch.stack([se.sum().double(), batch["mask"].sum().double()]).cpu()
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(2, dtype=torch.float64)  # squared error in mm², cell-months

    def on_validation_epoch_end(self) -> None:
        se, n = self.trainer.strategy.reduce(self._val_sums.to(self.device), reduce_op="sum").cpu()
        self.log("val_rmse_mm", torch.sqrt(se / n.clamp(min=1)).float(), sync_dist=False)

    def configure_optimizers(self):
        opt = instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.scheduler:
            return opt
        cfg = dict(self.hparams.scheduler)
        if cfg.get("_target_", "").endswith("OneCycleLR") and cfg.get("total_steps") in (None, "auto"):
            cfg["total_steps"] = max(1, int(self.trainer.estimated_stepping_batches))
        if cfg.get("_target_", "").endswith("CosineAnnealingLR") and cfg.get("T_max") in (None, "auto"):
            cfg["T_max"] = max(1, int(self.trainer.estimated_stepping_batches))
        sched = instantiate(cfg, optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def receptive_halo_per_month(self) -> int:
        return int(getattr(self.net, "receptive_per_step", math.inf))

    def spatial_halo(self, T: int) -> int:
        """Cells of neighbours an output depends on for a window of ``T`` months (see :func:`spatial_halo`)."""
        return spatial_halo(self.net, T)


def spatial_halo(net, T: int) -> int:
    """Tiling halo of ``net`` for ``T`` months: ``net.spatial_halo(T)`` if it has one (U-Net: fixed receptive
    field), else ``T × net.receptive_per_step`` (recurrent nets: the halo grows every month)."""
    if hasattr(net, "spatial_halo"):
        return int(net.spatial_halo(T))
    return T * int(net.receptive_per_step)
