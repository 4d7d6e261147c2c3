#!/usr/bin/env bash
# Run the hitlhook Python package's tests: creates sdk/python/.venv if missing, installs the
# package with its crewai and test extras, and runs pytest. Extra arguments go to pytest.
# Server tests use the binary from HITLHOOK_BIN, else target/debug/hitlhook, else
# target/release/hitlhook; with CI=true a missing binary fails instead of skipping.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[crewai,test]"
export CREWAI_DISABLE_TELEMETRY=true OTEL_SDK_DISABLED=true CREWAI_TRACING_ENABLED=false
exec "$venv/bin/python" -m pytest -q "$@"
