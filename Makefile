# `make app` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install: make reinstalls only when requirements.txt is newer.
STAMP := $(VENV)/.installed
DATA_DIR ?= $(firstword $(wildcard ../shared/data/mnist) $(LATENT_EXPLORER_DATA))

.PHONY: app app-replicas nginx test test-busy lint chromium train train-fashion train-cvae train-emoji sharpen sharpen-fashion sharpen-cvae sharpen-emoji anomaly atlas bench vendor-ort vendor-scatter clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

# DATA_DIR, where there is one, is where the page finds the training images nearest z; ARGS go
# to streamlit (`make app ARGS="--server.address 0.0.0.0"`); serve.py is `streamlit run app.py` with
# the page's imports (torch) done before the server answers
app: $(STAMP)
	$(if $(DATA_DIR),LATENT_EXPLORER_DATA=$(DATA_DIR)) $(PY) serve.py $(ARGS)

# Several copies of the page behind nginx, each browser kept on its copy (replicas.py), for more
# users than one process serves (README, "Serving it to others"): `make app-replicas REPLICAS=4
# ARGS="--address 0.0.0.0"`; ARGS go to replicas.py, streamlit's options after a `--`.
REPLICAS ?= 2
app-replicas: $(STAMP) nginx
	$(if $(DATA_DIR),LATENT_EXPLORER_DATA=$(DATA_DIR)) $(PY) replicas.py --replicas $(REPLICAS) $(ARGS)

# Debian's nginx-light, for app-replicas and its test
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx-light >/dev/null; }

# Debian's chromium for the browser tests (Playwright's own browser download does not work offline).
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) chromium nginx lint
	$(PY) -m pytest -q

# The suite on a busy machine: `make test` BUSY_RUNS times in a row in a fresh clone of HEAD,
# while another process keeps one core busy the whole time; stops at the first failure.
BUSY_RUNS ?= 3
test-busy:
	@clone=$$(mktemp -d) && trap 'kill $$busy 2>/dev/null; rm -rf "$$clone"' EXIT && \
	git clone --quiet "$(CURDIR)" "$$clone/latent-explorer" && \
	{ $(PYTHON) -c "while True: pass" & busy=$$!; } && \
	for run in $$(seq $(BUSY_RUNS)); do \
	  echo "== make test, run $$run of $(BUSY_RUNS), one core busy"; \
	  $(if $(DATA_DIR),LATENT_EXPLORER_DATA=$(abspath $(DATA_DIR))) $(MAKE) -C "$$clone/latent-explorer" test || exit 1; \
	done

# ruff's settings are in pyproject.toml; `$(VENV)/bin/ruff format .` fixes what format --check finds
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The bundled model; DATA_DIR defaults to ../shared/data/mnist. One thread, as it was trained:
# deterministic, so on the same kind of CPU it gives the committed weights bit for bit; more
# threads are faster and round differently. Two copies of the printed digits of 11 typefaces
# join MNIST's training split, so digits from outside MNIST decode as themselves (docs/model-notes.md).
train: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m training train --out checkpoints/mnist-z8 --epochs 90 --weight-decay 0.1 \
	  --printed-digits 2 $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) -m training evaluate checkpoints/mnist-z8 --write $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) -m training atlas checkpoints/mnist-z8 $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) -m training sampler checkpoints/mnist-z8 --components 100 $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# The one below trains on two threads, as its bundled model was: deterministic too, so on the
# same kind of CPU it gives its committed weights bit for bit.
# The bundled Fashion-MNIST model (Debian's dataset-fashion-mnist, or downloaded to the user cache).
train-fashion: $(STAMP)
	$(PY) -m training train --dataset fashion-mnist --out checkpoints/fashion-z8 --epochs 30
	$(PY) -m training evaluate checkpoints/fashion-z8 --write
	$(PY) -m training atlas checkpoints/fashion-z8
	$(PY) -m training sampler checkpoints/fashion-z8 --components 100

# The bundled conditional VAE: the class is given, so the latent holds the style. One thread,
# as it was trained, with 5 copies of the printed digits.
train-cvae: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m training train --conditional --out checkpoints/mnist-cvae-z8 --epochs 20 \
	  --printed-digits 5 $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) -m training evaluate checkpoints/mnist-cvae-z8 --write $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) -m training atlas checkpoints/mnist-cvae-z8 $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) -m training sampler checkpoints/mnist-cvae-z8 $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# The bundled RGB model: the Noto emoji of npm's emoji-datasource-google@16.0.0 (fetched by
# `npm pack`, kept in the user cache), 3,781 images of 64 × 64 in nine categories, every
# skin-tone variant of an emoji on the same side of the split. One thread, as it was trained.
EMOJI_DIR ?= data/emoji
train-emoji: $(STAMP)
	$(PY) -m training emoji $(EMOJI_DIR)
	OMP_NUM_THREADS=1 $(PY) -m training train --dataset folder --data-dir $(EMOJI_DIR) --image-size 64 --channels 3 \
	  --conv-channels 32,64,128,128 --out checkpoints/emoji-rgb-z8 --epochs 100 --eval-every 10
	OMP_NUM_THREADS=1 $(PY) -m training evaluate checkpoints/emoji-rgb-z8 --write
	OMP_NUM_THREADS=1 $(PY) -m training atlas checkpoints/emoji-rgb-z8
	OMP_NUM_THREADS=1 $(PY) -m training sampler checkpoints/emoji-rgb-z8 --components 100

