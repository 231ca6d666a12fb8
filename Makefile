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
# The real development CT (TotalSegmentator's example, Apache-2.0) when the shared copy exists.
ifneq ($(wildcard $(SHARED_DATA)/real-ct/totalsegmentator_example_ct.nii.gz),)
export VFS_REAL_CT ?= $(SHARED_DATA)/real-ct/totalsegmentator_example_ct.nii.gz
endif
# Caches and demo datasets stay inside the checkout, so a fresh clone builds fresh.
export VFS_CACHE_DIR ?= $(CURDIR)/.cache
export PYDEVD_DISABLE_FILE_VALIDATION = 1
# Executed copies of the lessons (make demo) always land inside the checkout.
EXECUTED  := $(CURDIR)/.cache/executed
# Local kernels talk over IPC (Unix sockets), not TCP: nothing to encrypt, no "running over
# TCP without encryption" warning, and no TCP port picked by the client that another process
# can take before the kernel binds it. Each nbconvert kernel gets a new private folder for its
# sockets ($$kdir, made by the loops below): jupyter_client numbers the sockets by probing
# which files exist, which two kernels sharing a prefix can race. JupyterLab makes its own
# prefix per kernel; nbval's kernels get theirs from notebooks/conftest.py.
IPC       := --KernelManager.transport=ipc
KERNEL    := $(IPC) --KernelManager.ip="$$kdir/k"
NEW_KDIR  := kdir=$$(mktemp -d "$${XDG_RUNTIME_DIR:-/tmp}/vfs-kernel-XXXXXX") || exit 1
# Options for `jupyter lab` (make lab LAB_ARGS="--no-browser --port 8890 --ip 0.0.0.0");
# --allow-root is added when make runs as root (containers, cloud machines).
LAB_ARGS  ?=
ROOT_ARGS := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
SOLUTIONS := $(sort $(wildcard notebooks/solutions/*.ipynb))
# two notebooks at a time (pytest-xdist; a notebook's cells stay on one worker): 151 s against
# 202 s serial for the 16 notebooks in the phantom mode, measured on the project's 2-core machine.
# A kernel may take long to start on a loaded machine: 300 s, not nbval's 60.
NBVAL     := -p no:cacheprovider --nbval --nbval-sanitize-with notebooks/sanitize.cfg --nbval-current-env \
             --nbval-kernel-startup-timeout 300 -n 2 --dist loadfile

.PHONY: demo test check nbtest execute site lab lint lock bench model clean help

help:
	@echo "make demo   set up .venv, build the demo data and run the lessons into .cache/executed/"
	@echo "            (one lesson: make demo NB=notebooks/01_loading.ipynb)"
	@echo "make lab    start JupyterLab on the lessons, with the data settings of this Makefile"
	@echo "            (jupyter lab options: make lab LAB_ARGS=\"--no-browser --port 8890\";"
	@echo "            --allow-root is added when run as root)"
	@echo "make test   set up .venv with the dev extra and run every test"
	@echo "make check  the fast edit-test loop: lint and the tests not marked slow"
	@echo "make nbtest the lessons under nbval (phantom and synthetic modes)"
	@echo "make execute NB=notebooks/01_loading.ipynb   re-execute lessons in place (maintainers)"
	@echo "make site   build the course site (Jupyter Book) into _site/ (SOLUTIONS=0: without"
	@echo "            the worked solutions, for graded work)"
	@echo "make lint   ruff over the package, tests, benchmarks, docs and notebooks"
	@echo "make lock   regenerate binder/requirements.txt (exact pins) from pyproject.toml"
	@echo "make bench  run the benchmark scripts"
	@echo "make model  retrain the shipped keypoint model (needs torch: the dev setup has it)"
	@echo "make clean  delete what the targets wrote inside this checkout (.cache/, _site/,"
	@echo "            _build/, .pytest_cache/); never a VFS_CACHE_DIR outside it, nor .venv/"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[notebooks]"
	touch $@

# torch for the keypoint model's tests and `make model`: about 0.9 GB and 35 s more on the
# project's machines, where pip finds the CPU build of torch==2.13.0 on local disk. Elsewhere
# on Linux, PyPI's torch is the CUDA build (several GB): point TORCH_INDEX at PyTorch's CPU
# wheel index (make test TORCH_INDEX=https://download.pytorch.org/whl/cpu).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install -q "onnx>=1.15"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VFS) prepare
	@mkdir -p $(EXECUTED)
	@for nb in $(or $(NB),$(NOTEBOOKS)); do \
		echo "running $$nb"; $(NEW_KDIR); \
		$(VENV)/bin/jupyter nbconvert --to notebook --execute --log-level=WARN $(KERNEL) \
			--output-dir $(EXECUTED) "$$nb"; rc=$$?; rm -rf "$$kdir"; [ $$rc = 0 ] || exit 1; \
	done
	@echo "demo done: the executed notebooks are in $(EXECUTED)"
	@echo "(open them with $(VENV)/bin/jupyter lab $(EXECUTED)$(if $(ROOT_ARGS), $(ROOT_ARGS)); the lessons themselves: make lab)"

test: $(VENV)/.installed-dev
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -n 2 --dist loadfile tests
	$(MAKE) --no-print-directory nbtest
	$(MAKE) --no-print-directory site

# The edit-test loop: lint, then every test not marked slow (site, JupyterLab, full-size
# renders, fuzz, Dask cluster) on two workers; `make test` still runs everything.
check: $(VENV)/.installed-dev
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -m "not slow" -n 2 -q tests

# Lessons under nbval twice: with the real annotations over phantom images (outputs
# compared with the committed ones), and on the synthetic dataset (no network and no
# annotation copy: with a copy, VFS_OFFLINE=1 alone keeps the phantom mode).
OFFLINE_NO_COPY := VFS_OFFLINE=1 VFS_ANNOTATION_DIR= VFS_ANNOTATION_DIR_V2= VFS_SHARED_DIR=
nbtest: $(VENV)/.installed-dev
ifneq ($(NOTEBOOKS),)
	$(VFS) prepare
	$(PY) -m pytest $(NBVAL) $(if $(VFS_ANNOTATION_DIR),,--nbval-lax) $(NOTEBOOKS) $(SOLUTIONS)
	$(OFFLINE_NO_COPY) $(VFS) prepare
	$(OFFLINE_NO_COPY) $(PY) -m pytest $(NBVAL) --nbval-lax $(NOTEBOOKS) $(SOLUTIONS)
else
	@echo "no notebooks yet"
endif

# Re-execute the lessons in place (the committed outputs students read on GitHub),
# in the phantom mode that CI compares against.
execute: $(VENV)/.installed-dev
	$(VFS) prepare
	@for nb in $(or $(NB),$(NOTEBOOKS) $(SOLUTIONS)); do \
		echo "executing $$nb"; $(NEW_KDIR); \
		$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --log-level=WARN $(KERNEL) \
			--ExecutePreprocessor.timeout=600 --ExecutePreprocessor.startup_timeout=300 \
			--ExecutePreprocessor.store_widget_state=False \
			--ExecutePreprocessor.record_timing=False "$$nb"; rc=$$?; rm -rf "$$kdir"; \
		[ $$rc = 0 ] || exit 1; \
	done

# The course site (Jupyter Book 1): the committed outputs, not re-executed
# (execute_notebooks: "off"; nbtest checks them with nbval). Incremental: a second
# build re-renders only the notebooks that changed. Needs only the notebooks and site
# extras (a fresh .venv of those: 958 MB, no torch); SOLUTIONS=0 leaves the worked
# solutions out (for graded work).
SOLUTIONS ?= 1
$(VENV)/.installed-site: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[notebooks,site]"
	touch $@ $(VENV)/.installed
site: $(VENV)/.installed-site
	$(PY) docs/build_book.py --out _site $(if $(filter 0,$(SOLUTIONS)),--no-solutions)

# JupyterLab on the lessons. Started from make, it sees VFS_CACHE_DIR and the annotation
# folders set above (a `jupyter lab` started by hand does not: export them yourself).
lab: $(VENV)/.installed
	$(VFS) prepare
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $(IPC) $(ROOT_ARGS) $(LAB_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check vfs_utils tests benchmarks docs binder notebooks tools

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

# Only what lies inside the checkout: an exported VFS_CACHE_DIR elsewhere (your own cache)
# is never touched, and neither is .venv (delete it by hand to reinstall).
clean:
	rm -rf $(CURDIR)/.cache $(CURDIR)/_site $(CURDIR)/_build $(CURDIR)/.pytest_cache
	rm -f notebooks/*.nbconvert.ipynb notebooks/solutions/*.nbconvert.ipynb
	@case "$(abspath $(VFS_CACHE_DIR))/" in "$(CURDIR)/"*) ;; \
		*) echo "left alone: VFS_CACHE_DIR=$(VFS_CACHE_DIR) (outside this checkout)";; esac
