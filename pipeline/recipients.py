"""Alert recipients (issue 16, item 7): validated with a real address parser (``email-validator``).

* Config time (``AlertConfig.recipients``): an address must parse (RFC 5321/5322 syntax, no
  control characters: a NUL never reaches ``RCPT TO``); the domain may be internationalised
  (``analyst@пример.рф``) and a local part may be non-ASCII (``аналитик@example.org``).  Domains
  that are not globally deliverable (``ops@mail.internal``, ``a@mailhog``) are fine; reserved
  names (``localhost``, ``.invalid``) are not.
* Send time (``pipeline.mail``): the envelope gets the ASCII form, with the domain in IDNA
  (punycode, ``analyst@xn--e1afmkfd.xn--p1ai``).  A non-ASCII local part has no ASCII form: it
  is sent only when the server offers SMTPUTF8; otherwise that one recipient is refused with a
  permanent reason naming it, and the others still get the email.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str  # as configured
    envelope: str  # what goes into RCPT TO: the ASCII form, else the UTF-8 address
    needs_smtputf8: bool  # no ASCII form: the local part is not ASCII


def parse_recipient(address: str) -> Recipient:
    """The recipient's envelope form; ValueError with the reason when it is not a usable address."""
    if not isinstance(address, str) or any(c in address for c in "\r\n,;<>"):
        raise ValueError(f"not a plain email address: {address!r}")
    try:
        info = validate_email(address, check_deliverability=False, globally_deliverable=False,
                              test_environment=True, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {address!r}: {exc}") from exc
    if info.ascii_email:
        return Recipient(address, info.ascii_email, False)
    return Recipient(address, info.normalized, True)


__all__ = ["Recipient", "parse_recipient"]
