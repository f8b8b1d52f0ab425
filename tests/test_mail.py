"""pipeline.mail against a real SMTP server on loopback (aiosmtpd), and the outbox adapter."""

from __future__ import annotations

import email
import socket
import time
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from pipeline.errors import PermanentMailError, TransientMailError
from pipeline.mail import OutboxMailer, SMTPMailer, classify_smtp_error, make_mailer

from .conftest import make_settings
from .smtp_catcher import free_port


def _message(to=("a@example.org",)) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["Subject"] = "[mediamon] test: 1 new item"
    msg["From"] = "mediamon@example.org"
    msg["To"] = ", ".join(to)
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("hello")
    return msg


def _smtp_settings(tmp_path, server, **kw):
    return make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=server.port, smtp_from="mediamon@example.org",
                         smtp_retry_wait=0.0, smtp_timeout=5.0, **kw)


def test_smtp_delivers_with_envelope(tmp_path, smtp_server):
    mailer = make_mailer(_smtp_settings(tmp_path, smtp_server))
    assert isinstance(mailer, SMTPMailer)
    msg = _message(("a@example.org", "b@example.org"))
    result = mailer.send(msg, ["a@example.org", "b@example.org"])
    assert result.accepted == ("a@example.org", "b@example.org") and result.attempts == 1
    [(mail_from, rcpts, got)] = smtp_server.messages
    assert mail_from == "mediamon@example.org" and rcpts == ["a@example.org", "b@example.org"]
    assert got["Message-ID"] == msg["Message-ID"] == result.message_id


def test_451_once_then_accepted_delivers_exactly_once(tmp_path, smtp_server):
    smtp_server.data_replies = ["451 4.3.0 greylisted, try again"]
    mailer = SMTPMailer(_smtp_settings(tmp_path, smtp_server))
    result = mailer.send(_message(), ["a@example.org"])
    assert result.attempts == 2
    assert smtp_server.data_calls == 2
    assert len(smtp_server.messages) == 1


def test_transient_exhausted_raises_transient(tmp_path, smtp_server):
    smtp_server.data_replies = ["451 4.3.0 busy"] * 5
    mailer = SMTPMailer(_smtp_settings(tmp_path, smtp_server, smtp_retry_attempts=3))
    with pytest.raises(TransientMailError, match="451"):
        mailer.send(_message(), ["a@example.org"])
    assert smtp_server.data_calls == 3 and smtp_server.messages == []


def test_550_is_permanent_and_not_retried(tmp_path, smtp_server):
    smtp_server.data_replies = ["550 5.7.1 rejected by policy"]
    mailer = SMTPMailer(_smtp_settings(tmp_path, smtp_server, smtp_retry_attempts=5))
    with pytest.raises(PermanentMailError, match="550"):
        mailer.send(_message(), ["a@example.org"])
    assert smtp_server.data_calls == 1


def test_connection_dropped_after_data_is_transient(tmp_path, smtp_server):
    smtp_server.data_replies = ["DROP"]
    mailer = SMTPMailer(_smtp_settings(tmp_path, smtp_server, smtp_retry_attempts=2))
    result = mailer.send(_message(), ["a@example.org"])  # the retry goes through
    assert result.attempts == 2 and len(smtp_server.messages) == 1


def test_all_recipients_refused_is_permanent_some_refused_is_delivered(tmp_path, smtp_server):
    smtp_server.refuse_rcpt = {"gone@example.org"}
    mailer = SMTPMailer(_smtp_settings(tmp_path, smtp_server))
    result = mailer.send(_message(("a@example.org", "gone@example.org")), ["a@example.org", "gone@example.org"])
    assert result.accepted == ("a@example.org",) and "gone@example.org" in result.refused
    assert "550" in result.refused["gone@example.org"]
    with pytest.raises(PermanentMailError, match="refused"):
        mailer.send(_message(("gone@example.org",)), ["gone@example.org"])


def test_connection_refused_is_transient(tmp_path):
    port = free_port()  # nothing listens there
    settings = make_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=port, smtp_retry_wait=0.0,
                             smtp_retry_attempts=2, smtp_timeout=2.0)
    t0 = time.monotonic()
    with pytest.raises(TransientMailError):
        SMTPMailer(settings).send(_message(), ["a@example.org"])
    assert time.monotonic() - t0 < 5


def test_starttls_not_offered_is_permanent(tmp_path, smtp_server):
    settings = _smtp_settings(tmp_path, smtp_server, smtp_starttls=True)
    with pytest.raises(PermanentMailError, match="STARTTLS|extension"):
        SMTPMailer(settings).send(_message(), ["a@example.org"])
    assert smtp_server.data_calls == 0


def test_classification_of_codes():
    import smtplib

    assert isinstance(classify_smtp_error(smtplib.SMTPDataError(452, b"full")), TransientMailError)
    assert isinstance(classify_smtp_error(smtplib.SMTPDataError(554, b"no")), PermanentMailError)
    assert isinstance(classify_smtp_error(smtplib.SMTPAuthenticationError(535, b"bad")), PermanentMailError)
    assert isinstance(classify_smtp_error(smtplib.SMTPServerDisconnected("x")), TransientMailError)
    assert isinstance(classify_smtp_error(socket.timeout("t")), TransientMailError)
    assert isinstance(classify_smtp_error(ConnectionResetError()), TransientMailError)


def test_outbox_when_no_smtp_host(tmp_path):
    settings = make_settings(tmp_path)
    mailer = make_mailer(settings)
    assert isinstance(mailer, OutboxMailer)
    msg = _message(("a@example.org", "b@example.org"))
    result = mailer.send(msg, ["a@example.org", "b@example.org"])
    files = list(settings.outbox_dir.glob("*.eml"))
    assert len(files) == 1 and str(files[0]) == result.location
    assert not list(settings.outbox_dir.glob(".*.tmp"))
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["Message-ID"] == msg["Message-ID"]
    assert parsed["X-Mediamon-Envelope-To"] == "a@example.org, b@example.org"
    assert parsed.get_content().strip() == "hello"


def test_outbox_unwritable_is_transient(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TransientMailError):
        OutboxMailer(blocker / "outbox").send(_message(), ["a@example.org"])
