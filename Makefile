# Two commands do everything on a fresh machine:  make demo  and  make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,webrtc,vcam
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: setup demo test test-all lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

setup: $(STAMP)

# Pull the default model (sha256-checked) and matte the sample clip over a blurred background.
demo: setup
	$(BIN)/streammatte models pull u2netp
	mkdir -p out
	$(BIN)/streammatte video samples/vtest-excerpt.mp4 -o out/vtest-blur.mp4 --background blur --overwrite
	$(BIN)/streammatte video samples/vtest-excerpt.mp4 -o out/vtest-cutout.webm --overwrite
	@echo "demo output: out/vtest-blur.mp4 (blurred background), out/vtest-cutout.webm (transparent)"

lint: setup
	$(BIN)/ruff check streammatte tests samples benchmarks
	$(BIN)/mypy

# The suite CI runs: lint, types, and every test not marked slow (under 10 minutes on 2 cores).
test: lint
	$(BIN)/pytest -m "not slow"

test-all: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/streammatte bench samples/vtest-excerpt.mp4 --frames 40

clean:
	rm -rf $(VENV) out test-artifacts .pytest_cache .mypy_cache .ruff_cache
