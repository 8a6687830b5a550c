"""GPU speed options checked on the CPU: channels-last and torch.compile give the standard outputs; a compiler
that fails falls back to eager with one warning; the options reach the network from the infer and train configs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import zarr
from bad_inputs.builders import module_for, save_checkpoint, train_cfg

import gtws_dl.reconstruct as recon
from gtws_dl.config import ConfigError
from gtws_dl.models.accel import CompiledOrEager, accelerate, decelerate
from gtws_dl.models.convlstm import ConvLSTM
from gtws_dl.models.unet import UNet

NETS = {
    "convlstm": lambda: ConvLSTM(3, 2, hidden=[4, 4], encoder=4, lon_circular=True),
    "unet": lambda: UNet(3, 2, lags=3, encoder=4, base=4, depth=2, lon_circular=True),
}


def _net_and_input(name: str):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 8, 12)
    return NETS[name]().eval(), x


def _conv_inputs_channels_last(net, x) -> list[bool]:
    """Whether each Conv2d call of a forward pass got a channels-last input (and channels-last weights)."""
    seen = []

    def hook(mod, inp):
        seen.append(
            inp[0].is_contiguous(memory_format=torch.channels_last)
            and mod.weight.is_contiguous(memory_format=torch.channels_last)
        )

    hooks = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name", sorted(NETS))
def test_channels_last_matches_standard_layout(name):
    net, x = _net_and_input(name)
    with torch.no_grad():
        ref, _ = net(x)
    keys = list(net.state_dict())
    accelerate(net, channels_last=True)
    assert all(_conv_inputs_channels_last(net, x))  # every convolution runs NHWC
    with torch.no_grad():
        out, _ = net(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert list(net.state_dict()) == keys

    net.train()  # gradients too: training uses the same option
    out, _ = net(x)
    out.square().mean().backward()
    grads = {k: p.grad.clone() for k, p in net.named_parameters()}
    decelerate(net)
    assert not any(_conv_inputs_channels_last(net, x))
    net.zero_grad()
    ref, _ = net(x)
    ref.square().mean().backward()
    for k, p in net.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETS))
def test_compile_matches_eager_or_falls_back_with_a_warning(name):
    """Real ``torch.compile`` (about 15 s per net on a 2-core CPU with gcc; falls back where it cannot)."""
    net, x = _net_and_input(name)
    with torch.no_grad():
        ref, _ = net(x)
    accelerate(net, channels_last=True, compile=True)
    with warnings.catch_warnings(record=True) as rec, torch.no_grad():
        warnings.simplefilter("always")
        out, _ = net(x)
        again, _ = net(x)
    fallbacks = [w for w in rec if "torch.compile failed" in str(w.message)]
    if net.forward.state == "eager":  # no usable compiler here: exactly one warning, naming the error
        assert len(fallbacks) == 1 and net.forward.error in str(fallbacks[0].message)
    else:
        assert net.forward.state == "compiled" and not fallbacks
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, ref, atol=1e-5, rtol=0)
    decelerate(net)
    assert "forward" not in net.__dict__


def _broken_compile(fn, **kw):
    def run(*a, **k):
        raise RuntimeError("InductorError: CppCompileError: no working C++ compiler found (simulated)")

    return run


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    monkeypatch.setattr(torch, "compile", _broken_compile)
    net, x = _net_and_input("convlstm")
    with torch.no_grad():
        ref, _ = net(x)
    accelerate(net, compile=True)
    with pytest.warns(
        RuntimeWarning,
        match=r"torch.compile failed, running the network eagerly instead "
        r"\(RuntimeError: InductorError: CppCompileError: no working C\+\+",
    ):
        out, _ = net(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only the first call warns
        again, _ = net(x)
    assert isinstance(net.forward, CompiledOrEager) and net.forward.state == "eager"
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    torch.testing.assert_close(again, ref, atol=0, rtol=0)


def test_an_error_of_the_network_itself_still_raises(monkeypatch):
    monkeypatch.setattr(torch, "compile", _broken_compile)
    net, _ = _net_and_input("convlstm")
    accelerate(net, compile=True)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="expected input"):
        net(torch.randn(2, 4, 5, 8, 12))  # 5 channels for a 3-channel net


def test_reconstruct_applies_and_removes_the_options(synthetic_cube, tmp_path, monkeypatch):
    """channels_last + compile reach the network during reconstruction, leave the outputs unchanged within
    1e-5 and the module as it was given."""
    cube = synthetic_cube["dir"]
    module = module_for(cube, hidden=(4,))
    ckpt = save_checkpoint(module, tmp_path / "m.ckpt")
    kw = {"ckpt_path": ckpt, "device": "cpu", "batch_windows": 4, "progress": False}
    ref = zarr.open_group(recon.reconstruct(module, cube, tmp_path / "a.zarr", **kw), mode="r")["twsa"][:]

    compiled, formats = [], []
    # plumbing only: record the call, compile nothing
    monkeypatch.setattr(torch, "compile", lambda fn, **k: compiled.append(fn) or fn)
    predict = recon.predict_tiled

    def spy(module, x, dev, **k):
        formats.append(module.net.encoder[0].weight.is_contiguous(memory_format=torch.channels_last))
        return predict(module, x, dev, **k)

    monkeypatch.setattr(recon, "predict_tiled", spy)
    out = recon.reconstruct(module, cube, tmp_path / "b.zarr", channels_last=True, compile=True, **kw)
    got = zarr.open_group(out, mode="r")["twsa"][:]
    assert len(compiled) == 1 and formats and all(formats)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-5)  # mm; outputs are O(10-100) mm
    assert "forward" not in module.net.__dict__
    assert (
        module.net.encoder[0].weight.is_contiguous() and module.net.memory_format == torch.contiguous_format
    )


def test_train_with_speed_options_writes_a_plain_checkpoint(synthetic_cube, tmp_path, monkeypatch):
    """channels_last/compile (top-level train keys, not Trainer arguments) are applied to the net; a compiler
    failure falls back with a warning; the checkpoint loads into a plain module."""
    from gtws_dl.checkpoint import load_checkpoint
    from gtws_dl.training import train, trainer_options

    cfg = train_cfg(
        tmp_path,
        synthetic_cube["dir"],
        "channels_last=true",
        "compile=true",
        "trainer.max_epochs=1",
    )
    tcfg, speed = trainer_options(cfg)
    assert (
        speed == {"channels_last": True, "compile": True} and "compile" not in tcfg and "max_epochs" in tcfg
    )
    monkeypatch.setattr(torch, "compile", _broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        summary = train(cfg)
    module = load_checkpoint(summary["last_checkpoint"])
    assert "forward" not in module.net.__dict__ and module.net.encoder[0].weight.is_contiguous()

    bad = train_cfg(tmp_path, synthetic_cube["dir"], "compile=maybe")
    with pytest.raises(ConfigError, match=r"config key compile='maybe': expected true or false"):
        train(bad)


def test_gpu_trainer_config_carries_the_options_off():
    from hydra import compose, initialize_config_dir

    from gtws_dl.config import conf_dir
    from gtws_dl.training import trainer_options

    for trainer in ("cpu", "gpu", "ddp"):
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
            cfg = compose("train", overrides=[f"trainer={trainer}"])
        tcfg, speed = trainer_options(cfg)
        assert speed == {"channels_last": False, "compile": False}, trainer  # unmeasured on GPU: off
        assert not {"channels_last", "compile"} & set(tcfg)
