"""RawEntry → Article: canonical URL, stable id, UTC dates, detected language, content hash."""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import re
import unicodedata
from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .config import FeedConfig
from .logs import get_logger, log
from .models import Article, Translation
from .parse import ParsedFeed, RawEntry, language_subtag

# query parameters that only track the reader, never select the content
TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z0-9_]*|fbclid|gclid|gclsrc|dclid|yclid|msclkid|mc_cid|mc_eid|_openstat|igshid|"
    r"ncid|cmpid|ito|wt\.mc_id|_ga|_gl|oly_enc_id|oly_anon_id|vero_id|__twitter_impression|"
    r"at_medium|at_campaign|at_custom[0-9]*|at_link|at_format|at_ptr_name|s_cid|rss_source|ref_src)$",
    re.I)

EARLIEST_PLAUSIBLE = datetime(1990, 1, 1, tzinfo=timezone.utc)
FUTURE_TOLERANCE = timedelta(days=1)

logger = get_logger(__name__)


def canonical_url(url: str | None) -> str | None:
    """Lowercased scheme/host, default port dropped, tracking parameters and fragment removed.
    Non-http(s) links (``javascript:``, ``data:``, relative leftovers) give None."""
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    try:
        port = parts.port
    except ValueError:
        return None
    netloc = host if ":" not in host else f"[{host}]"
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        netloc += f":{port}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING_PARAMS.match(k)]
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, urlencode(query, doseq=True), ""))


_URL_TAB_NEWLINE_RE = re.compile(r"[\t\n\r]")
_URL_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def safe_link(url: str | None) -> str | None:
    """The entry link if it is an absolute http(s) URL, else None (never ``javascript:``).
    As a browser's URL parser does, tabs and line breaks inside are removed (so ``jav\tascript:``
    is ``javascript:`` and refused, and no stored URL carries a CR/LF) and spaces are
    percent-encoded; a URL with any other control character is refused."""
    if not url:
        return None
    url = _URL_TAB_NEWLINE_RE.sub("", url.strip())
    if _URL_CONTROL_RE.search(url):
        return None
    url = url.replace(" ", "%20")
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https") and parts.hostname:
        return url
    return None


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def article_id(canonical: str | None, feed_url: str, guid: str | None, title: str, summary: str) -> str:
    """sha1 of the canonical URL, else of feed URL + guid, else of feed URL + text."""
    if canonical:
        return sha1(canonical)
    if guid:
        return sha1(f"{feed_url}\n{guid}")
    return sha1(f"{feed_url}\n{title}\n{summary[:500]}")


def content_hash(title: str, summary: str, content: str | None) -> str:
    return sha1(f"{title}\n{summary}\n{content or ''}")


# an RFC 822 date whose year has two (or three) digits: the parser guessed the century
_SHORT_YEAR_RE = re.compile(r"^\s*(?:[^\W\d_]{2,12}\.?,?\s*)?\d{1,2}\s+[^\W\d_]{3,12}\.?\s+\d{2,3}\s+\d{1,2}:\d{2}")


def entry_datetime(published: Sequence[int] | None, fetched_at: datetime,
                   raw: str | None = None) -> tuple[datetime, bool]:
    """(UTC datetime, inferred?).  feedparser gives UTC struct_time (offsets and zones such as
    EST applied); absent or implausible dates (year 9999, before 1990, the year 0001 as written)
    become the fetch time.  A date written with a two-digit year (``23 Nov 26``, as RFC 822 had
    it) is kept as the parser read it (26 -> 2026, 99 -> 1999) but marked inferred: its century
    is a guess.  ``raw`` is the date as the feed wrote it."""
    if published:
        try:
            ts = calendar.timegm(tuple(published[:6]) + (0, 0, 0))
            dt = datetime.fromtimestamp(ts, timezone.utc)
        except (OverflowError, ValueError, OSError, TypeError):
            dt = None
        if dt is not None and EARLIEST_PLAUSIBLE <= dt <= fetched_at + FUTURE_TOLERANCE:
            return dt, bool(raw and _SHORT_YEAR_RE.match(raw))
    return fetched_at, True


