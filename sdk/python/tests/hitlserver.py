"""Start and stop the real ``hitlhook`` binary for tests (free port, temp SQLite)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[3]
LISTENING = re.compile(r"listening on (http://[0-9.:\[\]a-z]+)")


def find_binary() -> Path | None:
    """``HITLHOOK_BIN``, else ``<repo>/target/debug/hitlhook``, else ``.../release/hitlhook``."""
    env = os.environ.get("HITLHOOK_BIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    for candidate in (REPO / "target" / "debug" / "hitlhook", REPO / "target" / "release" / "hitlhook"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class HitlServer:
    """One ``hitlhook serve`` process on a data directory; restartable on the same port."""

    def __init__(self, binary: Path, data_dir: Path, *, secret: str, api_key: str) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.secret = secret
        self.api_key = api_key
        self.url: str | None = None
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            WEBHOOK_SECRET=self.secret,
            WEBHOOK_API_KEY=self.api_key,
            DATABASE_URL=f"sqlite://{self.data_dir}/hitlhook.db",
        )
        env.setdefault("RUST_LOG", "warn")
        return env

    def start(self, port: int | None = None, timeout: float = 30.0) -> "HitlServer":
        """Start (port 0 picks a free one) and wait for ``/ready``."""
        bind_port = port if port is not None else 0
        self.starts += 1
        log_path = self.data_dir / f"server-{self.starts}.stderr.log"
        self._stderr = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--bind", f"127.0.0.1:{bind_port}", "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self.env(),
        )
        found: list[str] = []
        ready = threading.Event()

        def read_stdout() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace")
                m = LISTENING.search(line)
                if m and not found:
                    found.append(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(timeout) or not found:
            self.stop()
            raise RuntimeError(f"hitlhook did not print its address; stderr in {log_path}:\n{log_path.read_text()[-2000:]}")
        self.url = found[0].rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/ready", timeout=2.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"hitlhook at {self.url} never became ready; stderr:\n{log_path.read_text()[-2000:]}")

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) and wait."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        self._stderr.close()

    def restart(self, down_for: float = 0.0, kill: bool = True) -> None:
        """Kill the process, stay down ``down_for`` seconds, start on the same port and data."""
        port = self.port
        self.stop(kill=kill)
        if down_for:
            time.sleep(down_for)
        self.start(port=port)

    def decide(self, checkpoint_id: str, action: str, feedback: str | None = None, **extra: str) -> httpx.Response:
        """Decide with a plain HTTP POST to ``/webhook/feedback`` using the admin key."""
        body = {"checkpoint_id": checkpoint_id, "action": action, **extra}
        if feedback is not None:
            body["feedback"] = feedback
        return httpx.post(
            f"{self.url}/webhook/feedback",
            json=body,
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=10.0,
        )

    def get(self, path: str, **params: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params or None, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30.0)

    def wait_for_pending(self, kickoff_id: str | None = None, timeout: float = 20.0, exclude: set[str] | None = None) -> dict:
        """Poll ``/v1/checkpoints?status=pending`` until one shows up; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            params: dict[str, object] = {"status": "pending"}
            if kickoff_id:
                params["kickoff_id"] = kickoff_id
            resp = self.get("/v1/checkpoints", **params)
            resp.raise_for_status()
            items = [c for c in resp.json()["items"] if c["checkpoint_id"] not in (exclude or set())]
            if items:
                return items[0]
            time.sleep(0.05)
        raise AssertionError(f"no pending checkpoint for {kickoff_id} within {timeout}s")


def missing_binary_message() -> str:
    return (
        "\n" + "!" * 78 + "\n"
        "!! hitlhook binary not found: set HITLHOOK_BIN or build it (cargo build) so that\n"
        f"!! {REPO / 'target/debug/hitlhook'} exists. Server integration tests are SKIPPED.\n"
        + "!" * 78 + "\n"
    )


def python_exe() -> str:
    return sys.executable
