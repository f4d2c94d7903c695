# Two set-up commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= ../shared/data/dicom
EXTRAS ?= gpu,dev,train

.PHONY: run test lint bench dist clean-venv

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

clean-venv:
	rm -rf $(VENV)