_CYRILLIC_LETTER_RE = re.compile(r"[\u0400-\u04ff]")
_LATIN_LETTER_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")
# languages written in Cyrillic; the letters that mark a text as not Russian (Ukrainian і ї є ґ,
# Belarusian і ў; Russian uses none of them)
_CYRILLIC_LANGS = {"ru", "uk", "be", "bg", "sr", "mk", "kk", "ky", "mn", "tg", "tt", "ba"}
_NOT_RUSSIAN_MARKERS = {"uk": "іїєґІЇЄҐ", "be": "іўІЎ"}
_NOT_UKRAINIAN_RE = re.compile("[ыэъёЫЭЪЁ]")  # letters Ukrainian does not have
# Cyrillic letters without a single marker after which the text is taken as Russian: Ukrainian and
# Belarusian write і in ~6 % of letters, so 150 letters without any happen with p < 1e-4
_RU_MIN_LETTERS = 150


class LanguageDetector:
    """lingua restricted to a configured set; the feed's declared language breaks ties.

    When the script alone decides among the candidates, lingua's n-gram models are not consulted
    (about half of lingua's cost per item on the bench feeds): Latin letters only with English the
    one Latin-script candidate → en; at least 150 Cyrillic letters, none of the letters Ukrainian or
    Belarusian need (і ї є ґ ў) but one Ukrainian lacks (ы э ъ ё), with the other Cyrillic
    candidates among those two → ru.  Over the 2,879 items
    of the real feeds in ../shared/feeds this gave lingua's answer for every one it applied to
    (2,673; tests/test_normalize.py checks it)."""

    def __init__(self, languages: Iterable[str]):
        self.codes = tuple(sorted({c.lower() for c in languages}))

    @staticmethod
    @lru_cache(maxsize=16)
    def _detector(codes: tuple[str, ...]):
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        isos = []
        for c in codes:
            iso = getattr(IsoCode639_1, c.upper(), None)
            if iso is not None:
                isos.append(iso)
        if len(isos) < 2:
            return None
        return LanguageDetectorBuilder.from_iso_codes_639_1(*isos).build()

    # lingua's cost grows with the text (about 1 ms for 1,000 characters on the bench machine);
    # the title and the start of the summary decide: over the 2,879 items of the real feeds in
    # ../shared/feeds, 200 characters gave the same language as 1,000 for every item
    MAX_CHARS = 300

    @staticmethod
    def _by_script(text: str, codes: tuple[str, ...], letters: int) -> str | None:
        if letters < 20:
            return None  # short text: lingua and the declared language decide
        cyrillic = len(_CYRILLIC_LETTER_RE.findall(text))
        if cyrillic == 0:
            others = [c for c in codes if c != "en"]
            if "en" in codes and all(c in _CYRILLIC_LANGS for c in others) and _LATIN_LETTER_RE.search(text):
                return "en"
            return None
        if cyrillic >= _RU_MIN_LETTERS and "ru" in codes:
            rivals = [c for c in codes if c in _CYRILLIC_LANGS and c != "ru"]
            if all(c in _NOT_RUSSIAN_MARKERS for c in rivals) and not any(
                    m in text for c in rivals for m in _NOT_RUSSIAN_MARKERS[c]) and (
                    "uk" not in rivals or _NOT_UKRAINIAN_RE.search(text)):
                return "ru"
        return None

    def detect(self, text: str, declared: str | None) -> str | None:
        if len(text) > self.MAX_CHARS:
            cut = text.rfind(" ", 0, self.MAX_CHARS)  # no half word at the end
            text = text[: cut if cut > self.MAX_CHARS // 2 else self.MAX_CHARS]
        codes = self.codes
        if declared and declared not in codes:
            codes = tuple(sorted(codes + (declared,)))
        letters = sum(ch.isalpha() for ch in text)
        if letters < 3:
            return declared
        by_script = self._by_script(text, codes, letters)
        if by_script is not None:
            return by_script
        detector = self._detector(codes)
        if detector is None:
            return declared
        values = detector.compute_language_confidence_values(text)
        if not values:
            return declared
        top = values[0]
        top_code = top.language.iso_code_639_1.name.lower()
        if declared and declared != top_code:
            declared_conf = next((v.value for v in values
                                  if v.language.iso_code_639_1.name.lower() == declared), 0.0)
            # short or ambiguous text: trust the feed's declaration
            if letters < 20 or top.value - declared_conf < 0.25:
                return declared
        return top_code


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text) if text else text


