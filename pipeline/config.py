"""Loading and validating ``feeds.yaml``, ``topics.yaml`` and ``alerts.yaml``.

Every error names the file, the entry (by index and id) and the field::

    config/feeds.yaml: entry 3 (id 'tass'): field 'url': URL must be http(s) or a local path
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .configfile import check_id as _check_id
from .configfile import load_yaml_list as _load_yaml_list
from .errors import ConfigError

if TYPE_CHECKING:
    from .aliases import Aliases



class FeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    url: str
    source: str
    language: str | None = Field(default=None, description="declared language, ISO 639-1")
    tags: tuple[str, ...] = ()
    interval: float | None = Field(default=None, gt=0, description="poll interval in seconds")
    enabled: bool = True
    # outlet domains whose URLs this feed may claim besides its own registrable domain
    # (pipeline/identity.py: a feed served from a CDN or a feed host, e.g. feeds.example.net for tass.ru)
    domains: tuple[str, ...] = ()

    _v_id = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))

    @field_validator("domains", mode="before")
    @classmethod
    def _domains(cls, v: Any) -> tuple[str, ...]:
        from .identity import normalise_domains

        if isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple)):
            raise ValueError("must be a list of host names such as ['tass.ru', 'tass.com']")
        return normalise_domains(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        if "://" in v and not re.match(r"^(https?|file)://", v, re.I):
            raise ValueError("URL must be http(s)://, file:// or a local path")
        return v

    @field_validator("language")
    @classmethod
    def _lang(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().lower()
        if not re.fullmatch(r"[a-z]{2}", v):
            raise ValueError("must be an ISO 639-1 code such as 'ru' or 'en'")
        return v


class _QueryEntry(BaseModel):
    """A config entry with a query: the query is read with the alias groups of its configuration
    directory (``aliases.yaml``), which the loader attaches (not a YAML field)."""

    _aliases: Any = PrivateAttr(default=None)

    @property
    def aliases(self) -> "Aliases | None":
        return self._aliases

    def with_aliases(self, aliases: "Aliases | None") -> Any:
        self._aliases = aliases
        return self


class TopicConfig(_QueryEntry):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    description: str = ""
    query: str
    languages: tuple[str, ...] | None = None
    # When this topic and one of these both match, the title decides the item's main point: if the
    # other's rule matches the title alone and this one's does not, this topic is dropped
    # (pipeline.classify.yielded_to).
    yields_to: tuple[str, ...] = ()

    _v_id = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))


class ThrottleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_emails: int = Field(default=1, ge=1)
    per_seconds: float = Field(default=3600, gt=0)


class AlertConfig(_QueryEntry):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    query: str
    topics: tuple[str, ...] | None = None
    languages: tuple[str, ...] | None = None
    recipients: tuple[str, ...]
    mode: Literal["immediate", "digest"] = "immediate"
    throttle: ThrottleConfig | None = None
    description: str = ""
    timezone: str = Field(default="UTC", description="IANA zone for local times in emails, e.g. Europe/Minsk")
    since: datetime | None = Field(default=None, description="only items published at or after this "
                                   "(ISO date or date-time, UTC unless it says otherwise) are alerted")

    _v_id = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))

    @field_validator("since")
    @classmethod
    def _since(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        return v.astimezone(timezone.utc) if v is not None else None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as 'Europe/Minsk'") from exc
        return v

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one recipient is required")
        from .recipients import parse_recipient

        for r in v:
            parse_recipient(r)  # ValueError names the address and the reason (issue 16, item 7)
        return v


def _validate_entries(path: Path, key: str, model: type[BaseModel], *, allow_empty: bool = True) -> list[Any]:
    entries = _load_yaml_list(path, key, allow_empty=allow_empty)
    out = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries, start=1):
        label = f"entry {i}"
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            label += f" (id {entry['id']!r})"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {label}: expected a mapping, got {type(entry).__name__}")
        try:
            obj = model.model_validate(entry)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "(entry)"
                msg = err["msg"]
                if err["type"] == "extra_forbidden":
                    msg = "unknown field"
                problems.append(f"field '{field}': {msg}")
            raise ConfigError(f"{path}: {label}: " + "; ".join(problems)) from exc
        if obj.id in seen:  # type: ignore[attr-defined]
            raise ConfigError(f"{path}: {label}: field 'id': duplicate of entry {seen[obj.id]}")  # type: ignore[attr-defined]
        seen[obj.id] = i  # type: ignore[attr-defined]
        out.append(obj)
    return out


def load_feeds(config_dir: Path) -> list[FeedConfig]:
    path = Path(config_dir) / "feeds.yaml"
    feeds: list[FeedConfig] = _validate_entries(path, "feeds", FeedConfig, allow_empty=False)
    resolved = []
    for f in feeds:
        # local paths are relative to the config directory
        if "://" not in f.url:
            p = Path(f.url).expanduser()
            if not p.is_absolute():
                p = (Path(config_dir) / p).resolve()
            f = f.model_copy(update={"url": str(p)})
        resolved.append(f)
    return resolved


def load_topics(config_dir: Path) -> list[TopicConfig]:
    """topics.yaml, validated; each topic carries the directory's alias groups (aliases.yaml)."""
    path = Path(config_dir) / "topics.yaml"
    if not path.exists():
        return []
    topics: list[TopicConfig] = _validate_entries(path, "topics", TopicConfig)
    # validate the query syntax here so the file/entry is named
    from .aliases import load_aliases
    from .query import QuerySyntaxError, parse_query

    aliases = load_aliases(config_dir)
    for i, t in enumerate(topics, start=1):
        t.with_aliases(aliases)
        try:
            parse_query(t.query, aliases)
        except QuerySyntaxError as exc:
            raise ConfigError(f"{path}: entry {i} (id {t.id!r}): field 'query': {exc}") from exc
    known = {t.id for t in topics}
    for i, t in enumerate(topics, start=1):
        for other in t.yields_to:
            if other == t.id or other not in known:
                why = "a topic cannot yield to itself" if other == t.id else "no topic has this id"
                raise ConfigError(f"{path}: entry {i} (id {t.id!r}): field 'yields_to': {other!r}: {why}")
    return topics


def load_alerts(config_dir: Path) -> list[AlertConfig]:
    """alerts.yaml, validated; each rule carries the directory's alias groups (aliases.yaml)."""
    path = Path(config_dir) / "alerts.yaml"
    if not path.exists():
        return []
    alerts: list[AlertConfig] = _validate_entries(path, "alerts", AlertConfig)
    from .aliases import load_aliases
    from .query import QuerySyntaxError, parse_query

    aliases = load_aliases(config_dir)
    for i, a in enumerate(alerts, start=1):
        a.with_aliases(aliases)
        try:
            parse_query(a.query, aliases)
        except QuerySyntaxError as exc:
            raise ConfigError(f"{path}: entry {i} (id {a.id!r}): field 'query': {exc}") from exc
    return alerts
