# `make demo` and `make test` set everything up on a fresh machine, then run.
# torch==2.13.0 is installed first and on its own so that nothing pulls CUDA packages.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stainfree-installed

.PHONY: demo test benchmark clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,napari]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/stainfree demo -o runs/demo --force

test: $(STAMP)
	$(PY) -m pytest -q

benchmark: $(STAMP)
	$(PY) benchmarks/cellset_io.py

clean:
	rm -rf $(VENV) runs
