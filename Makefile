# Self-installing entry points: each target creates .venv and installs jaxnets into it
# when the venv is missing or pyproject.toml changed, then runs. The install also compiles the
# oneDNN kernels of jaxnets.native (a few seconds with g++; where that cannot be done it says
# why and the pure JAX path runs), again whenever their sources change.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Share compiled XLA programs between runs and processes (tests, experiments).
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0.5

.PHONY: install train test test-all test-gpu lint bench fingerprints torch-references mutate results readme clean

install: $(STAMP)

$(STAMP): pyproject.toml $(wildcard jaxnets/native/src/*)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m jaxnets.native build --optional
	@touch $(STAMP)

train: $(STAMP)
	$(BIN)/python experiments/digits.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m ''

# Registry-wide model tests on whatever accelerator JAX sees (GPU/TPU); the
# accelerator-marked tests skip with a reason when only the CPU is present.
test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m '' tests/test_models.py

lint: $(STAMP)
	$(BIN)/ruff check jaxnets experiments benchmarks tests
	$(BIN)/ruff format --check jaxnets experiments benchmarks tests

# Benchmarks compare against PyTorch's CPU wheel (pinned; see pyproject [torch]), all through
# one driver (benchmarks/run.py; `--help` lists every flag): the MLP, the conv nets (LeNet-5,
# ResNet-18) and the LSTM on the CPU -> benchmarks/results/{mlp,cnn,rnn}.json; the vmapped
# ensemble (ensemble.json); the cost of partitioning one step over 8 virtual CPU devices vs 1
# (partition.json). On an NVIDIA GPU:
# $(BIN)/python -m benchmarks.run --cases resnet18 lstm partition --device gpu
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet 'torch==2.13.0'
	$(BIN)/python -m benchmarks.run --out benchmarks/results

# Record the output fingerprints of every registered model (tests/fingerprints.json), after an
# intended change of a model's function; tests/test_models.py compares every model with them.
fingerprints: $(STAMP)
	$(BIN)/python tests/fingerprints.py

# Record PyTorch's outputs for tests/test_interop.py (tests/torch_references/<case>.npz), after a
# change of a case or of the weights it draws; `make torch-references CASES="lenet5 resnet18"`
# records some. Needs torch (CI has none: the test compares jaxnets with these files); when
# torchvision does not import, its model files are read from its wheel (see the script).
torch-references: $(STAMP)
	$(BIN)/python -m pip install --quiet 'torch==2.13.0'
	$(BIN)/python tests/torch_references.py $(CASES)

# Mutation testing (issue 15), not part of `make test`: mutmut 3 (pinned in pyproject's [mutate]
# extra) mutates the core numeric modules and runs, per mutant, the tests that reach the mutated
# function (pyproject [tool.mutmut]). Niced, two workers. Results are kept in mutants/: a rerun
# only checks new mutants (rm -rf mutants to start afresh). Then the score (killed / non-
# equivalent mutants, per module; fails under 90%) and each survivor's diff. All ~2,600 mutants
# take hours on 2 cores; `make mutate MUTANTS="jaxnets.losses.* jaxnets.optim.*"` (re)checks some.
mutate: $(STAMP)
	@$(BIN)/python -c 'import importlib.metadata as m; assert m.version("mutmut")[:2] == "3."' \
		2>/dev/null || $(BIN)/python -m pip install --quiet 'mutmut>=3,<4'
	JAX_COMPILATION_CACHE_DIR=$(CURDIR)/mutants/jax-cache nice -n 10 $(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/python tests/mutation_score.py

# Record each experiment's newest full-size run (runs/<name>/<time>/summary.json) as the
# committed experiments/results/<name>.json; `make results NAMES="digits xor"` records some.
results: $(STAMP)
	$(BIN)/python -m jaxnets.experiment record $(NAMES)

# Regenerate README's model, results and benchmark tables from the registry, the committed
# experiments/results/*.json and benchmarks/results/{mlp,cnn}.json (and
# rnn.json, ensemble.json, cnn_gpu.json and rnn_gpu.json when a run left them).
readme: $(STAMP)
	$(BIN)/python -m jaxnets.experiment readme README.md
	$(BIN)/python -m benchmarks.readme_table benchmarks/results/mlp.json \
		benchmarks/results/cnn.json $(wildcard benchmarks/results/rnn.json \
		benchmarks/results/ensemble.json benchmarks/results/partition.json \
		benchmarks/results/cnn_gpu.json benchmarks/results/rnn_gpu.json \
		benchmarks/results/partition_gpu.json) --readme README.md

clean:
	rm -rf $(VENV) .cache runs .pytest_cache
