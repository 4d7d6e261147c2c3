#!/usr/bin/env bash
# Creates the small virtualenv of the email tests' SMTP server (aiosmtpd) and prints the path of
# its python. Idempotent: an existing venv with aiosmtpd is reused.
#   usage: setup.sh [VENV_DIR]   (default: target/smtp-venv at the repository root)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
venv="${1:-$root/target/smtp-venv}"
if ! "$venv/bin/python" -c "import aiosmtpd" >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
fi
echo "$venv/bin/python"
