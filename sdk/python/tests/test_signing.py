"""Signatures against published vectors and an independent computation."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from hitlhook import signing


def test_seed_signature_matches_githubs_published_vector() -> None:
    # The same scheme as GitHub's X-Hub-Signature-256; vector from GitHub's docs.
    sig = signing.seed_signature("It's a Secret to Everybody", b"Hello, World!")
    assert sig == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_standard_webhooks_signature_matches_published_vector() -> None:
    # The Standard Webhooks / Svix documentation example.
    sig = signing.standard_webhooks_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_seed_signature_with_timestamp_signs_ts_dot_body() -> None:
    body = '{"event_type":"task.started","note":"ünïcode"}'.encode()
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signing.seed_signature("s3cret", body, 1700000000) == "sha256=" + expected
    assert signing.seed_signature("s3cret", body) == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()


def test_plain_secret_is_used_as_utf8_bytes_for_standard_webhooks() -> None:
    body = b'{"a":1}'
    expected = base64.b64encode(hmac.new("pläin".encode(), b"msg_1.42." + body, hashlib.sha256).digest()).decode()
    assert signing.standard_webhooks_signature("pläin", "msg_1", 42, body) == "v1," + expected


def test_whsec_secret_without_padding_is_accepted() -> None:
    key = bytes(range(24))
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert signing.standard_webhooks_key(unpadded) == key
    with pytest.raises(ValueError):
        signing.standard_webhooks_key("whsec_***not base64***")


def test_webhook_id_with_dot_is_refused() -> None:
    with pytest.raises(ValueError):
        signing.standard_webhooks_signature("k", "a.b", 1, b"{}")


def test_sign_headers_carries_both_schemes_over_the_same_bytes() -> None:
    body = b'{"event_type":"crew.started"}'
    h = signing.sign_headers("k3y", body, webhook_id="msg_abc", timestamp=1700000123)
    assert h["webhook-id"] == "msg_abc"
    assert h["webhook-timestamp"] == "1700000123"
    assert h["webhook-signature"] == signing.standard_webhooks_signature("k3y", "msg_abc", 1700000123, body)
    assert h["X-CrewAI-Timestamp"] == "1700000123"
    assert h["X-CrewAI-Signature"] == "sha256=" + hmac.new(b"k3y", b"1700000123." + body, hashlib.sha256).hexdigest()
    seed_only = signing.sign_headers("k3y", body, webhook_id="msg_abc", timestamp=1, seed_timestamp=False)
    assert "X-CrewAI-Timestamp" not in seed_only
    assert seed_only["X-CrewAI-Signature"] == "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert "k3y" not in repr(h)


def test_new_webhook_ids_are_unique_and_dot_free() -> None:
    ids = {signing.new_webhook_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("msg_") and "." not in i for i in ids)