def declared_language(feed: FeedConfig, raw: RawEntry, feed_tag: str | None) -> tuple[str | None, str | None]:
    """(primary subtag, tag as written) of the language declared for an entry, first found of: the
    configuration (feeds.yaml), the entry's xml:lang, the feed's <language> / root xml:lang /
    Content-Language header.  The tag keeps its region ("en-US"); the subtag is what detection and
    translation use ("en")."""
    for tag in (feed.language, raw.language, feed_tag):
        primary = language_subtag(tag)
        if primary:
            return primary, tag.strip()[:35] if tag else None
    return None, None


def _demojibake(raw: RawEntry, outcomes: Counter | None) -> RawEntry:
    """The entry's text with mojibake repaired (``pipeline.mojibake``); counts the outcome."""
    from .mojibake import Outcome, repair, worst

    title, t = repair(raw.title)
    summary, s = repair(raw.summary)
    content: str | None = raw.content
    c: Outcome = "clean"
    if raw.content:
        content, c = repair(raw.content)
    authors = [repair(x) for x in raw.authors]
    outcome = worst([t, s, c, *(o for _, o in authors)])
    if outcomes is not None:
        outcomes[outcome] += 1
    if outcome == "clean":
        return raw
    return dataclasses.replace(raw, title=title, summary=summary, content=content,
                               authors=tuple(x for x, _ in authors))


def normalize_entry(raw: RawEntry, feed: FeedConfig, fetched_at: datetime,
                    detector: LanguageDetector | None = None, feed_language: str | None = None,
                    encoding_errors: bool = False, mojibake: Counter | None = None) -> Article:
    raw = _demojibake(raw, mojibake)
    # NFC: a feed may send "й" as "и" + combining breve; Elasticsearch's analyzers and our Python
    # tokenizer must see the same letters, so text is composed once, here, at ingest
    title, summary = _nfc(raw.title), _nfc(raw.summary)
    content = _nfc(raw.content) if raw.content else raw.content
    link = safe_link(raw.link)
    canonical = canonical_url(link)
    declared, tag = declared_language(feed, raw, feed_language)
    published_at, inferred = entry_datetime(raw.published, fetched_at, raw.published_raw)
    language = declared
    if detector is not None:
        language = detector.detect(f"{title}. {summary}", declared)
    return Article(
        id=article_id(canonical, feed.url, raw.guid, title, summary),
        feed_id=feed.id,
        url=link,
        canonical_url=canonical,
        guid=raw.guid,
        source=feed.source,
        feed_language=declared,
        language=language,
        title=title,
        summary=summary,
        content=content,
        published_at=published_at,
        date_inferred=inferred,
        fetched_at=fetched_at,
        content_hash=content_hash(title, summary, content),
        translation=Translation(status="pending"),
        authors=raw.authors,
        categories=tuple(raw.categories) + tuple(t for t in feed.tags if t not in raw.categories),
        language_tag=tag,
        encoding_errors=_replacements(raw) if encoding_errors else 0,
    )


def _replacements(raw: RawEntry) -> int:
    return sum(v.count("\ufffd") for v in (raw.title, raw.summary, raw.content or "", *raw.authors))


def normalize_feed(parsed: ParsedFeed, feed: FeedConfig, fetched_at: datetime,
                   detector: LanguageDetector | None = None) -> tuple[list[Article], list[str]]:
    """All entries of one feed; a bad entry is skipped with a warning, never fails the feed.
    Duplicated GUIDs/links inside one document collapse to the first occurrence."""
    out: dict[str, Article] = {}
    problems: list[str] = []
    mojibake: Counter = Counter()
    for raw in parsed.entries:
        try:
            a = normalize_entry(raw, feed, fetched_at, detector, parsed.language_tag or parsed.language,
                                parsed.replaced_bytes > 0, mojibake)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"skipped entry {raw.guid or raw.link!r}: {exc.__class__.__name__}: {exc}")
            continue
        out.setdefault(a.id, a)
    if mojibake["repaired"]:
        problems.append(f"mojibake: repaired the text of {mojibake['repaired']} item(s) "
                        "(UTF-8 that was read as cp1252/latin-1 somewhere upstream)")
    if mojibake["garbled"]:
        problems.append(f"mojibake: the text of {mojibake['garbled']} item(s) is garbled and could not be "
                        "fully repaired (bytes were lost upstream); check the feed's encoding")
    if mojibake["repaired"] or mojibake["garbled"]:
        log(logger, 30 if mojibake["garbled"] else 20, "mojibake", feed_id=feed.id,
            repaired=mojibake["repaired"], garbled=mojibake["garbled"])
    return list(out.values()), problems
