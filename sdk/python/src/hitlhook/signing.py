"""Webhook signatures, as the hitlhook server verifies them.

Two schemes are produced, and the server accepts either:

* the seed scheme: ``X-CrewAI-Signature: sha256=<hex HMAC-SHA256(secret, body)>``; with
  ``X-CrewAI-Timestamp: <unix seconds>`` the signed message is ``"{timestamp}.{body}"``;
* Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``, where the
  key is the base64-decoded part after ``whsec_`` for such secrets, else the secret's UTF-8.

Always sign the exact bytes you send: never re-serialise JSON between signing and sending.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import uuid
from typing import Mapping

__all__ = [
    "seed_signature",
    "standard_webhooks_key",
    "standard_webhooks_signature",
    "sign_headers",
    "new_webhook_id",
]


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret if isinstance(secret, bytes) else secret.encode("utf-8")


def seed_signature(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-CrewAI-Signature`` value: ``sha256=<hex>``.

    Args:
        secret: the shared ``WEBHOOK_SECRET``; its UTF-8 bytes are the HMAC key (no
            ``whsec_`` decoding in this scheme).
        body: the exact request body.
        timestamp: if given, the message is ``"{timestamp}.{body}"`` and the request must
            carry ``X-CrewAI-Timestamp: {timestamp}``.
    """
    message = body if timestamp is None else f"{int(timestamp)}.".encode("ascii") + body
    digest = hmac.new(_secret_bytes(secret), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def standard_webhooks_key(secret: str | bytes) -> bytes:
    """The HMAC key for Standard Webhooks.

    ``whsec_<base64>`` secrets are base64-decoded (missing padding is tolerated); any other
    secret is used as its UTF-8 bytes, matching the hitlhook server.
    """
    raw = _secret_bytes(secret)
    if raw.startswith(b"whsec_"):
        encoded = raw[len(b"whsec_") :]
        encoded += b"=" * (-len(encoded) % 4)
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("secret starts with whsec_ but the rest is not valid base64") from exc
    return raw


def standard_webhooks_signature(secret: str | bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>``."""
    if "." in webhook_id:
        raise ValueError("webhook-id must not contain '.'")
    message = f"{webhook_id}.{int(timestamp)}.".encode("utf-8") + body
    digest = hmac.new(standard_webhooks_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def new_webhook_id() -> str:
    """A fresh ``webhook-id`` (``msg_<32 hex>``). Reuse it for every retry of one message."""
    return f"msg_{uuid.uuid4().hex}"


def sign_headers(
    secret: str | bytes,
    body: bytes,
    *,
    webhook_id: str,
    timestamp: int | None = None,
    seed_timestamp: bool = True,
) -> Mapping[str, str]:
    """All signature headers for one delivery attempt of ``body``.

    Args:
        secret: the shared secret.
        body: the exact bytes to send.
        webhook_id: the message's stable id; the same id on a retry makes the server answer
            the original result instead of storing a duplicate.
        timestamp: unix seconds, default now. Sign again on each attempt so a retry after a
            long outage is not refused as stale.
        seed_timestamp: also send ``X-CrewAI-Timestamp`` and sign the seed header over
            ``"{ts}.{body}"`` (replay-protected). ``False`` signs the body alone, exactly
            like the seed README, for receivers that only know that form.
    """
    ts = int(time.time()) if timestamp is None else int(timestamp)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": standard_webhooks_signature(secret, webhook_id, ts, body),
    }
    if seed_timestamp:
        headers["X-CrewAI-Timestamp"] = str(ts)
        headers["X-CrewAI-Signature"] = seed_signature(secret, body, ts)
    else:
        headers["X-CrewAI-Signature"] = seed_signature(secret, body)
    return headers
