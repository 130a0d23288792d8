#!/usr/bin/env bash
# Start the app the way a Hugging Face Space does, from an environment built from requirements.txt
# alone (plus the `spaces` package the Space runtime provides), with OAuth configured as a Space
# with `hf_oauth: true` gets it, and check that `/` answers HTTP 200 within a bounded time.
# The app is stopped afterwards. Catches: a runtime package missing from requirements.txt, an
# import that only works in the test environment, a start-up crash in Space mode.
# Usage: bash scripts/space_check.sh   (DEPTHWEB_SPACE_START_TIMEOUT, default 180 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/venv.sh
source scripts/venv.sh

start=$SECONDS
VENV=$(fresh_venv "$ROOT/.venv-space")
"$VENV/bin/python" -m pip install -q --no-compile -r requirements.txt spaces
echo "space_check: requirements.txt environment installed in $((SECONDS - start)) s"

work=$(mktemp -d)
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log="$work/app.log"
# The app runs from the source tree (as on a Space: no `pip install -e .` there).
env -i PATH="$PATH" HOME="$work/home" LANG=C.UTF-8 PYTHONPATH="$ROOT" PYTHONUNBUFFERED=1 \
  SYSTEM=spaces SPACE_ID=ci/depthweb SPACE_HOST=ci-depthweb.hf.space SPACE_AUTHOR_NAME=ci \
  OAUTH_CLIENT_ID=ci-client-id OAUTH_CLIENT_SECRET=ci-client-secret OAUTH_SCOPES="openid profile" \
  OPENID_PROVIDER_URL=https://huggingface.co \
  GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 GRADIO_SERVER_NAME=127.0.0.1 \
  GRADIO_SERVER_PORT="$port" GRADIO_TEMP_DIR="$work/gradio" \
  DEPTHWEB_DATA_DIR="$work/data" DEPTHWEB_OUTPUT_DIR="$work/outputs" \
  "$VENV/bin/python" app.py >"$log" 2>&1 &
pid=$!
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap stop EXIT

limit=${DEPTHWEB_SPACE_START_TIMEOUT:-180}
t0=$SECONDS
code=000
while [ $((SECONDS - t0)) -lt "$limit" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "space_check: the app exited during start-up in Space mode; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/" || true)
  [ "$code" = 200 ] && break
  sleep 1
done
if [ "$code" != 200 ]; then
  echo "space_check: / did not answer 200 within ${limit} s (last status $code); app log:" >&2
  tail -n 60 "$log" >&2
  exit 1
fi
echo "space_check: Space-mode app served / (HTTP 200) $((SECONDS - t0)) s after start"
# The review path shows "Sign in with Hugging Face" on a fresh Space (no database yet: the app
# creates it, since a Space has no command line).
review=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "http://127.0.0.1:$port/review/" || true)
if [ "$review" != 200 ]; then
  echo "space_check: the review path /review/ answered $review, not 200; app log:" >&2
  tail -n 60 "$log" >&2
  exit 1
fi
echo "space_check: /review/ (the sign-in page) answered 200"
