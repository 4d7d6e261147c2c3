"""A missing server binary skips loudly locally and fails under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

PROBE = '''
def test_needs_server(server):
    assert server.url
'''


def run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "conftest.py").write_text((HERE / "conftest.py").read_text())
    (tmp_path / "hitlserver.py").write_text((HERE / "hitlserver.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["HITLHOOK_BIN"] = str(tmp_path / "no-such-binary")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path / "test_probe.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def test_missing_binary_skips_loudly(tmp_path: Path) -> None:
    proc = run_probe(tmp_path, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout
    assert "hitlhook binary not found" in proc.stdout + proc.stderr


def test_missing_binary_fails_under_ci(tmp_path: Path) -> None:
    proc = run_probe(tmp_path, "true")
    assert proc.returncode != 0
    assert "CI=true and the hitlhook binary is missing" in proc.stdout
