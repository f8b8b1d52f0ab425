"""Mail delivery: a ``Mailer`` Protocol with two adapters.

* ``SMTPMailer`` — smtplib; plain, STARTTLS (``MEDIAMON_SMTP_STARTTLS``) or implicit TLS
  (``MEDIAMON_SMTP_SSL``); optional AUTH (``MEDIAMON_SMTP_USERNAME`` / ``_PASSWORD``).
* ``OutboxMailer`` — the embedded default when ``MEDIAMON_SMTP_HOST`` is unset: each email
  becomes one ``.eml`` file in ``DATA_DIR/outbox`` (written to a temporary name, then renamed,
  so a reader never sees half a file).

Errors are classified once, here:

* transient — 4xx replies, connection refused/dropped, timeouts, TLS hiccups: retried inside
  ``send`` with exponential backoff (``smtp_retry_attempts`` tries, first wait ``smtp_retry_wait``
  seconds, doubling, capped at 30 s); when all tries fail, ``TransientMailError`` is raised and the
  caller leaves the items queued for the next run.
* permanent — 5xx replies (sender/recipients/data refused, authentication failed, STARTTLS not
  offered): ``PermanentMailError`` at once, no retry.

A partial success (the server accepted some recipients and refused others) counts as delivered:
the message went out; the refused addresses are returned in ``SendResult.refused`` and logged.
Recipients are checked one by one before ``MAIL FROM`` (``pipeline.recipients``): the envelope
gets the ASCII form (IDNA domain); an invalid address, or a non-ASCII local part when the server
does not offer SMTPUTF8, is refused for that recipient alone (permanent, named in ``refused``),
and the others still get the message.  Only when no recipient is left is the send a failure.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_none

from .errors import PermanentMailError, TransientMailError
from .logs import get_logger, log
from .recipients import Recipient, parse_recipient
from .settings import Settings

logger = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    accepted: tuple[str, ...]
    refused: dict[str, str] = field(default_factory=dict)  # address -> "code reply"
    location: str | None = None  # outbox file, for OutboxMailer
    attempts: int = 1


@runtime_checkable
class Mailer(Protocol):
    """Delivers one finished message to its envelope recipients, or raises a MailError."""

    def send(self, message: EmailMessage, recipients: Sequence[str]) -> SendResult: ...

    def describe(self) -> str: ...


def _message_id(message: EmailMessage) -> str:
    return str(message.get("Message-ID") or "")


def _code_text(code: int, reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return f"{code} {reply}".strip()


def classify_smtp_error(exc: BaseException) -> TransientMailError | PermanentMailError:
    """Map an smtplib/socket exception to our transient/permanent tree."""
    if isinstance(exc, (TransientMailError, PermanentMailError)):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = {addr: code for addr, (code, _msg) in exc.recipients.items()}
        detail = "; ".join(f"{a}: {_code_text(c, m)}" for a, (c, m) in exc.recipients.items())
        if codes and all(400 <= c < 500 for c in codes.values()):
            return TransientMailError(f"all recipients deferred: {detail}")
        return PermanentMailError(f"all recipients refused: {detail}")
    if isinstance(exc, smtplib.SMTPResponseException):  # sender refused, data error, auth, HELO …
        text = _code_text(exc.smtp_code, exc.smtp_error)
        if 400 <= exc.smtp_code < 500:
            return TransientMailError(f"server deferred: {text}")
        if exc.smtp_code == -1:  # smtplib's "connection unexpectedly closed" style
            return TransientMailError(f"connection problem: {text}")
        return PermanentMailError(f"server refused: {text}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentMailError(f"server does not support a required extension: {exc}")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientMailError(f"connection dropped: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentMailError(f"TLS certificate rejected: {exc}")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TransientMailError(f"timed out: {exc}")
    if isinstance(exc, (ConnectionError, ssl.SSLError, OSError, smtplib.SMTPException)):
        return TransientMailError(f"{exc.__class__.__name__}: {exc}")
    return PermanentMailError(f"{exc.__class__.__name__}: {exc}")


class SMTPMailer:
    """One SMTP connection per message (a cycle sends a handful), retried on transient errors."""

    def __init__(self, settings: Settings, *, attempts: int | None = None, wait: float | None = None):
        if not settings.smtp_host:
            raise ValueError("SMTPMailer needs settings.smtp_host")
        if settings.smtp_ssl and settings.smtp_starttls:
            raise PermanentMailError("MEDIAMON_SMTP_SSL and MEDIAMON_SMTP_STARTTLS are mutually exclusive")
        self.settings = settings
        self.attempts = attempts if attempts is not None else settings.smtp_retry_attempts
        self.wait = wait if wait is not None else settings.smtp_retry_wait

    def describe(self) -> str:
        s = self.settings
        mode = "ssl" if s.smtp_ssl else "starttls" if s.smtp_starttls else "plain"
        return f"smtp://{s.smtp_host}:{s.smtp_port} ({mode}{', auth' if s.smtp_username else ''})"

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if not s.smtp_host:
            raise ValueError("SMTPMailer needs MEDIAMON_SMTP_HOST (unset: mail goes to the outbox)")
        ctx = ssl.create_default_context()
        if s.smtp_ssl:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=ctx)
        else:
            conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
        try:
            conn.ehlo_or_helo_if_needed()
            if s.smtp_starttls:
                conn.starttls(context=ctx)
                conn.ehlo()
            if s.smtp_username:
                pw = s.smtp_password.get_secret_value() if s.smtp_password else ""
                conn.login(s.smtp_username, pw)
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    def _send_once(self, message: EmailMessage, recipients: Sequence[str]) -> SendResult:
        usable, refused_txt = _envelope(recipients)
        try:
            conn = self._connect()
            try:
                if not conn.has_extn("smtputf8"):
                    for r in [r for r in usable if r.needs_smtputf8]:
                        refused_txt[r.address] = ("permanent: the local part is not ASCII and the server does "
                                                  "not offer SMTPUTF8")
                    usable = [r for r in usable if not r.needs_smtputf8]
                if not usable:
                    raise PermanentMailError("no deliverable recipient: " + "; ".join(
                        f"{a}: {why}" for a, why in refused_txt.items()))
                by_envelope = {r.envelope: r.address for r in usable}
                refused = conn.send_message(message, from_addr=self.settings.smtp_from,
                                            to_addrs=list(by_envelope))
            finally:
                _quietly_close(conn)
        except smtplib.SMTPRecipientsRefused as exc:  # every envelope recipient refused by the server
            err = classify_smtp_error(exc)  # transient when the server only deferred them
            if refused_txt:
                err = type(err)(f"{err}; refused before sending: " + "; ".join(
                    f"{a}: {why}" for a, why in refused_txt.items()))
            raise err from exc
        except Exception as exc:  # noqa: BLE001 - classified, re-raised
            raise classify_smtp_error(exc) from exc
        refused_txt.update({by_envelope.get(a, a): _code_text(c, m) for a, (c, m) in (refused or {}).items()})
        accepted = tuple(r for r in recipients if r not in refused_txt)
        return SendResult(message_id=_message_id(message), accepted=accepted, refused=refused_txt)

    def send(self, message: EmailMessage, recipients: Sequence[str]) -> SendResult:
        if not recipients:
            raise PermanentMailError("no recipients")
        tries = 0

        def before_sleep(state) -> None:
            log(logger, 30, "smtp_retry", message_id=_message_id(message), attempt=state.attempt_number,
                error=str(state.outcome.exception()))

        retrying = Retrying(
            retry=retry_if_exception_type(TransientMailError),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.wait, min=self.wait, max=30.0) if self.wait > 0 else wait_none(),
            before_sleep=before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                tries = attempt.retry_state.attempt_number
                result = self._send_once(message, recipients)
        if result.refused:
            log(logger, 30, "smtp_recipients_refused", message_id=result.message_id, refused=result.refused)
        return SendResult(result.message_id, result.accepted, result.refused, None, tries)


def _envelope(recipients: Sequence[str]) -> tuple[list[Recipient], dict[str, str]]:
    """(usable recipients, address -> why refused) before anything is sent."""
    usable: list[Recipient] = []
    refused: dict[str, str] = {}
    for address in dict.fromkeys(recipients):
        try:
            usable.append(parse_recipient(address))
        except ValueError as exc:
            refused[address] = f"permanent: {exc}"
    return usable, refused


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except Exception:  # noqa: BLE001 - the message outcome is already decided
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass


class OutboxMailer:
    """Writes each message as an ``.eml`` file: the embedded default (no SMTP server needed)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def describe(self) -> str:
        return f"outbox {self.directory}"

    def send(self, message: EmailMessage, recipients: Sequence[str]) -> SendResult:
        if not recipients:
            raise PermanentMailError("no recipients")
        mid = _message_id(message)
        usable, refused = _envelope(recipients)
        if not usable:
            raise PermanentMailError("no deliverable recipient: " + "; ".join(f"{a}: {w}" for a, w in refused.items()))
        # the envelope is not part of the message; keep it visible for whoever reads the file
        if "X-Mediamon-Envelope-To" not in message:
            message["X-Mediamon-Envelope-To"] = ", ".join(r.envelope for r in usable)
        rule = str(message.get("X-Mediamon-Rule") or "mail")
        digest = hashlib.sha1(mid.encode()).hexdigest()[:12]
        date = message.get("Date")
        stamp = date.datetime.strftime("%Y%m%dT%H%M%S") if date is not None and getattr(date, "datetime", None) \
            else "message"
        name = f"{stamp}-{rule}-{digest}.eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{name}.tmp"
            tmp.write_bytes(message.as_bytes())
            os.replace(tmp, self.directory / name)
        except OSError as exc:
            raise TransientMailError(f"cannot write {self.directory / name}: {exc}") from exc
        return SendResult(message_id=mid, accepted=tuple(r.address for r in usable), refused=refused,
                          location=str(self.directory / name))


def make_mailer(settings: Settings) -> Mailer:
    """SMTP when ``MEDIAMON_SMTP_HOST`` is set, else the outbox folder in DATA_DIR."""
    if settings.smtp_host:
        return SMTPMailer(settings)
    return OutboxMailer(settings.outbox_dir)


def envelope_recipients(message: EmailMessage) -> list[str]:
    """Addresses in To/Cc (we never set Bcc)."""
    fields = [str(v) for k in ("To", "Cc") for v in message.get_all(k, [])]
    return [addr for _name, addr in getaddresses(fields) if addr]
