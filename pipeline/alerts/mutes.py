"""The per-recipient mute list: addresses that asked to stop receiving alerts (issue 18).

The alert footer and the ``List-Unsubscribe`` header ask a recipient to reply with the subject
"unsubscribe RULE"; the operator who reads that reply runs ``mediamon alerts mute EMAIL [--rule R]``.
Delivery (:func:`pipeline.alerts.deliver.deliver_rule`) leaves muted addresses out of every email,
SMTP and outbox alike.  The list is one JSON file in the data directory (``DATA_DIR/mutes.json``),
written atomically (temporary file, then rename)::

    {"version": 1, "mutes": [{"email": "a@example.org", "rule": null, "at": "2026-11-28T12:00:00Z"}]}

``rule: null`` mutes the address for every rule.  A file that cannot be read is an error, never
"nobody is muted": delivery would mail people who asked to stop.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError
from ..models import to_iso, utcnow
from ..settings import Settings

FILE_NAME = "mutes.json"


@dataclass(frozen=True)
class Mute:
    email: str
    rule: str | None  # None: every rule
    at: str | None = None

    def covers(self, email: str, rule_id: str) -> bool:
        return self.email == email.strip().lower() and (self.rule is None or self.rule == rule_id)

    def to_dict(self) -> dict:
        return {"email": self.email, "rule": self.rule, "at": self.at}


def mutes_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / FILE_NAME


def load_mutes(settings: Settings) -> list[Mute]:
    """The mute list; empty when the file does not exist.  Raises ConfigError naming the file."""
    path = mutes_path(settings)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the mute list: {exc}") from exc
    entries = raw.get("mutes") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected {{\"version\": 1, \"mutes\": [...]}}")
    out = []
    for i, e in enumerate(entries, start=1):
        if not isinstance(e, dict) or not isinstance(e.get("email"), str) or not isinstance(e.get("rule"), (str, type(None))):
            raise ConfigError(f"{path}: entry {i}: expected {{\"email\": str, \"rule\": str or null}}")
        out.append(Mute(e["email"].strip().lower(), e.get("rule"), e.get("at")))
    return out


def _save(settings: Settings, mutes: Iterable[Mute]) -> None:
    path = mutes_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"version": 1, "mutes": [m.to_dict() for m in mutes]}, indent=1, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mutes.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def mute(settings: Settings, email: str, rule: str | None, *, now: datetime | None = None) -> bool:
    """Add a mute; False when the address was already muted for that rule (or for all)."""
    email = email.strip().lower()
    mutes = load_mutes(settings)
    if any(m.email == email and (m.rule is None or m.rule == rule) for m in mutes):
        return False
    if rule is None:  # a mute for every rule replaces the per-rule ones
        mutes = [m for m in mutes if m.email != email]
    mutes.append(Mute(email, rule, to_iso(now or utcnow())))
    _save(settings, mutes)
    return True


def unmute(settings: Settings, email: str, rule: str | None) -> int:
    """Remove the mutes of ``email`` for ``rule`` (None: all of them); returns how many."""
    email = email.strip().lower()
    mutes = load_mutes(settings)
    keep = [m for m in mutes if not (m.email == email and (rule is None or m.rule == rule))]
    if len(keep) != len(mutes):
        _save(settings, keep)
    return len(mutes) - len(keep)


def split_recipients(recipients: Iterable[str], rule_id: str, mutes: Iterable[Mute]) -> tuple[list[str], list[str]]:
    """(active, muted) recipients of a rule."""
    mutes = list(mutes)
    active: list[str] = []
    muted: list[str] = []
    for r in recipients:
        (muted if any(m.covers(r, rule_id) for m in mutes) else active).append(r)
    return active, muted
