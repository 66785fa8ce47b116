#!/usr/bin/env bash
# Set up mner and tag the example posts with the model that ships in the package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train,demo
.venv/bin/mner demo "$@"
