"""Speed options for a network, applied in place: channels-last memory format and ``torch.compile``.

Both keep the module's parameters and ``state_dict`` keys, so checkpoints written with or without them load
either way. ``torch.compile`` is applied lazily to ``net.forward``; if compiling fails on the first call (no C
compiler, no triton, an unsupported op), the net runs eagerly from then on, after one :class:`RuntimeWarning`
that names the error.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch
from torch import nn

LOGGER = logging.getLogger(__name__)


def set_memory_format(net: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """Store 4-D parameters in ``memory_format`` and make the net's convolutions see inputs in it.

    Every submodule with a ``memory_format`` attribute (ConvLSTM and its cells, U-Net and its blocks) converts
    its (N, C, H, W) convolution inputs to that format; others only get their weights converted.
    """
    net.to(memory_format=memory_format)
    for m in net.modules():
        if hasattr(m, "memory_format"):
            m.memory_format = memory_format
    return net


class CompiledOrEager:
    """``torch.compile(fn)``; on a failure of the first call, a warning and ``fn`` itself from then on.

    Only the first call is guarded: an error of the network itself still raises (from the eager retry).
    """

    def __init__(self, fn: Callable, **compile_kwargs) -> None:
        self.eager = fn
        self.compiled = torch.compile(fn, **compile_kwargs)
        self.state = "untried"  # -> "compiled" | "eager"
        self.error: str | None = None

    def __call__(self, *args, **kwargs):
        if self.state == "compiled":
            return self.compiled(*args, **kwargs)
        if self.state == "eager":
            return self.eager(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any compiler/toolchain failure: fall back, say why
            self.state, self.error = "eager", f"{type(err).__name__}: {str(err).strip()[:500]}"
            warnings.warn(
                f"torch.compile failed, running the network eagerly instead ({self.error})",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.eager(*args, **kwargs)
        self.state = "compiled"
        return out


def accelerate(net: nn.Module, *, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """Apply the speed options to ``net`` in place (see the module docstring); returns ``net``.

    ``compile`` replaces ``net.forward`` by a :class:`CompiledOrEager` (mode default); :func:`decelerate`
    undoes both options.
    """
    if channels_last:
        set_memory_format(net, torch.channels_last)
    if compile and not isinstance(net.__dict__.get("forward"), CompiledOrEager):
        net.forward = CompiledOrEager(net.forward)
    if channels_last or compile:
        LOGGER.info("%s: channels_last=%s compile=%s", type(net).__name__, channels_last, compile)
    return net


def decelerate(net: nn.Module) -> nn.Module:
    """Undo :func:`accelerate`: eager ``forward``, contiguous parameters and inputs."""
    if isinstance(net.__dict__.get("forward"), CompiledOrEager):
        del net.forward
    if any(
        getattr(m, "memory_format", torch.contiguous_format) != torch.contiguous_format for m in net.modules()
    ):
        set_memory_format(net, torch.contiguous_format)
    return net
