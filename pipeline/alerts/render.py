"""Alert emails: same-story grouping, text made safe, the multipart message (Jinja templates).

Nothing from a feed reaches a header; feed text is cleaned (control, bidi, line-break characters),
cut, escaped by the HTML template and highlighted token by token, so no markup survives.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from functools import lru_cache
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from ..analysis import stem, token_spans, tokenize
from ..config import AlertConfig
from ..errors import PermanentMailError
from ..models import Article
from ..settings import Settings

SAME_STORY_WINDOW = timedelta(days=1)
SNIPPET_CHARS = 300
TITLE_CHARS = 500


# --- stories (same-story grouping) ------------------------------------------------------------------

def normalized_title(title: str | None) -> str:
    return " ".join(tokenize(title))


@dataclass
class Story:
    """One entry of an email: one or more articles that report the same story."""

    articles: list[Article]
    terms: list[str] = field(default_factory=list)

    @property
    def primary(self) -> Article:
        return self.articles[0]

    @property
    def published_at(self) -> datetime:
        return max(a.published_at for a in self.articles)

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.articles]


def group_stories(articles: Sequence[Article], terms: Mapping[str, Sequence[str]] | None = None) -> list[Story]:
    """Same canonical URL, or the same normalised title from different feeds within a day → one story.

    Returned newest first; inside a story the earliest article comes first (it is shown as
    the title), and every article's source is listed.
    """
    terms = terms or {}
    arts = sorted(articles, key=lambda a: (a.published_at, a.id))
    parent = list(range(len(arts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    by_url: dict[str, int] = {}
    by_title: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(arts):
        url = (a.canonical_url or a.url or "").strip()
        if url:
            if url in by_url:
                union(by_url[url], i)
            else:
                by_url[url] = i
        nt = normalized_title(a.title)
        if nt:
            for j in by_title[nt]:
                b = arts[j]
                if b.feed_id != a.feed_id and abs(a.published_at - b.published_at) <= SAME_STORY_WINDOW:
                    union(j, i)
            by_title[nt].append(i)
    groups: dict[int, list[Article]] = defaultdict(list)
    for i, a in enumerate(arts):
        groups[find(i)].append(a)
    stories = []
    for members in groups.values():
        t: list[str] = []
        for a in members:
            t.extend(terms.get(a.id, ()))
        stories.append(Story(members, list(dict.fromkeys(t))))
    stories.sort(key=lambda s: (s.published_at, s.primary.id), reverse=True)
    return stories


# --- rendering ---------------------------------------------------------------------------------------

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")


def clean_text(text: str | None, limit: int | None = None) -> str:
    """Feed text made safe for one line of an email: control, bidi and line-break characters
    become spaces; whitespace collapsed; cut at ``limit`` characters with an ellipsis."""
    if not text:
        return ""
    text = _CONTROL_RE.sub(" ", unicodedata.normalize("NFC", text))
    text = " ".join(text.split())
    if limit and len(text) > limit:
        text = text[:limit - 1].rstrip() + "…"
    return text


def header_safe(value: str, limit: int = 200) -> str:
    """A header value with no CR/LF or other control characters (defence in depth: nothing from
    a feed ever reaches a header; rule ids and recipients are validated in config.py)."""
    return clean_text(str(value), limit)


def safe_link(url: str | None) -> str | None:
    """The URL when it is an absolute http(s) URL without whitespace/control characters, else None."""
    if not url:
        return None
    url = url.strip()
    if _CONTROL_RE.search(url) or any(c.isspace() for c in url) or len(url) > 2000:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def _scripts(label: str) -> set[str]:
    return {unicodedata.name(c, "UNKNOWN").split(" ")[0] for c in label if c.isalpha()}


def host_warning(url: str | None) -> str | None:
    """A note for a link whose host is not the plain ASCII name it may look like (issue 16, item 8):
    an internationalised host (``раураl.com`` with Cyrillic letters, ``пример.рф``), or an ``xn--``
    host that displays as one, is shown with its punycode form, and mixed scripts inside one
    label (the homoglyph trick) are named.  None for an ordinary ASCII host."""
    if not url:
        return None
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return None
    if not host or (host.isascii() and "xn--" not in host):
        return None
    import idna

    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii")
        shown = idna.decode(ascii_host)
    except (idna.IDNAError, UnicodeError, ValueError):
        return f"link host {host!r} is not a valid internationalised name"
    mixed = sorted({sc for label in shown.split(".") for sc in _scripts(label)}) if any(
        len(_scripts(label)) > 1 for label in shown.split(".")) else []
    what = (f"mixed {' and '.join(x.title() for x in mixed)} letters in one name" if mixed
            else "an internationalised name, not an ASCII one")
    return f"link host {shown} = {ascii_host}: {what}"


def highlight(text: str, terms: Sequence[str]) -> Markup:
    """Escape ``text`` and wrap the words matching ``terms`` in ``<mark>``.

    Works on the raw text's token spans: every piece is escaped on its own, then the marked
    tokens are wrapped, so no markup from the feed can survive and no entity is split.
    A token is marked when its folded form or its stem equals a term's (``Орешника`` ~ ``Орешник``).
    """
    want_fold: set[str] = set()
    want_stem: set[str] = set()
    for t in terms:
        for tok in tokenize(t):
            want_fold.add(tok)
            want_stem.add(stem(tok))
    if not want_fold:
        return Markup(escape(text))
    out: list[str] = []
    pos = 0
    for start, end, folded in token_spans(text):
        if folded in want_fold or stem(folded) in want_stem:
            out.append(str(escape(text[pos:start])))
            out.append("<mark>" + str(escape(text[start:end])) + "</mark>")
            pos = end
    out.append(str(escape(text[pos:])))
    return Markup("".join(out))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - validated in config; fall back rather than fail a send
        return ZoneInfo("UTC")


def _fmt_times(dt: datetime, tz: ZoneInfo) -> tuple[str, str]:
    """(local time, UTC time); the UTC time is empty when it would repeat the local one (a rule
    without a timezone: no "12:00 UTC (12:00 UTC)")."""
    utc = dt.astimezone(timezone.utc)
    local = dt.astimezone(tz)
    label = local.strftime("%Z")
    if not label or not label[0].isalpha():  # zones without an abbreviation print "+03"
        label = f"{label} {getattr(tz, 'key', '')}".strip()
    local_s, utc_s = f"{local:%Y-%m-%d %H:%M} {label}", utc.strftime("%Y-%m-%d %H:%M UTC")
    return local_s, "" if local_s == utc_s else utc_s


@lru_cache(maxsize=1)
def _jinja_env():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("pipeline", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), disabled_extensions=("txt",),
                                     default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _translation_note(a: Article) -> str:
    """Why a non-English item has no English line, so the reader does not miss it silently."""
    status = a.translation.status if a.translation else None
    if (a.language or a.feed_language or "en") == "en" or (a.title_en and a.title_en.strip() != a.title.strip()):
        return ""
    if status in ("unavailable", "pending", None):
        return "translation unavailable (the model could not be loaded); it is added to the stored item later"
    if status == "failed":
        return "translation failed for this item"
    if status == "skipped" and a.translation and a.translation.error:
        return f"not translated ({clean_text(a.translation.error, 100)})"
    return ""


def story_view(story: Story, tz: ZoneInfo) -> dict[str, Any]:
    """Everything a template shows about one story; feed text is cleaned here and escaped by Jinja."""
    a = story.primary
    title = clean_text(a.title, TITLE_CHARS) or "(no title)"
    # the English title of the first member that has one (another outlet may carry the translation)
    translated = next((x for x in story.articles if x.title_en and x.title_en.strip() != x.title.strip()), None)
    title_en = clean_text(translated.title_en, TITLE_CHARS) if translated else ""
    summary = clean_text(a.summary_en or a.summary, SNIPPET_CHARS)
    translation_note = "" if translated else _translation_note(a)
    local, utc = _fmt_times(a.published_at, tz)
    sources = []
    seen = set()
    for art in story.articles:
        raw = clean_text(art.canonical_url or art.url or "", 2000)
        key = (art.source, raw)
        if key in seen:
            continue
        seen.add(key)
        sources.append({"name": clean_text(art.source, 200) or art.feed_id, "link": safe_link(raw), "url": raw,
                        "host_warning": host_warning(raw)})
    return {
        "title": title, "title_html": highlight(title, story.terms),
        "title_en": title_en, "title_en_html": highlight(title_en, story.terms) if title_en else Markup(""),
        "summary": summary, "summary_html": highlight(summary, story.terms) if summary else Markup(""),
        "translation_note": translation_note,
        "terms": [clean_text(t, 100) for t in story.terms],
        "local_time": local, "utc_time": utc, "date_inferred": a.date_inferred,
        "sources": sources, "link": sources[0]["link"] if sources else None,
        "url": sources[0]["url"] if sources else "",
        "topics": list(dict.fromkeys(t for art in story.articles for t in art.topics)),
        "language": a.language or "",
    }


def _sections(rule: AlertConfig, stories: Sequence[Story], by_topic: bool) -> list[dict[str, Any]]:
    tz = _zone(rule.timezone)
    if not by_topic:
        return [{"topic": None, "items": [story_view(s, tz) for s in stories]}]
    groups: dict[str, list[Story]] = defaultdict(list)
    for s in stories:
        topics = list(dict.fromkeys(t for a in s.articles for t in a.topics))
        if rule.topics:
            topics = [t for t in topics if t in rule.topics] or topics
        groups[topics[0] if topics else ""].append(s)
    order = sorted(groups, key=lambda t: (t == "", (rule.topics or ()).index(t) if t in (rule.topics or ()) else 999, t))
    return [{"topic": t or None, "items": [story_view(s, tz) for s in groups[t]]} for t in order]


def _from_address(settings: Settings) -> tuple[str, str]:
    """(header value, bare address) of MEDIAMON_SMTP_FROM, with control characters removed."""
    value = header_safe(settings.smtp_from, 300)
    addr = parseaddr(value)[1]
    if not addr or "@" not in addr:
        raise PermanentMailError(f"MEDIAMON_SMTP_FROM is not an email address: {settings.smtp_from!r}")
    return value, addr


def _display_address(address: str) -> str:
    """The To header's form: ASCII with an IDNA domain when there is one (issue 16, item 7)."""
    from ..recipients import parse_recipient

    try:
        r = parse_recipient(address)
    except ValueError:
        return address
    return address if r.needs_smtputf8 else r.envelope


