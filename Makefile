# Two entry points, each doing its own set-up on a fresh machine (Python 3.11 + pip):
#   make study   - create .venv, install kdlib, run every notebook headless on the quick parameters
#   make test    - create .venv, install kdlib + pytest (+ ray), run the test suite
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kdlib-installed
TEST_STAMP := $(VENV)/.kdlib-test-installed
# OpenMP threads that sleep instead of spinning while they wait: with the default (active) policy, torch's two
# threads slow down 3-10x whenever another process competes for the cores (measured: a digits run 78 s -> 13.5 s).
export OMP_WAIT_POLICY ?= PASSIVE
# Byte-code is written once and read by every later process. With PYTHONDONTWRITEBYTECODE set (many containers and
# CI images) every notebook kernel and grid worker would compile torch, pandas and seaborn from source again:
# measured 2-2.4x slower start-up (benchmarks/startup.py).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: study test test-slow test-browser browse bench install clean-outputs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile -e .  # not all ~16k files: only what kdlib's processes import, below
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(PY) -m kdlib.warmup  # byte-compiles the modules every notebook kernel and grid worker imports
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-compile -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

study: $(STAMP)
	$(PY) -m kdlib.notebooks --profile $(PROFILE)

test: $(TEST_STAMP)
	$(PY) -m pytest -q

test-slow: $(TEST_STAMP)
	$(PY) -m pytest -q -m slow

# The results browser as a dashboard without code cells (Voila) on http://127.0.0.1:8866, over the PROFILE's store.
# Works offline (only Font Awesome's icon CSS is fetched from a CDN; without it the icons are missing).
browse: $(STAMP)
	$(PY) -m pip install --no-compile -q -e '.[dashboard]'
	mkdir -p outputs/$(PROFILE)
	$(PY) -m papermill --prepare-only notebooks/browse_results.ipynb outputs/$(PROFILE)/browse_dashboard.ipynb -p profile $(PROFILE)
	$(PY) -m voila outputs/$(PROFILE)/browse_dashboard.ipynb --no-browser --Voila.ip=127.0.0.1 --port=8866

# The results browser in JupyterLab, driven in Chromium by Playwright; screenshots in outputs/browser/.
# Needs the system's Chromium (apt-get install chromium); skipped without it.
test-browser: $(TEST_STAMP)
	$(PY) -m pip install --no-compile -q -e '.[browser]'
	$(PY) -m pytest -q -s -m browser tests/test_browser_real.py

bench: $(STAMP)  # OpenMP's default (spinning) waits: the fastest on idle cores, see README 'Speed on shared CPUs'
	env -u OMP_WAIT_POLICY $(PY) benchmarks/train_throughput.py

clean-outputs:
	rm -rf outputs/quick outputs/cpu outputs/paper
