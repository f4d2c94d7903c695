# Two set-up commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= ../shared/data/dicom
EXTRAS ?= gpu,dev,train

.PHONY: run test lint bench dist dist-cpu clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -q -e '.[$(EXTRAS)]'
	# Test-only reference for Grad-CAM++ (tests/inference): --no-deps keeps torchvision out.
	$(BIN)/pip install --disable-pip-version-check -q --no-deps 'grad-cam==1.5.7' 'ttach==0.0.3'
	touch $@

## Open the viewer on the demo studies (headless without a display: writes out/ screenshot + summary).
run: $(VENV)/.installed
	$(BIN)/radview --demo $(DEMO)

## The whole suite: architecture contracts, then pytest (offscreen Qt).
test: $(VENV)/.installed
	$(BIN)/lint-imports
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/lint-imports

bench: $(VENV)/.installed
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m bench

## Packaging (docs/PACKAGING.md): one-folder PyInstaller bundles from viewer.spec.
## PyInstaller's work folder is .pyi-work/, never the project's build/ (packaging inputs).
CPU_VENV ?= .venv-cpu
CPU_BIN  := $(CPU_VENV)/bin
PYI_WORK ?= .pyi-work

$(CPU_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(CPU_VENV)
	$(CPU_BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(CPU_BIN)/pip install --disable-pip-version-check -q -e '.[cpu]' 'pyinstaller>=6.10'
	touch $@

## GPU flavour (onnxruntime-gpu from the main venv) -> dist/radview/
dist: $(VENV)/.installed
	$(BIN)/python -m PyInstaller viewer.spec --noconfirm --distpath dist --workpath $(PYI_WORK)/gpu
	dist/radview/radview-cli --version

## CPU-only flavour (onnxruntime, its own venv) -> dist/radview-cpu/
dist-cpu: $(CPU_VENV)/.installed
	$(CPU_BIN)/python -m PyInstaller viewer.spec --noconfirm --distpath dist --workpath $(PYI_WORK)/cpu
	dist/radview-cpu/radview-cli --version

clean-venv:
	rm -rf $(VENV)
