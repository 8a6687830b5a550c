"""U-Net: lagged stack, streaming state, longitude wrap, exact tiling; heteroscedastic head and ensembles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtws_dl.models.module import split_output
from gtws_dl.models.unet import UNet
from gtws_dl.reconstruct import predict_tiled


def test_unet_sees_only_its_lags_and_streams():
    torch.manual_seed(0)
    net = UNet(3, 2, lags=3, encoder=4, base=4, depth=2).eval()
    x = torch.randn(1, 8, 3, 10, 14)  # neither size a multiple of 4: padded and cropped
    with torch.no_grad():
        full, _ = net(x)
        a, st = net(x[:, :5])
        b, _ = net(x[:, 5:], st)
        x2 = x.clone()
        x2[:, 2] += 5.0  # month 2 may only change outputs at months 2, 3, 4
        changed, _ = net(x2)
    assert full.shape == (1, 8, 2, 10, 14)
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    diff = (changed - full).abs().amax(dim=(0, 2, 3, 4))
    assert (diff[[2, 3, 4]] > 0).all() and (diff[[0, 1, 5, 6, 7]] == 0).all()
    # earlier positions are padded with the first month: a constant record gives constant outputs in time
    const, _ = net(x[:, :1].expand(-1, 4, -1, -1, -1))
    torch.testing.assert_close(const[:, 0], const[:, 3])


def test_unet_wraps_longitude():
    torch.manual_seed(0)
    net = UNet(3, 1, lags=2, encoder=4, base=4, depth=2, lon_circular=True).eval()
    x = torch.randn(1, 3, 3, 9, 16)
    with torch.no_grad():
        y, _ = net(x)
        yr, _ = net(torch.roll(x, 4, dims=-1))  # a shift by the pooling block commutes with the net
    torch.testing.assert_close(yr, torch.roll(y, 4, dims=-1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("circular,W", [(True, 40), (False, 40), (True, 42)])
def test_unet_tiled_inference_matches_untiled(circular, W):
    torch.manual_seed(1)
    net = UNet(3, 2, lags=3, encoder=4, base=4, depth=2, lon_circular=circular).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 3, 38, W)).astype(np.float32)
    with torch.no_grad():
        whole = predict_tiled(net, x, torch.device("cpu"))
        tiled = predict_tiled(net, x, torch.device("cpu"), tile=(13, 17))
    assert net.lon_circular is circular
    assert net.spatial_halo(4) == net.spatial_halo(400)  # does not grow with the window
    np.testing.assert_allclose(tiled, whole, atol=2e-5, rtol=0)


def test_split_output_gaussian_and_laplace():
    y = np.zeros((1, 2, 4, 3, 3), np.float32)
    y[:, :, 2:] = np.log(4.0)
    m, s = split_output(y, "gaussian")
    assert m.shape == (1, 2, 2, 3, 3) and np.allclose(s, 2.0)
    _, s = split_output(torch.from_numpy(y), "laplace")
    assert torch.allclose(s, torch.full_like(s, 4 * 2**0.5))
    assert split_output(y, "mse")[1] is None
