"""Regions: continents partition the land; Greenland/Antarctica areas; user polygons."""

import json

import numpy as np
import pytest

from gtws_dl.grid import Grid
from gtws_dl.landmask import land_mask
from gtws_dl.post import regions as R


@pytest.mark.parametrize("res", [2.0, 0.25])
def test_every_land_cell_in_exactly_one_continent(res):
    grid = Grid(res)
    land = land_mask(grid)
    masks = R.region_masks(grid, land)
    assert set(masks) == set(R.REGION_KEYS)
    count = sum(masks[c].astype(int) for c in R.CONTINENTS)
    assert (count[land] == 1).all() and (count[~land] == 0).all()
    union = np.logical_or.reduce([masks[c] for c in R.CONTINENTS])
    np.testing.assert_array_equal(union, masks["global_land"])
    excl = masks["global_land"] & ~masks["greenland"] & ~masks["antarctica"]
    np.testing.assert_array_equal(masks["global_land_excl_greenland_antarctica"], excl)


def test_greenland_antarctica_areas_quarter_degree():
    """Area = land_mask x cell_area. GLOBE counts grounded Antarctica (no ice shelves)."""
    grid = Grid(0.25)
    masks = R.region_masks(grid, land_mask(grid))
    area = grid.cell_area()
    greenland = (area * masks["greenland"]).sum() / 1e6  # km2
    antarctica = (area * masks["antarctica"]).sum() / 1e6
    assert abs(greenland / 2.166e6 - 1) < 0.05, greenland
    assert abs(antarctica / 12.3e6 - 1) < 0.05, antarctica  # grounded ice sheet + islands
    assert antarctica < 0.95 * 14.0e6  # ice shelves are not land in GLOBE


@pytest.mark.parametrize(
    "name, lon, lat",
    [("europe", 37.6, 55.75), ("asia", 60.6, 56.8), ("europe", 56.2, 58.0), ("asia", 32.9, 39.9),
     ("europe", 28.9, 41.1), ("asia", 33.8, 29.0), ("africa", 31.2, 30.0), ("africa", 47.5, -19.0),
     ("asia", 106.8, -6.2), ("oceania", 147.2, -9.4), ("oceania", 140.7, -2.6), ("oceania", -157.8, 21.3),
     ("north_america", -149.9, 61.2), ("north_america", -79.5, 9.0), ("south_america", -74.1, 4.7),
     ("greenland", -51.7, 64.2), ("greenland", -69.2, 77.5), ("north_america", -62.3, 82.5),
     ("europe", -21.9, 64.1), ("europe", 15.6, 78.2), ("asia", 33.4, 35.1), ("europe", 25.1, 35.3),
     ("asia", -173.2, 64.4), ("north_america", -170.3, 63.4), ("oceania", 174.8, -41.3),
     ("south_america", -90.4, -0.7), ("antarctica", 166.7, -77.8), ("asia", 139.7, 35.7)],
)  # fmt: skip
def test_known_places(name, lon, lat):
    names, _ = R.load_continents()
    assert names[int(R.continent_of(lon, lat))] == name


def test_user_regions_and_dataarray(tmp_path):
    grid = Grid(10.0)
    land = np.ones(grid.shape, bool)
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"basin": "box_a"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [20, 0], [20, 20], [0, 20], [0, 0]]]}},
        {"type": "Feature", "properties": {"basin": "box_b"},
         "geometry": {"type": "Polygon", "coordinates": [[[-180, -90], [-170, -90], [-170, -80], [-180, -80], [-180, -90]]]}}]}  # fmt: skip
    path = tmp_path / "basins.geojson"
    path.write_text(json.dumps(gj))
    masks = R.user_regions(path, grid, land, name_field="basin")
    assert masks["box_a"].sum() == 4 and masks["box_b"].sum() == 1
    da = R.user_regions(path, grid, land, name_field="basin", as_dataarray=True)
    assert da.dims == ("region", "lat", "lon") and da["lat"].attrs["units"] == "degrees_north"
    with pytest.raises(ValueError, match=r"field 'name' not found; available fields: \['basin'\]"):
        R.user_regions(path, grid, land, name_field="name")


def test_land_validation():
    grid = Grid(10.0)
    with pytest.raises(ValueError, match=r"land mask has shape \(3, 3\), expected the grid shape \(18, 36\)"):
        R.region_masks(grid, np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="must be boolean"):
        R.region_masks(grid, np.ones(grid.shape, np.float32))
