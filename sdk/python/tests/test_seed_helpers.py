"""configure_crew_webhooks builds the AMP kickoff webhook settings."""

from __future__ import annotations

import pytest

from hitlhook import configure_crew_webhooks
from hitlhook.seed import DEFAULT_STREAM_EVENTS


def test_all_settings_point_at_the_ingest_endpoint() -> None:
    cfg = configure_crew_webhooks(webhook_base_url="https://hitl.example.com/", token="ingest-key")
    url = "https://hitl.example.com/webhook/crewai"
    assert cfg["taskWebhookUrl"] == cfg["stepWebhookUrl"] == cfg["crewWebhookUrl"] == url
    assert cfg["webhooks"] == {
        "events": list(DEFAULT_STREAM_EVENTS),
        "url": url,
        "realtime": False,
        "authentication": {"strategy": "bearer", "token": "ingest-key"},
    }
    assert cfg["humanInputWebhook"] == {"url": url, "authentication": {"strategy": "bearer", "token": "ingest-key"}}


def test_options_and_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_API_KEY", "from-env")
    cfg = configure_crew_webhooks("http://localhost:8001", events=["task_completed"], realtime=True, legacy_urls=False, human_input=False)
    assert set(cfg) == {"webhooks"}
    assert cfg["webhooks"]["events"] == ["task_completed"] and cfg["webhooks"]["realtime"] is True
    assert cfg["webhooks"]["authentication"]["token"] == "from-env"
    monkeypatch.delenv("WEBHOOK_API_KEY")
    assert "authentication" not in configure_crew_webhooks("http://x")["webhooks"]
    with pytest.raises(ValueError):
        configure_crew_webhooks("")
