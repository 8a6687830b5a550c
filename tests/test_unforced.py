"""Storage change the forcing cannot explain: residual trends found where they are real, added as documented."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gtws_dl.post import unforced
from gtws_dl.seasonal import decimal_year

TIMES = pd.date_range("2002-04", "2022-12", freq="MS")
T = decimal_year(TIMES)
FIT = (float(T[0]), float(T[-1]))


def _series(rng, slope_mm_yr: float, noise_mm: float = 15.0) -> np.ndarray:
    seas = 50 * np.cos(2 * np.pi * (TIMES.month.values - 4) / 12)
    red = np.zeros(len(T))  # AR(1) interannual noise, like a model's error of the forced variability
    for i in range(1, len(T)):
        red[i] = 0.9 * red[i - 1] + rng.normal(0, noise_mm * np.sqrt(1 - 0.81))
    return seas + slope_mm_yr * (T - T.mean()) + red


def test_residual_trend_keeps_ice_loss_and_drops_noise():
    rng = np.random.default_rng(0)
    target = np.stack([_series(rng, -100.0), _series(rng, 0.0), _series(rng, -30.0)], 1)[:, :, None]
    recon = np.stack([_series(rng, 0.0, 0.0)] * 3, 1)[:, :, None]  # the network: seasonal cycle, no trend
    slope = unforced.residual_trend(target, recon, T, FIT)[:, 0]
    assert slope[0] == pytest.approx(-100.0, rel=0.05) and slope[2] == pytest.approx(-30.0, rel=0.15)
    assert slope[1] == 0.0  # noise only: nothing is extrapolated
    # cells with too few months get none
    short = unforced.residual_trend(target[:20], recon[:20], T[:20], (float(T[0]), float(T[19])))
    assert (short == 0).all()


def test_effective_time_per_mode():
    t = np.array([1950.0, 1990.0, 1996.0, 2002.0, 2010.0])
    np.testing.assert_allclose(unforced.effective_time(t, 2002.0, "off"), 0.0)
    np.testing.assert_allclose(unforced.effective_time(t, 2002.0, "none"), [0, 0, 0, 0, 8])
    back = unforced.effective_time(t, 2002.0, "grace_trend", onset=1990.0)
    # the rate tapers linearly from 1 at 2002 to 0 at 1990: a loss of half the 12 years' worth, flat before
    np.testing.assert_allclose(back, [-6.0, -6.0, -6.0 + 36 / 24, 0.0, 8.0])
    with pytest.raises(ValueError, match="products.unforced"):
        unforced.effective_time(t, 2002.0, "linear")


def test_products_match_a_grace_trend_the_network_missed(synthetic_cube, tmp_path):
    """A strong trend in the targets that the reconstruction lacks is in the product with products.unforced=none,
    and the products say so; with off it is not."""
    import shutil

    import zarr

    from gtws_dl.cube.store import open_cube
    from gtws_dl.evaluate.trends import trend_map
    from gtws_dl.post.publish import product_name, publish
    from gtws_dl.recon_store import write_reconstruction

    cube = tmp_path / "cube"
    shutil.copytree(synthetic_cube["dir"], cube)
    manifest, pred, _ = open_cube(cube)
    times = pd.date_range(manifest["time"]["start"], periods=manifest["time"]["n"], freq="MS")
    land = np.asarray(pred["land_mask"][:], bool)
    t = decimal_year(times)
    ramp = np.where(times >= "2002-04", -20.0 * (t - 2002.25), 0.0).astype(np.float32)  # -20 mm/yr in one cell
    i, j = np.argwhere(land)[0]
    targ = zarr.open_group(str(cube / "targets.zarr"), mode="r+")["twsa"]
    k = 1  # csr
    col = np.asarray(targ[k, :, i, j])
    targ[k, :, i, j] = col + ramp
    recon = np.where(land, synthetic_cube["truth"], np.nan)[None].astype(np.float32)
    g = synthetic_cube["grid"]
    store = write_reconstruction(tmp_path / "recon.zarr", recon, targets=["csr"], times=times, lat=g.lat, lon=g.lon)
    trends = {}
    for mode in ("off", "none"):
        out = tmp_path / mode
        publish(store, out, grid=g, cube_dir=cube, channels=manifest["channels"], train_period=["2002-04", "2010-12"],
                products={"zarr_copy": False, "unforced": mode})
        ds = xr.open_dataset(out / product_name("csr"))
        assert ds.attrs["unforced"].startswith(mode)
        grace = times >= "2002-04"
        trends[mode] = trend_map(ds["twsa"].values[grace], times[grace])
        ds.close()
    assert trends["off"][i, j] == pytest.approx(0.0, abs=1.0)
    assert trends["none"][i, j] == pytest.approx(-20.0, abs=1.0)
    other = land.copy()
    other[i, j] = False  # targets = truth + 2 mm noise elsewhere: no residual trend is added there
    np.testing.assert_allclose(trends["none"][other], trends["off"][other], atol=1e-3)
