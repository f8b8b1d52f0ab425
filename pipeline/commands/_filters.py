"""Search filters that cannot match: an error or a warning naming the valid values, never a silent
empty result (``-l russian``, ``-t missile``, ``-s Lenta``, ``--since`` after ``--until``).

Checked only when a search found nothing, so a search that finds something costs no extra query.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime
from pathlib import Path
from typing import Iterable

import typer

from ..models import to_iso
from ..settings import Settings
from ..store import SearchRequest, Store

_LANG_RE = re.compile(r"^[a-z]{2}$")


def check_window(since: datetime | None, until: datetime | None) -> None:
    """``--since`` at or after ``--until`` selects nothing: a usage error (exit 2)."""
    if since is not None and until is not None and since >= until:
        raise typer.BadParameter(f"--since {to_iso(since)} is not before --until {to_iso(until)}: "
                                 "the window is empty")


def _names(values: Iterable[str]) -> str:
    vals = sorted(set(values))
    if not vals:
        return "(none yet)"
    shown = ", ".join(vals[:30])
    return shown + (f", … ({len(vals)} in all)" if len(vals) > 30 else "")


def _hint(value: str, known: Iterable[str]) -> str:
    known = list(known)
    lower = {k.lower(): k for k in known}
    close = [lower[m] for m in difflib.get_close_matches(value.lower(), list(lower), n=3, cutoff=0.5)]
    close += [k for k in known if value.lower() in k.lower() and k not in close][:3]
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _config_values(settings: Settings) -> tuple[set[str], set[str]]:
    """Topic ids from topics.yaml and source names from feeds.yaml, where the files are readable:
    a search does not fail because a config file it does not need is broken."""
    from ..config import load_feeds, load_topics
    from ..errors import ConfigError

    topics: set[str] = set()
    sources: set[str] = set()
    cfg = Path(settings.config_dir)
    try:
        topics = {t.id for t in load_topics(cfg)}
    except ConfigError:
        pass
    if (cfg / "feeds.yaml").is_file():
        try:
            sources = {f.source for f in load_feeds(cfg)}
        except ConfigError:
            pass
    return topics, sources


def explain_empty(store: Store, settings: Settings, req: SearchRequest) -> list[str]:
    """Why a search with filters found nothing.  Raises ``typer.BadParameter`` (exit 2) for a value
    that can never match (a language that is not an ISO 639-1 code, a topic defined neither in
    topics.yaml nor in the store); returns warnings for values no stored item has (yet)."""
    if not (req.languages or req.topics or req.sources):
        return []
    st = store.stats(SearchRequest())
    cfg_topics, cfg_sources = _config_values(settings)
    warnings: list[str] = []
    known_langs = set(st.by_language) | set(settings.languages)
    for lang in req.languages:
        if not _LANG_RE.match(lang):
            raise typer.BadParameter(f"unknown language {lang!r}: use an ISO 639-1 code; languages in the "
                                     f"store: {_names(st.by_language)}", param_hint="'--language' / '-l'")
        if lang not in st.by_language:
            warnings.append(f"no stored item has language {lang!r}; languages in the store: "
                            f"{_names(st.by_language)}" + _hint(lang, known_langs))
    known_topics = cfg_topics | set(st.by_topic)
    for topic in req.topics:
        if topic not in known_topics:
            raise typer.BadParameter(f"unknown topic {topic!r}{_hint(topic, known_topics)}; topics: "
                                     f"{_names(known_topics)}", param_hint="'--topic' / '-t'")
    known_sources = set(st.by_source) | cfg_sources
    for source in req.sources:
        if source not in st.by_source:
            warnings.append(f"no stored item has source {source!r}{_hint(source, known_sources)}; "
                            f"sources in the store: {_names(st.by_source)} (names match exactly)")
    return warnings
