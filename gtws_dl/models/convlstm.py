"""Convolutional LSTM (Shi et al. 2015) over monthly predictor fields.

Input [B, T, C, H, W] → output [B, T, K, H, W]; the recurrent state can be passed in and returned, so
inference can stream through the record window by window. Convolutions run per month on (B, C, H, W) tensors in
``memory_format`` (set by :func:`gtws_dl.models.accel.set_memory_format`; channels-last suits tensor cores).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad_lonlat(x: torch.Tensor, p: int, lon_circular: bool) -> torch.Tensor:
    """Pad the last two dims (lat, lon) by ``p``: zeros in latitude, wrap-around in longitude if global."""
    if p == 0:
        return x
    x = F.pad(x, (p, p, 0, 0), mode="circular") if lon_circular else F.pad(x, (p, p, 0, 0))
    return F.pad(x, (0, 0, p, p))


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer: gates from a k×k convolution of [input, hidden]."""

    memory_format = torch.contiguous_format  # of the gate convolution's input

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden, self.pad = hidden, kernel_size // 2
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=0)
        with torch.no_grad():  # forget-gate bias 1: remember by default (Jozefowicz et al. 2015)
            self.conv.bias[hidden : 2 * hidden].fill_(1.0)

    def forward(self, x, state, lon_circular: bool):
        h, c = state
        xh = pad_lonlat(torch.cat([x, h], dim=1), self.pad, lon_circular)
        z = self.conv(xh.contiguous(memory_format=self.memory_format))
        i, f, g, o = torch.split(z, self.hidden, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM with a per-pixel input encoder and a 1×1 output head.

    Parameters
    ----------
    in_channels : predictor channels C
    out_channels : targets K (one per GRACE centre predicted)
    hidden : hidden channels of each ConvLSTM layer
    kernel_size : spatial kernel of the gates (odd)
    encoder : channels of the 1×1 input encoder (0 = none)
    lon_circular : wrap convolutions around in longitude (global grids)
    """

    memory_format = torch.contiguous_format  # of the (B·T, C, H, W) encoder and head inputs

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: list[int] = (32, 32),
        kernel_size: int = 3,
        encoder: int = 32,
        lon_circular: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"model.net.kernel_size must be odd, got {kernel_size}")
        self.lon_circular = lon_circular
        self.encoder = (
            nn.Sequential(nn.Conv2d(in_channels, encoder, 1), nn.GELU()) if encoder else nn.Identity()
        )
        c = encoder or in_channels
        self.cells = nn.ModuleList()
        for h in hidden:
            self.cells.append(ConvLSTMCell(c, h, kernel_size))
            c = h
        self.head = nn.Sequential(
            nn.Conv2d(c + (encoder or in_channels), 64, 1), nn.GELU(), nn.Conv2d(64, out_channels, 1)
        )
        self.receptive_per_step = len(hidden) * (kernel_size // 2)  # halo growth per month, cells

    def init_state(self, x: torch.Tensor):
        B, _, _, H, W = x.shape
        return [(x.new_zeros(B, cell.hidden, H, W), x.new_zeros(B, cell.hidden, H, W)) for cell in self.cells]

    def forward(self, x: torch.Tensor, state=None):
        """x [B, T, C, H, W] → (y [B, T, K, H, W], state)."""
        B, T, C, H, W = x.shape
        state = self.init_state(x) if state is None else list(state)
        fmt = self.memory_format
        enc = self.encoder(x.reshape(B * T, C, H, W).contiguous(memory_format=fmt)).reshape(B, T, -1, H, W)
        hs = []
        for t in range(T):
            inp = enc[:, t]
            for j, cell in enumerate(self.cells):
                inp, state[j] = cell(inp, state[j], self.lon_circular)
            hs.append(inp)
        feats = torch.cat([torch.stack(hs, dim=1), enc], dim=2).reshape(B * T, -1, H, W)
        return self.head(feats.contiguous(memory_format=fmt)).reshape(B, T, -1, H, W), state
