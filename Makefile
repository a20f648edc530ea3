# Two commands do everything on a fresh machine:  make demo  and  make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,webrtc,vcam,ray
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: setup demo test test-all lint bench install uninstall docker docker-cuda clean

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
	$(BIN)/streammatte bench samples/vtest-excerpt.mp4 --frames 40 --pipeline

# For users: streammatte and what serve needs, without the dev tools, in its own virtual
# environment (as pipx does); the command is linked into $(PREFIX)/bin.
PREFIX        ?= $(HOME)/.local
USER_EXTRAS   ?= server,webrtc,mediapipe
USER_VENV     := $(PREFIX)/share/streammatte/venv

install:
	$(PYTHON) -m venv $(USER_VENV)
	$(USER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(USER_VENV)/bin/python -m pip install --quiet '.[$(USER_EXTRAS)]'
	mkdir -p $(PREFIX)/bin
	ln -sf $(USER_VENV)/bin/streammatte $(PREFIX)/bin/streammatte
	@echo "installed $(PREFIX)/bin/streammatte (put $(PREFIX)/bin on your PATH if it is not)"

uninstall:
	rm -rf $(PREFIX)/share/streammatte $(PREFIX)/bin/streammatte

# The CPU image (Dockerfile). The wheels are built here and installed in the image with no
# index, so the image build needs no network; where no registry can be reached either, the
# base image is made locally from Debian with debootstrap (docker/bookworm-base.sh).
DOCKER_IMAGE  ?= streammatte:cpu
DOCKER_BASE   ?= python:3.11-slim-bookworm
DOCKER_EXTRAS ?= server,webrtc,mediapipe
LOCAL_BASE    := streammatte-base:bookworm-py3.11
WHEELS        := build/docker/wheels

docker:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "make docker: the image has Python 3.11; give PYTHON=python3.11")'
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	$(PYTHON) -m pip wheel --quiet --wheel-dir $(WHEELS) '.[$(DOCKER_EXTRAS)]'
	@if docker image inspect $(DOCKER_BASE) >/dev/null 2>&1 || docker pull $(DOCKER_BASE); then \
	  base=$(DOCKER_BASE); \
	else \
	  echo "no registry: building on $(LOCAL_BASE), made here with debootstrap"; \
	  docker image inspect $(LOCAL_BASE) >/dev/null 2>&1 || docker/bookworm-base.sh $(LOCAL_BASE); \
	  base=$(LOCAL_BASE); \
	fi; \
	docker build --build-arg BASE_IMAGE=$$base --build-arg EXTRAS=$(DOCKER_EXTRAS) \
	  --tag $(DOCKER_IMAGE) .
	docker image prune --force --filter label=streammatte.build=cpu >/dev/null

# The CUDA image (Dockerfile.cuda): needs an NVIDIA base image from a registry and the
# NVIDIA Container Toolkit to run (docker run --gpus all …).
docker-cuda:
	docker build --file Dockerfile.cuda --tag streammatte:cuda .

clean:
	rm -rf $(VENV) out build test-artifacts .pytest_cache .mypy_cache .ruff_cache
