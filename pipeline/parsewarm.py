"""Imported once by the parse pool's fork server (``parsepool._mp_context``), so that every worker
forks with what its first feed would otherwise load on the clock of that feed's CPU budget
(``MEDIAMON_PARSE_CPU_SECONDS``): the parser and normaliser, ftfy (mojibake repair) and the
public-suffix list (story identity: about 0.3 s to load)."""

from __future__ import annotations

from . import mojibake, pollresult  # noqa: F401 - imported for the fork server
from .identity import registrable_domain

registrable_domain("example.org")  # loads the public-suffix list once, before the fork