def build_message(rule: AlertConfig, stories: Sequence[Story], *, settings: Settings, now: datetime,
                  more: int = 0, digest: bool = False, summarised: Mapping[str, int] | None = None) -> EmailMessage:
    """The multipart (text + HTML) email for one rule and a batch of stories.  ``summarised``:
    source -> stories of that source past its per-email share, only counted ("and 812 more from X")."""
    n = len(stories)
    from_value, from_addr = _from_address(settings)
    domain = from_addr.rsplit("@", 1)[1] or "mediamon.localhost"
    sections = _sections(rule, stories, by_topic=digest)
    local_now, utc_now = _fmt_times(now, _zone(rule.timezone))
    ctx = {
        "rule": {"id": rule.id, "description": clean_text(rule.description, 500), "query": clean_text(rule.query, 1000),
                 "mode": rule.mode, "timezone": rule.timezone},
        "sections": sections, "count": n, "articles": sum(len(s.articles) for s in stories), "more": more,
        "digest": digest, "generated_local": local_now, "generated_utc": utc_now,
        "cap": settings.alert_max_items_per_email, "from_addr": from_addr,
        "summarised": [{"source": clean_text(src, 200), "count": n}
                       for src, n in sorted((summarised or {}).items(), key=lambda kv: (-kv[1], kv[0]))],
        "per_source": settings.alert_max_items_per_source,
    }
    env = _jinja_env()
    text = env.get_template("alert.txt").render(**ctx)
    html = env.get_template("alert.html").render(**ctx)

    msg = EmailMessage(policy=policy.SMTP)
    subject = f"[mediamon] {rule.id}: {n} new item{'' if n == 1 else 's'}"
    if digest:
        subject += " (digest)"
    try:
        msg["Subject"] = header_safe(subject, 250)
        msg["From"] = from_value
        msg["To"] = ", ".join(header_safe(_display_address(r), 254) for r in rule.recipients)
        msg["Date"] = format_datetime(now.astimezone(timezone.utc))
        msg["Message-ID"] = make_msgid(domain=domain)  # no idstring: keeps the header on one line
        msg["List-Id"] = f"mediamon alert {rule.id} <{rule.id}.alerts.{domain}>"
        msg["List-Unsubscribe"] = f"<mailto:{from_addr}?subject=unsubscribe%20{rule.id}>"
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Mediamon-Rule"] = rule.id
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    except (ValueError, TypeError) as exc:  # policy.SMTP refuses CR/LF in headers
        raise PermanentMailError(f"cannot build the email for rule {rule.id!r}: {exc}") from exc
    return msg
