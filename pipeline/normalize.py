"""RawEntry → Article: canonical URL, stable id, UTC dates, detected language, content hash."""

from __future__ import annotations

import calendar
import dataclasses
import re
import unicodedata
from collections import Counter
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .config import FeedConfig
from .identity import DISTINCT_SAME_LINK, article_id, distinct_id, distinguishing_key, entitled, same_story, sha1
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


def _route_fragment(fragment: str) -> str:
    """The fragment when it is a client-side route (``#/news/7``, ``#!/news/7``: single-page sites
    address their pages that way), else ``""`` (an anchor inside a page: ``#top``, ``#comments``)."""
    return fragment if fragment.startswith(("/", "!")) else ""


def canonical_url(url: str | None) -> str | None:
    """Lowercased scheme/host, default port dropped, tracking parameters removed, the fragment
    removed unless it is a client-side route (``https://spa.example/#/news/7`` keeps ``#/news/7``:
    it is what tells the site's stories apart).
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
    return urlunsplit((scheme, netloc, path, urlencode(query, doseq=True), _route_fragment(parts.fragment)))


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
        letters = sum(map(str.isalpha, text))  # (a generator per character costs 3x as much)
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


# Invisible characters that reorder or hide text (issue 16): bidi embeddings/overrides (U+202A–U+202E)
# and isolates (U+2066–U+2069), zero-width space (U+200B), word joiner (U+2060), BOM/ZWNBSP
# (U+FEFF) and the C1 controls (U+0080–U+009F).  Removed, not replaced by a space: "Оре\u200bшник"
# is the word Орешник again, which is what search and the alert rules must see.
_INVISIBLE_RE = re.compile("[\u202a-\u202e\u2066-\u2069\u200b\u2060\ufeff\x80-\x9f]")
# ZWNJ (U+200C) and ZWJ (U+200D) are needed inside words of some scripts (Persian ``می‌خواهم``,
# Devanagari/Bengali conjuncts, Malayalam chillu) and in emoji sequences (👩‍💻): they stay
# between two letters or marks of a script that uses them (code point U+0590 and above, except
# the Latin/Greek/Cyrillic extension blocks) and, for ZWJ, between two emoji; anywhere else (inside a
# Latin or Cyrillic word, at a word's edge) they only hide a word from search and are removed.
_JOINERS_RE = re.compile("[\u200c\u200d]")
_LCG_BLOCKS = ((0x1C80, 0x1CBF), (0x1D00, 0x1FFF), (0x2C60, 0x2C7F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F),
               (0xA720, 0xA7FF), (0xAB30, 0xAB6F), (0xFF00, 0xFFEF))


def _joining_letter(ch: str) -> bool:
    """A letter or mark of a script where ZWNJ/ZWJ shape the text (not Latin, Greek, Cyrillic)."""
    cp = ord(ch)
    if cp < 0x0590 or any(lo <= cp <= hi for lo, hi in _LCG_BLOCKS):
        return False
    return unicodedata.category(ch)[0] in "LM"


def _emoji_part(ch: str) -> bool:
    """A piece of an emoji ZWJ sequence: a symbol, a skin-tone modifier or the emoji selector."""
    return unicodedata.category(ch) in ("So", "Sk") or ch == "\ufe0f"


def strip_invisible(text: str) -> str:
    """``text`` without the characters that hide or reorder what a reader sees (see
    ``_INVISIBLE_RE``); ZWNJ/ZWJ kept only where a script or an emoji needs them."""
    if not text:
        return text
    text = _INVISIBLE_RE.sub("", text)
    if "\u200c" not in text and "\u200d" not in text:
        return text

    def keep(m: re.Match[str]) -> str:
        i = m.start()
        before = text[i - 1] if i > 0 else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        if before and after and _joining_letter(before) and _joining_letter(after):
            return m.group()
        if m.group() == "\u200d" and before and after and _emoji_part(before) and _emoji_part(after):
            return m.group()
        return ""

    return _JOINERS_RE.sub(keep, text)


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
    # invisible characters (bidi overrides, zero-width, C1 controls) go before anything else sees
    # the text: the stored title, the search index, the alert rules and every email agree
    title, summary = strip_invisible(_nfc(raw.title)), strip_invisible(_nfc(raw.summary))
    content = strip_invisible(_nfc(raw.content)) if raw.content else raw.content
    link = safe_link(raw.link)
    canonical = canonical_url(link)
    declared, tag = declared_language(feed, raw, feed_language)
    published_at, inferred = entry_datetime(raw.published, fetched_at, raw.published_raw)
    language = declared
    if detector is not None:
        language = detector.detect(f"{title}. {summary}", declared)
    scope = None if canonical is None or entitled(feed, canonical) else feed.id
    return Article(
        id=article_id(canonical, feed.url, raw.guid, title, summary, scope=scope),
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
    Copies of one story inside one document (same id, :func:`identity.same_story`) collapse to
    the first occurrence; distinct stories under one link (different guids, or no guids and
    different titles) each keep an id of their own (:func:`identity.distinct_id`), reported in
    the problems (one line per link)."""
    out: dict[str, Article] = {}
    problems: list[str] = []
    mojibake: Counter = Counter()
    shared: dict[str, int] = {}  # base id -> distinct stories beyond the first
    for raw in parsed.entries:
        try:
            a = normalize_entry(raw, feed, fetched_at, detector, parsed.language_tag or parsed.language,
                                parsed.replaced_bytes > 0, mojibake)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"skipped entry {raw.guid or raw.link!r}: {exc.__class__.__name__}: {exc}")
            continue
        first = out.get(a.id)
        if first is not None and not same_story(first.guid, first.title, a.guid, a.title):
            base = a.id
            a = a.replace(id=distinct_id(base, distinguishing_key(a.guid, a.title)))
            if a.id not in out:
                shared[base] = shared.get(base, 0) + 1
        out.setdefault(a.id, a)
    for base, n in shared.items():
        link = out[base].canonical_url or out[base].guid
        problems.append(f"{DISTINCT_SAME_LINK}: {n + 1} distinct stories (different guid or title) share {link!r}; "
                        "each is stored as its own item")
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
