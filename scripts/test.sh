#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. Rust: unit tests, the store contract and the HTTP API tests, on SQLite and PostgreSQL
#      (the email tests send real mail to an aiosmtpd server in its own small virtualenv);
#   2. the Python SDK against the real server binary and the real crewai package;
#   3. the web inbox end to end in headless Chromium (Debian's /usr/bin/chromium) via Playwright.
# Peers the tests need (PostgreSQL) are started if installed; see scripts/ensure-postgres.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-postgres.sh

echo "==> SMTP test server (aiosmtpd in target/smtp-venv)"
HITLHOOK_TEST_SMTP_PYTHON="$(crates/hitlhook-server/tests/smtp/setup.sh)"
export HITLHOOK_TEST_SMTP_PYTHON

echo "==> building"
cargo build --bins

echo "==> Rust tests"
cargo test --workspace

echo "==> Python SDK tests (real server, real crewai)"
HITLHOOK_BIN="$PWD/target/debug/hitlhook" sdk/python/run-tests.sh

echo "==> Web inbox in headless Chromium (real server, real browser)"
HITLHOOK_BIN="$PWD/target/debug/hitlhook" tests/browser/run.sh

echo "==> all tests passed"
