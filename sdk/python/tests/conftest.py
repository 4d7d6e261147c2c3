"""Test setup: CrewAI telemetry off, a private HOME and storage dir, no network except the
loopback, and a real hitlhook server per test module."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterator

# Before anything imports crewai.
_HOME = tempfile.mkdtemp(prefix="hitlhook-test-home-")
os.environ.update(
    CREWAI_DISABLE_TELEMETRY="true",
    OTEL_SDK_DISABLED="true",
    CREWAI_TRACING_ENABLED="false",
    CREWAI_DISABLE_TRACKING="true",
    HOME=_HOME,
    CREWAI_STORAGE_DIR=os.path.join(_HOME, "crewai-storage"),
)
for _name in ("HITLHOOK_URL", "HITLHOOK_API_KEY", "HITLHOOK_SECRET", "WEBHOOK_API_KEY", "WEBHOOK_SECRET", "WEBHOOK_BASE_URL"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from hitlserver import HitlServer, find_binary, missing_binary_message  # noqa: E402

SECRET = "test-secret-0123456789abcdef"
API_KEY = "test-admin-key-0123456789abcdef"


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    return host in ("localhost", "::1") or host.startswith("127.")


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    """Refuse any connection or lookup outside the loopback, so a test that would reach
    the internet (telemetry, a real LLM) fails loudly instead."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(host):
            raise OSError(f"test network guard: connection to {address!r} refused")
        return real_connect(self, address)  # type: ignore[arg-type]

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host is not None and not _is_loopback(host):
            raise socket.gaierror(f"test network guard: lookup of {host!r} refused")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_getaddrinfo  # type: ignore[assignment]
    yield
    socket.socket.connect = real_connect  # type: ignore[method-assign]
    socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]


def require_binary() -> Path:
    binary = find_binary()
    if binary is None:
        message = missing_binary_message()
        sys.stderr.write(message)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and the hitlhook binary is missing" + message, pytrace=False)
        pytest.skip("hitlhook binary not found (set HITLHOOK_BIN or build target/debug/hitlhook)")
    return binary


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HitlServer]:
    """A real hitlhook on a free port with a fresh SQLite database for this test module."""
    binary = require_binary()
    srv = HitlServer(binary, tmp_path_factory.mktemp("hitlhook-data"), secret=SECRET, api_key=API_KEY)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture()
def client(server: HitlServer) -> Iterator["object"]:
    from hitlhook import Backoff, HitlClient

    with HitlClient(server.url, api_key=API_KEY, secret=SECRET, backoff=Backoff(initial=0.05, maximum=0.5), poll_wait=10) as c:
        yield c


LATENCIES: list[float] = []
"""Decision -> crew latencies measured by test_restart.py, printed in the summary."""


def pytest_terminal_summary(terminalreporter: "pytest.TerminalReporter") -> None:
    if LATENCIES:
        ms = sorted(x * 1000 for x in LATENCIES)
        terminalreporter.write_line(
            f"hitlhook decision -> waiting crew latency over {len(ms)} runs: "
            f"median {ms[len(ms) // 2]:.1f} ms, min {ms[0]:.1f} ms, max {ms[-1]:.1f} ms"
        )


def pytest_report_header(config: pytest.Config) -> str:
    binary = find_binary()
    return f"hitlhook binary: {binary if binary else 'NOT FOUND (server tests will skip, or fail with CI=true)'}"
