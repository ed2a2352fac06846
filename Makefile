# Two entry points, each doing its own set-up on a fresh machine (Python 3.11 + pip; uv used when on the PATH):
#   make study   - create .venv, install kdlib + the notebooks extra, run every notebook headless on the quick parameters
#   make test    - create .venv, install kdlib + the notebooks, ray, slurm, mlflow and test extras, run the test suite
# Versions come from the committed lockfiles in requirements/ (pip and uv both read them as constraints);
# `make lock` re-resolves them with uv. INSTALLER=pip forces pip where uv is installed.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kdlib-installed
TEST_STAMP := $(VENV)/.kdlib-test-installed
INSTALLER ?= $(if $(shell command -v uv 2>/dev/null),uv,pip)
ifeq ($(INSTALLER),uv)
MKVENV = uv venv -q --allow-existing --python $(PYTHON) $(VENV)
INSTALL = uv pip install -q --python $(PY)
else ifeq ($(INSTALLER),pip)
MKVENV = $(PYTHON) -m venv $(VENV)
INSTALL = $(PY) -m pip install -q --no-compile
else
$(error INSTALLER must be uv or pip, got '$(INSTALLER)')
endif
# One resolution per install set (a cluster worker: core + slurm; make study: + notebooks; make test: everything but
# the browser extras), universal (Linux, macOS, Windows; Python >= 3.10), existing pins kept unless inputs changed.
LOCK = uv pip compile -q pyproject.toml --universal --python-version 3.10
# OpenMP threads that sleep instead of spinning while they wait: with the default (active) policy, torch's two
# threads slow down 3-10x whenever another process competes for the cores (measured: a digits run 78 s -> 13.5 s).
export OMP_WAIT_POLICY ?= PASSIVE
# Byte-code is written once and read by every later process. With PYTHONDONTWRITEBYTECODE set (many containers and
# CI images) every notebook kernel and grid worker would compile torch, pandas and seaborn from source again:
# measured 2-2.4x slower start-up (benchmarks/startup.py).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: study test test-slow test-browser browse bench install lock clean-outputs

$(STAMP): pyproject.toml requirements/study.lock
	$(MKVENV)
	$(INSTALL) -e '.[notebooks]' -c requirements/study.lock  # no byte-code for ~16k files: warm-up below
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(PY) -m kdlib.warmup  # byte-compiles the modules every notebook kernel and grid worker imports
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) requirements/test.lock
	$(INSTALL) -e '.[notebooks,ray,slurm,mlflow,test]' -c requirements/test.lock
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
	$(INSTALL) -e '.[dashboard]' -c requirements/test.lock
	mkdir -p outputs/$(PROFILE)
	$(PY) -m papermill --prepare-only notebooks/browse_results.ipynb outputs/$(PROFILE)/browse_dashboard.ipynb -p profile $(PROFILE)
	$(PY) -m voila outputs/$(PROFILE)/browse_dashboard.ipynb --no-browser --Voila.ip=127.0.0.1 --port=8866

# The results browser in JupyterLab, driven in Chromium by Playwright; screenshots in outputs/browser/.
# Needs the system's Chromium (apt-get install chromium); skipped without it.
test-browser: $(TEST_STAMP)
	$(INSTALL) -e '.[browser]' -c requirements/test.lock
	$(PY) -m pytest -q -s -m browser tests/test_browser_real.py

bench: $(STAMP)  # OpenMP's default (spinning) waits: the fastest on idle cores, see README 'Speed on shared CPUs'
	env -u OMP_WAIT_POLICY $(PY) benchmarks/train_throughput.py

# A cluster worker's environment (no JupyterLab, no pytest):
#   pip install -e '.[slurm]' -c requirements/worker.lock   (with uv: uv pip install, the same arguments)
lock:
	$(LOCK) --extra slurm -o requirements/worker.lock
	$(LOCK) --extra notebooks -o requirements/study.lock
	$(LOCK) --extra notebooks --extra ray --extra slurm --extra mlflow --extra test -o requirements/test.lock

clean-outputs:
	rm -rf outputs/quick outputs/cpu outputs/paper
