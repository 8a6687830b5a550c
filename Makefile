# gtws-dl: `make demo` (install + whole pipeline on the twin Earth) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines: the pinned CPU wheel. GPU machines: e.g. make TORCH_SPEC="torch==2.13.0 --index-url ..." install
TORCH_SPEC ?= torch==2.13.0
OUT ?= outputs/demo
TARGETS ?= jpl,csr,gsfc
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.gtws-dl-installed

.PHONY: install demo twin ingest train infer report test test-fast lint bench leaderboard clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH_SPEC)
	$(PIP) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

twin: install
	$(PY) -m gtws_dl.twin paths.output_dir=$(OUT)

ingest: install
	$(PY) -m gtws_dl.ingest paths.output_dir=$(OUT)

train: install
	$(PY) train.py -m target=$(TARGETS) paths.output_dir=$(OUT) trainer.enable_progress_bar=false

infer: install
	$(PY) infer.py -m target=$(TARGETS) paths.output_dir=$(OUT)

report: install
	$(PY) -m gtws_dl.evaluate.truth paths.output_dir=$(OUT)

demo: twin ingest train infer report
	@echo ""
	@echo "Products:  $(OUT)/products  (gtws_dl_twsa_*.nc, *_detrended_deseasonalized.nc, gtws_dl_regional_series.xlsx)"
	@echo "Truth:     $(OUT)/twin/truth_twsa.nc     Skill: $(OUT)/products/skill_vs_truth.md"

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check gtws_dl tests train.py infer.py
	$(PY) -m ruff format --check gtws_dl tests train.py infer.py

bench: install
	$(PY) -m bench.run

clean:
	rm -rf outputs multirun .pytest_cache
