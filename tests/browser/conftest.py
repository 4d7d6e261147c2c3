"""Fixtures for the inbox's browser tests: the real `hitlhook serve` on a free port with a fresh
data directory, signed webhooks and API calls from Python, and Debian's Chromium driven by
Playwright. Every page records console errors (a CSP violation is one) and fails the test on any.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
SECRET = "browser-test-webhook-secret"
ADMIN_KEY = "hhk_browser_test_admin_key_0123456789abcdef"
SCREENSHOTS = Path(os.environ.get("HITLHOOK_SCREENSHOTS", "../../test-artifacts/screenshots"))
# The flags Chromium needs on a machine without outside network (see the project's env notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Server:
    """A running `hitlhook serve`, with helpers that talk to it as other clients would."""

    def __init__(self, binary: str, data_dir: Path, port: int = 0) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.log = data_dir / "server.log"
        self.process: subprocess.Popen[str] | None = None
        self.base = ""
        self.start(port)

    def start(self, port: int = 0) -> None:
        env = dict(os.environ, WEBHOOK_SECRET=SECRET, WEBHOOK_API_KEY=ADMIN_KEY,
                   HITLHOOK_SWEEP_INTERVAL_MS="200", RUST_LOG="hitlhook_server=info")
        env.pop("DATABASE_URL", None)
        log = open(self.log, "a", encoding="utf-8")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [self.binary, "serve", "--bind", f"127.0.0.1:{port}", "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env,
        )
        found: list[str] = []

        def read() -> None:
            assert self.process and self.process.stdout
            for line in self.process.stdout:
                m = re.search(r"listening on (http://\S+)", line)
                if m and not found:
                    found.append(m.group(1))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 20
        while not found:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hitlhook did not start; log:\n{self.log.read_text()}")
            time.sleep(0.02)
        self.base = found[0]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        """Stops gracefully and starts again on the same port and data."""
        port = self.port
        self.stop()
        self.start(port)

    # -- HTTP as a client --------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, key: str | None = ADMIN_KEY,
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                text = response.read().decode()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode() or "null")

    def send_checkpoint(self, checkpoint_id: str, kickoff_id: str, context: Any,
                        name: str = "review_draft", **extra: Any) -> dict[str, Any]:
        """Sends `checkpoint.required` as CrewAI would: a body signed with X-CrewAI-Signature."""
        body = json.dumps({"event_type": "checkpoint.required", "checkpoint_id": checkpoint_id,
                           "checkpoint_name": name, "kickoff_id": kickoff_id, "context": context,
                           **extra}).encode()
        ts = str(int(time.time()))
        signature = hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        status, receipt = self.request("POST", "/webhook/crewai", key=None, raw=body, headers={
            "X-CrewAI-Signature": f"sha256={signature}", "X-CrewAI-Timestamp": ts})
        assert status == 200, receipt
        return receipt

    def create_key(self, name: str, scope: str) -> str:
        status, body = self.request("POST", "/v1/keys", {"name": name, "scope": scope})
        assert status == 201, body
        return body["key"]


@pytest.fixture
def server() -> Iterator[Server]:
    binary = os.environ.get("HITLHOOK_BIN", "../../target/debug/hitlhook")
    data_dir = Path(tempfile.mkdtemp(prefix="hitlhook-browser-"))
    srv = Server(binary, data_dir)
    yield srv
    srv.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Any]:
    with sync_playwright() as p:
        yield p


@pytest.fixture
def context(playwright_session: Any) -> Iterator[BrowserContext]:
    profile = tempfile.mkdtemp(prefix="hitlhook-chromium-")
    ctx = playwright_session.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1360, "height": 860}, color_scheme="light",
    )
    yield ctx
    ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    pg = context.pages[0] if context.pages else context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}")
          if m.type == "error" and not _expected(m.text) else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.set_default_timeout(10_000)
    yield pg
    assert not problems, "the page reported errors:\n" + "\n".join(problems)


def _expected(text: str) -> bool:
    # Chromium itself logs a refused sign-in (401/403) and, while the server restarts, failed
    # requests and sockets. Anything else (a script error, a CSP violation) fails the test.
    return bool(re.search(r"status of 40[13]|WebSocket connection to .* failed|"
                          r"Failed to load resource: net::ERR_", text))


def shot(page: Page, name: str) -> Path:
    """Saves a screenshot to test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def sign_in(page: Page, server: Server, key: str, name: str = "") -> None:
    page.goto(server.base + "/")
    page.get_by_label("API key").fill(key)
    if name:
        page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#live-status[data-state=live]").wait_for()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
