# gtws-dl: `make demo` (install + whole pipeline on the twin Earth) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines: the pinned CPU wheel. GPU machines: e.g. make TORCH_SPEC="torch==2.13.0 --index-url ..." install
TORCH_SPEC ?= torch==2.13.0
OUT ?= outputs/demo
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.gtws-dl-installed

.PHONY: install demo twin ingest train infer skill report test test-fast lint bench leaderboard clean

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

# the demo trains one network with jpl/csr/gsfc heads (experiment=demo); per-centre networks:
#   python train.py -m target=jpl,csr,gsfc && python infer.py -m target=jpl,csr,gsfc
train: install
	$(PY) train.py experiment=demo paths.output_dir=$(OUT)

infer: install
	$(PY) infer.py target=all paths.output_dir=$(OUT)

skill: install
	$(PY) -m gtws_dl.evaluate.truth paths.output_dir=$(OUT)

report: install
	$(PY) -m gtws_dl.evaluate.report paths.output_dir=$(OUT)

demo: twin ingest train infer skill
	@echo ""
	@echo "Products:  $(OUT)/products  (gtws_dl_twsa_*.nc, *_detrended_deseasonalized.nc, gtws_dl_regional_series.xlsx)"
	@echo "Truth:     $(OUT)/twin/truth_twsa.nc     Skill: $(OUT)/products/skill_vs_truth.md"
	@echo "Full evaluation report (maps, budgets, ENSO): make report  ->  $(OUT)/report/report.md"

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check gtws_dl tests train.py infer.py
	$(PY) -m ruff format --check gtws_dl tests train.py infer.py

# every model (baselines, ConvLSTM, U-Net ensemble) on the $(OUT) cube -> outputs/leaderboard/leaderboard.{md,csv};
# e.g. make leaderboard LB_ARGS="scale=4 models_to_run=[unet,gbt]"
leaderboard: install
	$(PY) -m gtws_dl.experiments.leaderboard paths.output_dir=$(OUT) $(LB_ARGS)

bench: install
	$(PY) -m bench.run --threads 1

clean:
	rm -rf outputs multirun .pytest_cache
