"""A real SMTP server on loopback (aiosmtpd) whose replies can be scripted: the tests' mail sink."""

from __future__ import annotations

import email
import socket
import threading
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPCatcher:
    """A real aiosmtpd server whose replies to DATA / RCPT can be scripted.

    ``data_replies``: consumed one per DATA command; ``None`` = accept (250), a string = that
    reply (e.g. "451 4.3.0 try again"), ``"DROP"`` = close the connection without answering.
    ``refuse_rcpt``: addresses answered with 550 at RCPT time."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.data_replies: list[str | None] = []
        self.refuse_rcpt: set[str] = set()
        self.data_calls = 0
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_rcpt:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.data_calls += 1
            reply = self.data_replies.pop(0) if self.data_replies else None
        if reply == "DROP":
            server.transport.close()
            return "421 closing"  # never reaches the client: the transport is gone
        if reply is not None:
            return reply
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted for delivery"

    def start(self) -> "SMTPCatcher":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
