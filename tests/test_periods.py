"""Periods from the data (issue 16) and the order of the cube builder's checks (issue 17): on a tiny twin whose
record ends 2012-12, the record, statistics, training and validation periods follow from the files unless a key
gives them, and every period problem is refused before the first block is computed."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
from hydra import compose, initialize_config_dir

from gtws_dl.config import ConfigError, conf_dir
from gtws_dl.cube.build import CubeBuilder
from gtws_dl.cube.writer import CubeWriter
from gtws_dl.grid import Grid
from gtws_dl.ingest import spec_from
from gtws_dl.io.errors import InputFileError
from gtws_dl.twin import generate

GRID = Grid(10.0)
START, END = "2000-01", "2012-12"
VARIABLES = ("t2m", "tp", "e")


def _cfg(out: Path, *overrides: str):
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("ingest", overrides=[f"paths.output_dir={out}", "grid.res=10", *overrides])


def _builder(out: Path, *overrides: str, cube: Path | None = None) -> CubeBuilder:
    spec = replace(spec_from(_cfg(out, *overrides)), variables=VARIABLES)  # fewer ERA5 variables: faster reads
    return CubeBuilder(spec, GRID, cube or out / "cube")


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    out = tmp_path_factory.mktemp("periods")
    generate(out / "twin", GRID, start=START, end=END, progress=False, era5_per_year=False)  # 2 ERA5 files: fast
    return out


@pytest.fixture(scope="module")
def cube(twin):
    """The twin ingested with no period key."""
    return _builder(twin).build(progress=False)


class _NoBlocks(Exception):
    pass


@pytest.fixture
def no_blocks(monkeypatch):
    """Stop a build at its first predictor block, after every metadata check ran; counts the blocks."""
    calls = []

    def write_block(self, i0, block, rows=None):
        calls.append(i0)
        raise _NoBlocks

    monkeypatch.setattr(CubeWriter, "write_block", write_block)
    return calls


def test_periods_are_what_the_files_cover(cube, twin, caplog):
    p = cube["periods"]
    assert (p["record"]["start"], p["record"]["end"], p["record"]["from"]) == (START, END, "data")
    assert p["record"]["start_from"] == p["record"]["end_from"] == "data"
    assert cube["time"] == {"start": START, "end": END, "n": 156}
    assert (p["grace_jpl"]["start"], p["grace_jpl"]["end"]) == ("2002-04", END)
    # split of the twin's GRACE months: the last 24 validate, 24 months gap, training before
    assert (p["validation"]["start"], p["validation"]["end"], p["validation"]["months"]) == ("2010-09", END, 24)
    assert (p["train"]["start"], p["train"]["end"]) == ("2002-04", "2008-08")
    assert (p["stats"]["start"], p["stats"]["end"], p["stats"]["from"]) == ("2002-04", "2008-08", "data")
    assert cube["stats"]["period"] == ["2002-04", "2008-08"]
    assert p["baseline"] == {"start": "2004-01", "end": "2009-12", "from": "config", "key": "data.baseline"}
    assert json.loads((twin / "cube" / "manifest.json").read_text())["periods"] == p


def test_every_period_is_logged(twin, no_blocks, caplog):
    with caplog.at_level(logging.INFO, logger="gtws_dl.cube.periods"), pytest.raises(_NoBlocks):
        _builder(twin).build(progress=False, force=True)
    for name, span in (("record", "2000-01 .. 2012-12"), ("stats", "2002-04 .. 2008-08"),
                       ("train", "2002-04 .. 2008-08"), ("validation", "2010-09 .. 2012-12")):
        assert f"period {name} chosen from the data: {span}" in caplog.text
    assert "period baseline from the config (data.baseline): 2004-01 .. 2009-12" in caplog.text


def test_explicit_keys_override(twin, no_blocks):
    b = _builder(twin, "data.start=2001-01", "data.stats_period=[2003-01,2007-12]", "data.split.val_months=12")
    with pytest.raises(_NoBlocks):
        b.build(progress=False, force=True)
    p = b.periods.to_manifest()
    assert (p["record"]["start"], p["record"]["end"]) == ("2001-01", END)
    assert (p["record"]["from"], p["record"]["start_from"], p["record"]["end_from"]) == ("mixed", "config", "data")
    assert (p["stats"]["start"], p["stats"]["end"], p["stats"]["from"]) == ("2003-01", "2007-12", "config")
    assert p["validation"]["months"] == 12 and len(b.times) == 144


@pytest.mark.parametrize("overrides, exc, match", [
    (["data.start=2010-01", "data.end=2005-12"], ConfigError,
     r"config keys data\.start='2010-01' and data\.end='2005-12': expected data\.start before data\.end; the ERA5 "
     r"files \(data\.era5_dir: .*\) cover 2000-01 \.\. 2012-12"),
    (["data.end=2024-12"], ConfigError,
     r"config key data\.end='2024-12': expected a month the ERA5 files cover; .* cover 2000-01 \.\. 2012-12"),
    (["data.end=2001-12"], ConfigError,
     r"config key data\.end='2001-12': the record 2000-01 \.\. 2001-12 ends before the GRACE months; GRACE jpl "
     r"\(.*GRCTellus.*, data\.grace\.jpl\) covers 2002-04 \.\. 2012-12"),
    (["data.stats_period=[2002-04]"], ConfigError, r"config key data\.stats_period=\['2002-04'\]: expected \[first"),
    (["data.start=1999-13"], ConfigError, r"config key data\.start='1999-13': expected a month YYYY-MM"),
    (["data.split.val_months=150"], InputFileError, r"GRACE jpl has 122 months inside the record .*too few"),
])
def test_period_errors_before_any_block(twin, no_blocks, overrides, exc, match):
    with pytest.raises(exc, match=match):
        _builder(twin, *overrides).build(progress=False, force=True)
    assert no_blocks == []
    cube = twin / "cube"
    assert not list(cube.glob("*.tmp-*")), "no temp store may be created before the checks"


def test_era5_ending_before_grace_starts(twin, tmp_path, no_blocks):
    era5 = twin / "twin" / "era5_cut"  # inside the twin's folder: still twin files (data=twin)
    era5.mkdir(exist_ok=True)
    for f in sorted((twin / "twin" / "era5").glob("*.nc")):  # the same files, cut after 2001-12
        with xr.open_dataset(f, decode_times=False) as ds:
            ds.isel(valid_time=slice(0, 24)).load().to_netcdf(era5 / f.name)
    with pytest.raises(InputFileError, match=r"the ERA5 record 2000-01 \.\. 2001-12 \(data\.era5_dir; .*\) ends "
                                             r"before GRACE jpl: GRACE jpl .* covers 2002-04 \.\. 2012-12"):
        _builder(twin, f"data.era5_dir={era5}", cube=tmp_path / "cube").build(progress=False)
    assert no_blocks == [] and not (tmp_path / "cube").exists()


def test_training_split_fits_the_cube_chosen_from_the_data(cube, twin):
    from gtws_dl.data import CubeDataModule

    dm = CubeDataModule(str(twin / "cube"), ["jpl", "csr", "gsfc"], window=24, warmup=12, val_months=24)
    dm.setup()  # default split: the statistics period chosen from the data ends at its last training month
    norm, p = dm.normalisation(), cube["periods"]
    assert norm["train_period"] == [p["train"]["start"], p["train"]["end"]]
    assert norm["val_period"] == [p["validation"]["start"], p["validation"]["end"]]
    assert norm["stats_period"] == ["2002-04", "2008-08"]
    CubeDataModule(str(twin / "cube"), ["csr"], window=12, warmup=6, val_months=12).setup()  # shorter gap: fine
    with pytest.raises(ValueError, match=r"up to 2008-08 \(chosen from the data with data\.split\.val_months=24, "
                                         r"data\.split\.gap_months=24\), after the last training month 2007-08"):
        CubeDataModule(str(twin / "cube"), ["jpl"], window=24, warmup=12, val_months=36).setup()
    assert pd.Timestamp(p["stats"]["end"]) <= pd.Timestamp(p["train"]["end"])
