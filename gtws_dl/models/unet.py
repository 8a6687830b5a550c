"""U-Net (Ronneberger et al. 2015) over a stack of the last ``lags`` monthly predictor fields.

Input [B, T, C, H, W] → output [B, T, K, H, W], the same interface as :class:`~gtws_dl.models.convlstm.ConvLSTM`.
Each month is first encoded per pixel (1×1 convolution); the output at position t sees the encodings of months
t − lags + 1 .. t stacked along channels. Positions before the window's start repeat its first month, or take
the months carried in ``state`` (the last ``lags − 1`` encodings of the previous call), so a record streamed
window by window equals the record seen at once. Memory beyond ``lags`` months comes from the cube's EWMA
channels (antecedent water balance), not from a recurrent state.

Grids whose size is not a multiple of 2**depth are padded at their far edge (zeros in latitude, wrap-around in
longitude on a global grid) and cropped back. Pooling blocks are anchored at the grid's first row/column, so a
tile whose origin is a multiple of :attr:`UNet.align` pools exactly as the whole field
(see :func:`gtws_dl.reconstruct.predict_tiled`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gtws_dl.models.convlstm import pad_lonlat


class _ConvBlock(nn.Module):
    """Two 3×3 convolutions with GroupNorm-free GELU (batch statistics would couple tiles)."""

    memory_format = torch.contiguous_format  # of the convolutions' inputs

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(c_in, c_out, 3)
        self.c2 = nn.Conv2d(c_out, c_out, 3)

    def forward(self, x: torch.Tensor, circular: bool) -> torch.Tensor:
        fmt = self.memory_format
        x = F.gelu(self.c1(pad_lonlat(x, 1, circular).contiguous(memory_format=fmt)))
        return F.gelu(self.c2(pad_lonlat(x, 1, circular).contiguous(memory_format=fmt)))


class UNet(nn.Module):
    """Lagged-stack U-Net.

    Parameters
    ----------
    in_channels : predictor channels C
    out_channels : output channels (K targets, or 2K with a heteroscedastic head)
    lags : months stacked per output position (L ≥ 1)
    encoder : channels of the per-month 1×1 encoder applied before stacking (0 = stack raw predictors)
    base : channels at full resolution; doubled at every level
    depth : poolings (levels below full resolution)
    lon_circular : wrap convolutions around in longitude (global grids)
    """

    memory_format = torch.contiguous_format  # of the (N, C, H, W) encoder/head inputs (see models.accel)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        lags: int = 6,
        encoder: int = 16,
        base: int = 16,
        depth: int = 2,
        lon_circular: bool = False,
    ) -> None:
        super().__init__()
        if lags < 1 or depth < 0:
            raise ValueError(f"model.net.lags must be >= 1 and depth >= 0, got lags={lags}, depth={depth}")
        self.lags, self.depth, self.lon_circular = int(lags), int(depth), lon_circular
        self.encoder = (
            nn.Sequential(nn.Conv2d(in_channels, encoder, 1), nn.GELU()) if encoder else nn.Identity()
        )
        e = encoder or in_channels
        c = e * self.lags
        self.down = nn.ModuleList()
        chans = []
        for d in range(self.depth):
            self.down.append(_ConvBlock(c, base * 2**d))
            c = base * 2**d
            chans.append(c)
        self.bottom = _ConvBlock(c, base * 2**self.depth)
        c = base * 2**self.depth
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for d in reversed(range(self.depth)):
            self.up.append(nn.Conv2d(c, chans[d], 1))  # after nearest upsampling: no overlap, no seams
            self.dec.append(_ConvBlock(2 * chans[d], chans[d]))
            c = chans[d]
        # the current month's encoding skips to the head: the per-pixel response stays direct
        self.head = nn.Sequential(nn.Conv2d(c + e, 64, 1), nn.GELU(), nn.Conv2d(64, out_channels, 1))
        self.align = 2**self.depth
        self.eval_chunk = 16  # month images per U-Net pass at inference
        # receptive radius (cells): 2 convs per block at each level + pooling/upsampling offsets, rounded up to
        # a multiple of the pooling block so tiles keep the pooling grid
        r = sum(2 * 2**d + 2**d + 2**d + 2 * 2**d for d in range(self.depth)) + 2 * 2**self.depth
        self.halo = -(-r // self.align) * self.align

    @property
    def receptive_per_step(self) -> int:
        """Halo growth per month: none, the spatial receptive field does not grow with the window."""
        return 0

    def spatial_halo(self, T: int) -> int:
        """Cells of real neighbours a tile needs around its core for an exact result (any window length)."""
        return self.halo

    def init_state(self, enc: torch.Tensor) -> torch.Tensor:
        """The first month repeated ``lags − 1`` times: [B, L−1, E, H, W]."""
        return enc[:, :1].expand(-1, self.lags - 1, -1, -1, -1)

    def _unet(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, L·E, H, W] → features [N, base, H, W] (H, W multiples of :attr:`align`)."""
        circ = self.lon_circular
        skips = []
        for blk in self.down:
            z = blk(z, circ)
            skips.append(z)
            z = F.max_pool2d(z, 2)
        z = self.bottom(z, circ)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            z = up(F.interpolate(z, scale_factor=2, mode="nearest"))
            z = dec(torch.cat([z, skip], dim=1), circ)
        return z

    def forward(self, x: torch.Tensor, state=None):
        """x [B, T, C, H, W] → (y [B, T, K, H, W], state = last ``lags − 1`` month encodings)."""
        B, T, C, H, W = x.shape
        fmt = self.memory_format
        enc = self.encoder(x.reshape(B * T, C, H, W).contiguous(memory_format=fmt)).reshape(B, T, -1, H, W)
        E = enc.shape[2]
        if self.lags > 1:
            prev = self.init_state(enc) if state is None else state
            full = torch.cat([prev, enc], dim=1)  # [B, L-1+T, E, H, W]
        else:
            full = enc
        # month t sees months t-L+1..t: a (L·E)-channel stack per position
        stack = torch.cat([full[:, j : j + T] for j in range(self.lags)], dim=2).reshape(
            B * T, self.lags * E, H, W
        )
        ph, pw = (-H) % self.align, (-W) % self.align
        if ph or pw:
            if pw:
                stack = (
                    F.pad(stack, (0, pw, 0, 0), mode="circular")
                    if self.lon_circular
                    else F.pad(stack, (0, pw, 0, 0))
                )
            stack = F.pad(stack, (0, 0, 0, ph))
        if self.training or stack.shape[0] <= self.eval_chunk:
            feats = self._unet(stack)[..., :H, :W]
        else:  # inference: month images in groups, bounded memory (the outputs are per month)
            feats = torch.cat([self._unet(s) for s in torch.split(stack, self.eval_chunk)])[..., :H, :W]
        head_in = torch.cat([feats, enc.reshape(B * T, E, H, W)], dim=1).contiguous(memory_format=fmt)
        y = self.head(head_in).reshape(B, T, -1, H, W)
        new_state = full[:, -(self.lags - 1) :] if self.lags > 1 else None
        return y, new_state
