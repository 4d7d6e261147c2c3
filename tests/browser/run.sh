#!/usr/bin/env bash
# End-to-end tests of the web inbox: the real hitlhook binary, driven in Debian's headless
# Chromium by Playwright for Python. Creates tests/browser/.venv on first run. Screenshots go to
# test-artifacts/screenshots/. Extra arguments go to pytest.
#   HITLHOOK_BIN   the binary to test (default: target/debug/hitlhook)
# Without /usr/bin/chromium the tests are skipped loudly, except under CI=true where that fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
ci=false
case "${CI:-}" in true|1) ci=true ;; esac

if [ ! -x /usr/bin/chromium ]; then
    if $ci; then
        echo "FAIL: /usr/bin/chromium is missing; install it with: apt-get install -y chromium" >&2
        exit 1
    fi
    echo "!!!! SKIPPING browser tests: /usr/bin/chromium is missing (apt-get install -y chromium)" >&2
    exit 0
fi

export HITLHOOK_BIN="${HITLHOOK_BIN:-$root/target/debug/hitlhook}"
if [ ! -x "$HITLHOOK_BIN" ]; then
    echo "FAIL: no hitlhook binary at $HITLHOOK_BIN; run: cargo build --bins" >&2
    exit 1
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# Reinstall only when the requirements change.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    # Playwright's Python wheel carries its driver; the browser is Debian's, never downloaded.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$venv/bin/python" -m pip install -q \
        --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

export HITLHOOK_SCREENSHOTS="$root/test-artifacts/screenshots"
mkdir -p "$HITLHOOK_SCREENSHOTS"
cd "$here"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
