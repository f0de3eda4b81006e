#!/usr/bin/env bash
# Screenshots of the API's documentation pages, taken by headless Chromium that may reach 127.0.0.1 and
# nothing else, so they show what a user without network access sees:
#   docs/api-docs.png   Swagger UI at /docs
#   docs/api-redoc.png  ReDoc at /redoc
# It runs the API process alone (uvicorn on the app factory, as `gacd serve` does, on a free port, with
# a throwaway key): the documentation pages need neither Redis nor a worker.
#
# Usage: docs/screenshot.sh            (needs Chromium: apt-get install chromium)
#        PYTHON=/path/to/python docs/screenshot.sh   (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$CHROMIUM" ] || { echo "needs Chromium (apt-get install chromium)" >&2; exit 1; }

tmp=$(mktemp -d)
api=""
cleanup() {
    [ -z "$api" ] || kill "$api" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { "$PYTHON" -c 'from service.launch.embedded import free_port; print(free_port())'; }
port=$(free_port)
url="http://127.0.0.1:$port"

env -u GACD_API_KEYS_FILE \
    GACD_API_KEYS="screenshot-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')=docs" \
    GACD_REDIS_URL="redis://127.0.0.1:$(free_port)/0" \
    GACD_ARTIFACT_ROOT="$tmp/artifacts" \
    PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" -m uvicorn service.api.app:create_app --factory --host 127.0.0.1 --port "$port" \
    >"$tmp/api.log" 2>&1 &
api=$!

for _ in $(seq 150); do
    "$PYTHON" -c "import httpx, sys; sys.exit(httpx.get('$url/healthz', timeout=1).status_code != 200)" 2>/dev/null && break
    kill -0 "$api" 2>/dev/null || { cat "$tmp/api.log" >&2; exit 1; }
    sleep 0.2
done

# Host names resolve to nothing and any other address goes to a proxy that is not there (Chromium never
# proxies the loopback): a page that needs a CDN stays blank here.
shoot() {
    "$CHROMIUM" --headless --disable-gpu --no-sandbox --hide-scrollbars \
        --user-data-dir="$tmp/profile" \
        --host-resolver-rules="MAP * ~NOTFOUND , EXCLUDE 127.0.0.1" \
        --proxy-server="http://127.0.0.1:$(free_port)" \
        --window-size=1280,1600 --virtual-time-budget=15000 \
        --screenshot="$PWD/$2" "$url$1" 2>"$tmp/chromium.log" || { cat "$tmp/chromium.log" >&2; exit 1; }
    echo "$2 <- $url$1"
}
shoot /docs docs/api-docs.png
shoot /redoc docs/api-redoc.png
