"""A real SMTP server (aiosmtpd) for hitlhook's email tests.

Usage: server.py OUT_FILE PORT

Listens on 127.0.0.1:PORT, parses every message it receives with Python's own MIME parser and
appends one JSON object per message to OUT_FILE (envelope, headers, the text and HTML parts).
Prints "READY <port>" once listening; stops when its standard input closes.
"""

import email
import json
import sys
from email import policy

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, out_path):
        self.out_path = out_path

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "content_type": msg.get_content_type(),
            "parts": [part.get_content_type() for part in msg.walk()],
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        with open(self.out_path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def main():
    out_path, port = sys.argv[1], int(sys.argv[2])
    controller = Controller(Recorder(out_path), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"READY {controller.port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
