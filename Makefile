# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench venv clean

venv: $(STAMP)

# torch is installed first, by itself and pinned, so that nothing can pull a CUDA build.
# The web, onnx, browser and hf extras (about 465 MB: playwright 165, transformers and its
# dependencies 165, onnxruntime 68, onnx 31) are installed too, so that `make test` runs the web,
# export, browser and pretrained-text-encoder tests; the browser tests also need the system's
# chromium (apt-get install -y chromium) and are skipped without it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test,web,onnx,browser,tensorboard,hf]'
	touch $(STAMP)

# The VAE first: its grids are recognisable digits after a few hundred steps (seconds), so the
# first picture comes early; then the class-conditional GAN, one row per digit (docs/benchmarks.md).
demo: $(STAMP)
	@echo "Training pictures appear as they are drawn: runs/demo-vae/samples/latest.png, then runs/demo-cgan/samples/latest.png"
	$(PY) -m genforge train --preset demo-vae --out runs/demo-vae
	$(PY) -m genforge train --preset demo-cgan --out runs/demo-cgan
	$(PY) -m genforge sample --run runs/demo-vae --n 64 --seed 0 --out runs/demo-vae/samples-seed0.png
	$(PY) -m genforge sample --run runs/demo-cgan --class all --n 100 --seed 0 --out runs/demo-cgan/samples-seed0.png
	@echo
	@echo "Pictures written:"
	@echo "  VAE samples:               runs/demo-vae/samples-seed0.png (training grids in runs/demo-vae/samples/)"
	@echo "  conditional GAN, one row per digit 0-9: runs/demo-cgan/samples-seed0.png (training grids in runs/demo-cgan/samples/)"

# The linter first (seconds), then the suite.
test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -q -n auto

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Training and sampling throughput against the PyTorch examples' way, side by side (docs/performance.md).
# Narrow it with e.g. BENCH_ARGS="--cases dcgan-32x32x3-b64 --repeats 5".
bench: $(STAMP)
	$(PY) benchmarks/bench_train.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs
