#!/usr/bin/env bash
# The README's test command, run by CI (.ci/run) on a clean clone. On every run it:
#  1. apt-installs Debian's chromium and postgresql when they are missing;
#  2. builds a FRESH virtual environment (.venv-test/) from requirements-dev.txt + the package,
#     so a package missing from the requirement files fails here, not on a user's machine
#     (pip's cache and its config, e.g. find-links for the torch wheel, are shared as usual);
#  3. checks statically that the code runs on the Space's Python 3.10 (scripts/check_py310.py);
#  4. starts the app once from an environment built from requirements.txt alone, in simulated
#     Space mode with OAuth configured, and checks that it serves (scripts/space_check.sh);
#  5. runs pytest in the fresh environment in two worker processes (exit 5, "no tests collected",
#     fails the run).
# Usage: bash scripts/test.sh [pytest args]      e.g. bash scripts/test.sh tests/test_imaging.py
# DEPTHWEB_SKIP_SPACE_CHECK=1 skips step 4 (quick local runs only).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
start=$SECONDS
VENV=$(fresh_venv "$ROOT/.venv-test")
"$VENV/bin/python" -m pip install -q --no-compile -r requirements-dev.txt -e .
install_onnx2torch "$VENV"
echo "test.sh: fresh test environment installed in $((SECONDS - start)) s"

"$VENV/bin/python" scripts/check_py310.py

if [ "${DEPTHWEB_SKIP_SPACE_CHECK:-0}" != 1 ]; then
  bash scripts/space_check.sh
fi

export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# Two worker processes (pytest-xdist), each test file on one of them (module fixtures such as a
# launched app are started once); most of the suite waits on servers, browsers and databases,
# so two workers keep both cores busy. DEPTHWEB_TEST_WORKERS=0 runs it in one process.
workers=${DEPTHWEB_TEST_WORKERS:-2}
xdist=()
[ "$workers" = 0 ] || xdist=(-n "$workers" --dist loadfile)
# pytest exits 5 when it collected no test: set -e turns that into a failure, never a pass.
"$VENV/bin/python" -m pytest "${xdist[@]}" "$@"