# The bundled sharpened decoders: for each VAE a new, larger decoder on its frozen encoder,
# distilled from the VAE's decoder, then trained adversarially (training/sharpen.py), which
# evaluates it; the atlas and the sampler come with the encoder. One thread each, as the bundled
# ones were made, so that they can run side by side.
SHARPEN_RECIPE := --adversarial-start 6000 --eval-every 500
# --seed 1: the best of three seeds to the critic (runs vary; docs/model-notes.md)
sharpen: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m training sharpen checkpoints/mnist-z8 --out checkpoints/mnist-z8-sharp \
	  --steps 10000 --seed 1 $(SHARPEN_RECIPE) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# From step 9,500 a quarter of the adversarial latents are prior draws: a longer phase on mixture
# draws alone let the prior's decodes drift into hybrids (docs/model-notes.md)
sharpen-fashion: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m training sharpen checkpoints/fashion-z8 --out checkpoints/fashion-z8-sharp \
	  --steps 13000 --prior-share 0.25 --prior-start 9500 $(SHARPEN_RECIPE)

# The conditional model's: a CVAE-GAN, its discriminator told the class (a projection term)
sharpen-cvae: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m training sharpen checkpoints/mnist-cvae-z8 --out checkpoints/mnist-cvae-z8-sharp \
	  --steps 10000 $(SHARPEN_RECIPE) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# 64 × 64 in colour, a step takes several times MNIST's: fewer steps, a narrower discriminator
sharpen-emoji: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m training sharpen checkpoints/emoji-rgb-z8 --out checkpoints/emoji-rgb-z8-sharp \
	  --steps 4500 --adversarial-start 3000 --disc-width 16 --eval-every 500

# Anomaly detection, both ways round: the AUROCs in the README.
anomaly: $(STAMP)
	$(PY) -m training anomaly checkpoints/mnist-z8 --ood fashion-mnist $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) -m training anomaly checkpoints/fashion-z8 --ood mnist $(if $(DATA_DIR),--ood-data-dir $(DATA_DIR))

# On a GPU, train_speed.py compares CUDA-graph and kernel-by-kernel epochs with the tutorial loop
# and times GPU_RECIPE to the bundled model's quality; on a CPU, the CPU table, with CPU_RECIPE
# (the one-epoch recipe: batch 256 from a Kaiming start) in its pairs against the tutorial.
# gpu_variants.py measures layout, cudnn.benchmark and torch.compile on a GPU (on a CPU it says so
# and stops). Results: bench/results/, docs/benchmarks.md.
GPU_RECIPE := --recipe fast
CPU_RECIPE := --batch-size 256 --lr 3e-3 --warmup-steps 25 --init kaiming
bench: $(STAMP) chromium
	$(PY) bench/train_speed.py --quality "$(GPU_RECIPE)" --recipe "$(CPU_RECIPE)" --epochs 2 --target-mse 0.02 \
	  --pairs 5 $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) bench/gpu_variants.py $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) bench/step_ops.py $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) bench/app_latency.py
	$(PY) bench/page_weight.py
	$(PY) bench/map_scale.py
	$(PY) bench/load.py
	$(PY) bench/load_protocol.py
	$(PY) bench/app_latency.py --decoders
	$(PY) bench/realism.py checkpoints/mnist-z8 checkpoints/mnist-z8-sharp $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) bench/realism.py checkpoints/fashion-z8 checkpoints/fashion-z8-sharp --name realism_fashion
	$(PY) bench/realism.py checkpoints/emoji-rgb-z8 checkpoints/emoji-rgb-z8-sharp --name realism_emoji
	$(PY) bench/realism.py checkpoints/mnist-cvae-z8 checkpoints/mnist-cvae-z8-sharp --name realism_cvae \
	  $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) bench/sample_quality.py checkpoints/mnist-z8 checkpoints/mnist-z8-sharp $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) bench/sample_quality.py checkpoints/fashion-z8 checkpoints/fashion-z8-sharp --name sample_quality_fashion
	$(PY) bench/sample_quality.py checkpoints/emoji-rgb-z8 checkpoints/emoji-rgb-z8-sharp --name sample_quality_emoji \
	  --epochs 20
	$(PY) bench/handwriting.py checkpoints/mnist-z8 checkpoints/mnist-z8-sharp $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) bench/atlas_scale.py checkpoints/mnist-z8 $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) bench/score_speed.py checkpoints/mnist-z8 $(if $(DATA_DIR),--data-dir $(DATA_DIR))
	$(PY) bench/summary.py

# Refresh the vendored onnxruntime-web (the in-browser decoder's runtime); needs npm and a network.
ORT_VERSION := 1.30.0
vendor-ort:
	tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent onnxruntime-web@$(ORT_VERSION) && tar xzf onnxruntime-web-$(ORT_VERSION).tgz) && \
	cp $$tmp/package/dist/ort.wasm.min.mjs $$tmp/package/dist/ort-wasm-simd-threaded.mjs \
	   $$tmp/package/dist/ort-wasm-simd-threaded.wasm static/ort/ && rm -rf $$tmp

# Refresh the vendored map library (regl-scatterplot and d3-scale, bundled by esbuild into one ES
# module from frontend/scatter_entry.js); needs npm and a network.
SCATTER_PACKAGES := regl-scatterplot@1.16.0 d3-scale@4.0.2 esbuild@0.28.2
vendor-scatter:
	tmp=$$(mktemp -d) && (cd $$tmp && npm init -y >/dev/null && npm install --silent --no-audit --no-fund $(SCATTER_PACKAGES)) && \
	cp frontend/scatter_entry.js $$tmp/entry.js && \
	(cd $$tmp && node_modules/.bin/esbuild entry.js --bundle --format=esm --minify --legal-comments=eof \
	   --outfile=regl-scatterplot.mjs) && cp $$tmp/regl-scatterplot.mjs static/scatter/ && rm -rf $$tmp

clean:
	rm -rf $(VENV) .pytest_cache
