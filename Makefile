# Set-up and the two jobs the README names. Everything installs into .venv from the package
# registries; nothing else is needed on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LINTED := core plugins tests examples hub_module benchmarks

.PHONY: setup browser run test test-slow test-ray lint

$(BIN)/paddiff: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	# openvino, int8: the OpenVINO runtime back end and NNCF (`paddiff quantize`), so their tests run too
	$(BIN)/pip install --quiet -e ".[cpu,dev,openvino,int8]"
	touch $@

setup: $(BIN)/paddiff

# Debian's chromium and chromedriver for the browser test (tests/web), installed when absent.
browser:
	bash .ci/install-chromium

# The main job: two images from the embedded model, one Chinese prompt and one English, no download.
run: setup
	$(BIN)/paddiff generate "蓝色背景上的一个红色圆形" -o out/red-circle-zh.png --seed 1
	$(BIN)/paddiff generate "a yellow star on a purple background" -o out/yellow-star-en.png --seed 1

# The README's test command, exactly what CI runs (.ci/run): lint, the suite, then the Ray tests
# (they need the ray extra and a local Ray head, so they run as their own pytest session).
test: setup browser
	$(BIN)/python -m ruff check $(LINTED)
	$(BIN)/python -m pytest -q
	$(MAKE) test-ray

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# `paddiff batch --ray` and `paddiff serve --ray` on local Ray heads (a few minutes, so a pytest
# session of its own); the ray extra (Ray Data and Ray Serve) is installed first, and
# PADDIFF_CI_RAY makes a missing Ray an error rather than a skip.
test-ray: setup
	$(BIN)/pip install --quiet -e ".[ray]"
	PADDIFF_CI_RAY=1 $(BIN)/python -m pytest -q -m ray tests/batch

lint: setup
	$(BIN)/python -m ruff check $(LINTED)
	$(BIN)/python -m ruff format --check $(LINTED)
