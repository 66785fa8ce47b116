#!/usr/bin/env bash
# Set up mner with its test, transformer, mpnet, ray and spacy extras, check the style (ruff format --check, ruff
# check) and run the
# whole test suite (slow tests included; those that need ../shared/ skip with a reason where it is absent).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test: setting up .venv with the train, test, transformer, mpnet, ray and spacy extras" >&2
bash scripts/setup.sh train,test,transformer,mpnet,ray,spacy
echo "test: checking the style (ruff format --check, ruff check)" >&2
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/ruff check src tests benchmarks
echo "test: running the test suite (pytest; the slow tests take several minutes)" >&2
set +e
.venv/bin/python -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
