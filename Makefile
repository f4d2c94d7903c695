# Two set-up commands for a fresh machine: `make run` and `make test`.
# Every environment installs from a hashed lock in requirements/ (docs/PACKAGING.md, "Locked
# dependencies"); `make lock` refreshes the locks from pyproject's ranges, `make test-latest`
# tries the newest releases those ranges allow, on purpose.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= ../shared/data/dicom
LOCKS  := requirements
# --no-deps: a lock is complete (every package pinned and hashed); pip resolves nothing itself.
PIP_LOCKED = --disable-pip-version-check -q --no-deps --require-hashes -r
# The project itself: editable, built with the locked setuptools, no download.
PIP_SELF   = --disable-pip-version-check -q --no-deps --no-build-isolation -e .

.PHONY: run test lint static bench dist dist-cpu lock test-latest clean-venv

# dev.lock = pyproject's gpu, dev and train extras (torch from the machine's local CPU wheel);
# gradcam-ref.lock = the test-only Grad-CAM++ reference (grad-cam without torchvision).
$(VENV)/.installed: $(LOCKS)/dev.lock $(LOCKS)/gradcam-ref.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_LOCKED) $(LOCKS)/dev.lock
	$(BIN)/pip install $(PIP_LOCKED) $(LOCKS)/gradcam-ref.lock
	$(BIN)/pip install $(PIP_SELF)
	touch $@

## Open the viewer on the demo studies (headless without a display: writes out/ screenshot + summary).
run: $(VENV)/.installed
	$(BIN)/radview --demo $(DEMO)

## The whole suite: architecture contracts, ruff, mypy, then pytest (offscreen Qt).
test: $(VENV)/.installed
	$(BIN)/lint-imports
	$(BIN)/ruff check viewer tests bench training tools
	$(BIN)/mypy
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

lint: static
static: $(VENV)/.installed
	$(BIN)/lint-imports
	$(BIN)/ruff check viewer tests bench training tools
	$(BIN)/mypy

bench: $(VENV)/.installed
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m bench

## Packaging (docs/PACKAGING.md): one-folder PyInstaller bundles from viewer.spec.
## PyInstaller's work folder is .pyi-work/, never the project's build/ (packaging inputs).
CPU_VENV ?= .venv-cpu
CPU_BIN  := $(CPU_VENV)/bin
PYI_WORK ?= .pyi-work

# cpu.lock = pyproject's cpu extra + PyInstaller + the packaging tests' runner (universal lock).
$(CPU_VENV)/.installed: $(LOCKS)/cpu.lock pyproject.toml
	rm -rf $(CPU_VENV)
	$(PYTHON) -m venv $(CPU_VENV)
	$(CPU_BIN)/pip install $(PIP_LOCKED) $(LOCKS)/cpu.lock
	$(CPU_BIN)/pip install $(PIP_SELF)
	touch $@

## GPU flavour (onnxruntime-gpu from the main venv) -> dist/radview/
dist: $(VENV)/.installed
	$(BIN)/python -m PyInstaller viewer.spec --noconfirm --distpath dist --workpath $(PYI_WORK)/gpu
	dist/radview/radview-cli --version

## CPU-only flavour (onnxruntime, its own venv) -> dist/radview-cpu/
dist-cpu: $(CPU_VENV)/.installed
	$(CPU_BIN)/python -m PyInstaller viewer.spec --noconfirm --distpath dist --workpath $(PYI_WORK)/cpu
	dist/radview-cpu/radview-cli --version

## Refresh every lock from pyproject's ranges (one command; needs the package index).
lock:
	$(PYTHON) tools/lock.py

## Deliberate "latest" check: a throwaway venv from pyproject's ranges (no lock), fast tests only.
## Not part of .ci/run: an upstream break is found on purpose, not by a user.
LATEST_VENV ?= .venv-latest
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install --disable-pip-version-check -q --upgrade pip
	$(LATEST_VENV)/bin/pip install --disable-pip-version-check -q -e '.[gpu,dev,train]'
	$(LATEST_VENV)/bin/pip install --disable-pip-version-check -q --no-deps 'grad-cam==1.5.7' 'ttach==0.0.3'
	$(LATEST_VENV)/bin/pip freeze > $(LATEST_VENV)/freeze.txt
	QT_QPA_PLATFORM=offscreen $(LATEST_VENV)/bin/python -m pytest -m "not slow" -q

clean-venv:
	rm -rf $(VENV) $(CPU_VENV) $(LATEST_VENV)
