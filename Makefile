# vfs-tutorials: the README's two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
VFS    := $(VENV)/bin/vfs

# Tests and local runs read the annotation copy beside the checkout when it exists
# (CC BY-NC 4.0: it is never committed; users get it through `vfs fetch`).
SHARED_DATA ?= $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/vertebral-fractures-severity/annotation),)
export VFS_ANNOTATION_DIR ?= $(SHARED_DATA)/vertebral-fractures-severity/annotation
endif
ifneq ($(wildcard $(SHARED_DATA)/anchor-free-genant/annotation),)
export VFS_ANNOTATION_DIR_V2 ?= $(SHARED_DATA)/anchor-free-genant/annotation
endif
# Caches and demo datasets stay inside the checkout, so a fresh clone builds fresh.
export VFS_CACHE_DIR ?= $(CURDIR)/.cache
export PYDEVD_DISABLE_FILE_VALIDATION = 1

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
SOLUTIONS := $(sort $(wildcard notebooks/solutions/*.ipynb))
# two notebooks at a time (pytest-xdist; a notebook's cells stay on one worker): 151 s against
# 202 s serial for the 16 notebooks in the phantom mode, measured on the project's 2-core machine
NBVAL     := -p no:cacheprovider --nbval --nbval-sanitize-with notebooks/sanitize.cfg --nbval-current-env -n 2 --dist loadfile

.PHONY: demo test nbtest execute site lab lint lock bench model clean help

help:
	@echo "make demo   set up .venv, build the offline demo data and run the lessons"
	@echo "make test   set up .venv with the dev extra and run every test"
	@echo "make execute NB=notebooks/01_loading.ipynb   re-execute lessons in place"
	@echo "make lab    start JupyterLab on the lessons, with the data settings of this Makefile"
	@echo "make site   build the course site (Jupyter Book) into _site/"
	@echo "make lint   ruff over the package, tests, benchmarks, docs and notebooks"
	@echo "make lock   regenerate binder/requirements.txt (exact pins) from pyproject.toml"
	@echo "make bench  run the benchmark scripts"
	@echo "make model  retrain the shipped keypoint model (needs torch: the dev setup has it)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[notebooks]"
	touch $@

# The train extra with torch pinned to a CPU build (torch from PyPI would pull CUDA):
# about 0.9 GB and 35 s more, measured on the project's machine with a warm wheel cache.
TORCH ?= torch==2.13.0
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q "$(TORCH)" "onnx>=1.15"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VFS) prepare
	@mkdir -p $(VFS_CACHE_DIR)/executed
	@for nb in $(NOTEBOOKS); do \
		echo "running $$nb"; \
		$(VENV)/bin/jupyter nbconvert --to notebook --execute --log-level=WARN \
			--output-dir $(VFS_CACHE_DIR)/executed "$$nb" || exit 1; \
	done
	@echo "demo done: executed notebooks are in $(VFS_CACHE_DIR)/executed"

test: $(VENV)/.installed-dev
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest tests
	$(MAKE) --no-print-directory nbtest
	$(MAKE) --no-print-directory site

# Lessons under nbval twice: with the real annotations over phantom images (outputs
# compared with the committed ones), and fully offline on the synthetic dataset.
nbtest: $(VENV)/.installed-dev
ifneq ($(NOTEBOOKS),)
	$(VFS) prepare
	$(PY) -m pytest $(NBVAL) $(if $(VFS_ANNOTATION_DIR),,--nbval-lax) $(NOTEBOOKS) $(SOLUTIONS)
	VFS_OFFLINE=1 $(VFS) prepare
	VFS_OFFLINE=1 $(PY) -m pytest $(NBVAL) --nbval-lax $(NOTEBOOKS) $(SOLUTIONS)
else
	@echo "no notebooks yet"
endif

# Re-execute the lessons in place (the committed outputs students read on GitHub),
# in the phantom mode that CI compares against.
execute: $(VENV)/.installed-dev
	$(VFS) prepare
	@for nb in $(or $(NB),$(NOTEBOOKS) $(SOLUTIONS)); do \
		echo "executing $$nb"; \
		$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --log-level=WARN \
			--ExecutePreprocessor.timeout=600 \
			--ExecutePreprocessor.store_widget_state=False \
			--ExecutePreprocessor.record_timing=False "$$nb" || exit 1; \
	done

# The course site (Jupyter Book 1): the committed outputs, not re-executed
# (execute_notebooks: "off"; nbtest checks them with nbval). Incremental: a second
# build re-renders only the notebooks that changed.
site: $(VENV)/.installed-dev
	$(PY) docs/build_book.py --out _site

# JupyterLab on the lessons. Started from make, it sees VFS_CACHE_DIR and the annotation
# folders set above (a `jupyter lab` started by hand does not: export them yourself).
lab: $(VENV)/.installed
	$(VFS) prepare
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check vfs_utils tests benchmarks docs binder notebooks

# binder/requirements.txt: `pip freeze` of a clean venv with the package's binder extra
# (dependencies + notebooks + the Dask dashboard in JupyterLab), for the Python of
# binder/runtime.txt. Regenerate after changing pyproject.toml's dependencies.
LOCK_VENV := _build/lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q ".[binder]"
	$(LOCK_VENV)/bin/python binder/write_lock.py $(LOCK_VENV)/bin/python
	rm -rf $(LOCK_VENV)

bench: $(VENV)/.installed-dev
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The shipped keypoint network, reproduced from the project's own code (fixed seeds,
# threads and steps): renders its training phantoms (cached), trains, exports ONNX.
model: $(VENV)/.installed-dev
	$(PY) -m vfs_utils.keypoints._build

clean:
	rm -rf $(VFS_CACHE_DIR) _site _build .pytest_cache
