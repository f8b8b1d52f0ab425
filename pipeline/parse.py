"""Hardened feed parsing: bytes we fetched → ``ParsedFeed`` of plain ``RawEntry`` records.

feedparser never fetches anything here: it gets a ``BytesIO`` (a ``str`` or
``bytes`` argument could be taken for a URL or a file name).  Before feedparser
sees the document we:

1. decode it ourselves: BOM, then the declared charset (HTTP header, XML
   declaration) when the bytes really are in it, else charset detection
   (charset-normalizer).  A document that is valid UTF-8 with multi-byte
   sequences is UTF-8 whatever it declares (windows-1251 labels on UTF-8 bodies,
   UTF-8 labels on windows-1251 bodies both happen);
2. drop characters that are illegal in XML (C0 controls) and whitespace before
   the XML declaration;
3. refuse documents that declare entities (billion laughs, quadratic blow-up and
   external entities all need ``<!ENTITY``; feedparser's fallback parser would
   expand them itself), in linear time: one regex over the prolog, taken as the
   longer of the XML prolog and feedparser's own head split;
4. replace numeric character references to surrogates/controls/out-of-range
   code points (they crash feedparser's fallback parser) with U+FFFD, then hand
   feedparser UTF-8 with a matching declaration;
5. refuse documents with absurd item counts (counted on the decoded text, any
   case) before parsing them.

Text fields come out as *plain text*: HTML (``text/html`` and xhtml) is turned
into text with nh3 (script/style contents dropped), entities decoded,
whitespace collapsed.  ``text/plain`` values stay text: a title ``<script>`` is
the seven characters, never markup; every renderer downstream escapes.
"""

from __future__ import annotations

import html
import io
import re
import time
from dataclasses import dataclass, field

import charset_normalizer
import nh3

from .errors import FeedParseError

MAX_TITLE = 1_000
MAX_SUMMARY = 20_000
MAX_CONTENT = 200_000
MAX_ITEMS_HARD = 5_000  # more <item>/<entry> tags than this: refuse the document (max_items_per_feed keeps 1,000)

_XML_DECL_RE = re.compile(rb"^\s*<\?xml[^>]{0,200}\?>", re.S)
_ENC_IN_DECL_RE = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
_DOCTYPE_RE = re.compile(r"<!DOCTYPE", re.I)
_ENTITY_DECL_RE = re.compile(r"<!ENTITY", re.I)
_ILLEGAL_XML_CHARS_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_WS_RE = re.compile(r"\s+")
_ENTITY_RE = re.compile(r"&(#\d{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")
# counted on the decoded text (a UTF-16 body hides ASCII patterns in its bytes) and without
# regard to case (feedparser's fallback parser lowercases tag names: <ITEM> is an item too)
_ITEM_TAG_RE = re.compile(r"<(?:\w+:)?(?:item|entry)[\s>/]", re.I)
# where feedparser itself thinks the prolog ends (it lifts <!ENTITY declarations out of this part
# and expands the "safe" ones in its fallback parser): the first '<' followed by an ASCII word char
_FEEDPARSER_HEAD_END_RE = re.compile(r"<[A-Za-z0-9_]")
# numeric character references; ones naming a surrogate, a C0 control or a value beyond U+10FFFF
# crash feedparser's fallback parser (chr(0xD800).encode()) and would fail the whole feed
_CHARREF_RE = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,16})|([0-9]{1,20}));")

# what Russian/English news feeds are really written in; a short list keeps detection
# from choosing exotic code pages whose letters differ (cp1257 for Portuguese, ...)
DETECTION_CANDIDATES = ["utf_8", "cp1251", "koi8_r", "cp1252", "iso8859_5", "cp866", "mac_cyrillic",
                        "koi8_u", "iso8859_15"]

_BOMS = [
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
]

_SINGLE_BYTE_ALIASES = {"windows-1251", "cp1251", "koi8-r", "koi8-u", "iso-8859-5", "windows-1252", "cp1252",
                        "iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii", "iso-8859-15", "maccyrillic",
                        "ibm866", "cp866"}


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One feed entry as plain data (picklable, no feedparser objects)."""

    title: str
    summary: str
    content: str | None
    link: str | None
    guid: str | None
    published: tuple[int, ...] | None  # UTC struct_time fields (feedparser's *_parsed)
    published_raw: str | None
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    entries: tuple[RawEntry, ...]
    title: str = ""
    link: str | None = None
    language: str | None = None
    encoding: str | None = None
    version: str | None = None
    warnings: tuple[str, ...] = ()
    parse_seconds: float = 0.0
    dropped_entries: int = 0
    extra: dict = field(default_factory=dict)


def _charset_from_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = re.search(r"charset\s*=\s*\"?([A-Za-z0-9._:-]{1,40})", content_type, re.I)
    return m.group(1).lower() if m else None


def _norm_enc(name: str | None) -> str | None:
    if not name:
        return None
    name = name.strip().lower().replace("_", "-")
    return {"utf8": "utf-8", "win-1251": "windows-1251", "cp-1251": "windows-1251",
            "x-cp1251": "windows-1251", "unicode": "utf-16"}.get(name, name)


def _valid_codec(name: str | None) -> str | None:
    import codecs

    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_document(data: bytes, content_type: str | None = None) -> tuple[str, str, list[str]]:
    """Bytes → (text, encoding used, warnings)."""
    warnings: list[str] = []
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(enc), enc, warnings
            except UnicodeDecodeError:
                warnings.append(f"byte-order mark says {enc} but the body is not")
                data = data[len(bom):]
                break
    head = data[:1024].lstrip()
    decl_enc = None
    m = _XML_DECL_RE.match(head)
    if m:
        em = _ENC_IN_DECL_RE.search(m.group(0))
        if em:
            decl_enc = _norm_enc(em.group(1).decode("ascii"))
    http_enc = _norm_enc(_charset_from_content_type(content_type))
    # RFC 7303: the HTTP charset wins over the XML declaration
    declared = http_enc or decl_enc
    declared_codec = _valid_codec(declared)
    if declared and not declared_codec:
        warnings.append(f"unknown declared encoding {declared!r}")

    is_utf8 = True
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        is_utf8 = False
        text = ""
    has_multibyte = is_utf8 and not data.isascii()

    if declared_codec in (None, "utf-8"):
        if is_utf8:
            return text, "utf-8", warnings
    elif declared_codec in {_valid_codec(a) for a in _SINGLE_BYTE_ALIASES} and has_multibyte:
        warnings.append(f"declared {declared} but the body is UTF-8; decoded as UTF-8")
        return text, "utf-8", warnings
    elif declared_codec and not declared_codec.startswith("utf-8"):
        try:
            return data.decode(declared_codec), declared_codec, warnings
        except UnicodeDecodeError:
            pass
    # declared encoding missing or wrong: detect
    best = charset_normalizer.from_bytes(data[:500_000], cp_isolation=DETECTION_CANDIDATES).best()
    if best is None or not best.encoding:
        warnings.append("could not detect the encoding; decoded as UTF-8 with replacement characters")
        return data.decode("utf-8", errors="replace"), "utf-8", warnings
    enc = best.encoding
    if declared:
        warnings.append(f"declared {declared} but the body is not; detected {enc}")
    else:
        warnings.append(f"no usable encoding declared; detected {enc}")
    return data.decode(enc, errors="replace"), enc, warnings


def _prepare(text: str) -> bytes:
    """Defuse and normalise the document text; return UTF-8 bytes for feedparser."""
    text = text.lstrip("\ufeff \t\r\n")
    # drop illegal characters *before* looking for declarations: "<!EN\x01TITY" must not pass
    # the check and then become "<!ENTITY" for feedparser
    text = _ILLEGAL_XML_CHARS_RE.sub("", text)
    # the prolog as an XML parser sees it, or as feedparser's own head split sees it, whichever is
    # longer (a stray "</x>" before the DOCTYPE, or a megabyte of comment, must not hide entities)
    m_head = _FEEDPARSER_HEAD_END_RE.search(text)
    prolog_end = max(_first_element_start(text), m_head.start() if m_head else len(text))
    if _ENTITY_DECL_RE.search(text, 0, prolog_end):
        kind = "in its DTD" if _DOCTYPE_RE.search(text, 0, prolog_end) else "before its root element"
        raise FeedParseError(f"refused: the document declares XML entities {kind} "
                             "(entity expansion / external entity attack)")
    text = _CHARREF_RE.sub(_safe_charref, text)
    # rewrite the declaration to match the bytes we hand over
    m = re.match(r"<\?xml[^>]{0,200}\?>", text)
    if m:
        decl = re.sub(r"""encoding\s*=\s*["'][^"']*["']""", 'encoding="utf-8"', m.group(0))
        text = decl + text[m.end():]
    return text.encode("utf-8")


def _safe_charref(m: re.Match) -> str:
    """A numeric character reference kept when it names a legal XML character; a C0 control is
    dropped (like a raw one), a surrogate or out-of-range value becomes U+FFFD."""
    cp = int(m.group(1), 16) if m.group(1) is not None else int(m.group(2))
    if cp < 0x20 and cp not in (0x9, 0xA, 0xD):
        return ""
    if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF or cp in (0xFFFE, 0xFFFF):
        return "&#xFFFD;"
    return m.group(0)


def _first_element_start(text: str) -> int:
    """Index of the first start tag of the root element (skipping declarations, PIs,
    comments and the DOCTYPE with its internal subset).  Linear in the document, which the
    fetcher already capped; no shorter cap here: a prolog padded past any cap would otherwise
    hide its entity declarations."""
    limit = len(text)
    i = 0
    while i < limit:
        j = text.find("<", i, limit)
        if j < 0:
            return limit
        if text.startswith("<?", j):
            k = text.find("?>", j)
            i = (k + 2) if k >= 0 else limit
        elif text.startswith("<!--", j):
            k = text.find("-->", j)
            i = (k + 3) if k >= 0 else limit
        elif text.startswith("<!", j):
            # DOCTYPE, possibly with an internal subset [...]
            k_br = text.find("[", j, limit)
            k_gt = text.find(">", j, limit)
            if k_br >= 0 and (k_gt < 0 or k_br < k_gt):
                k = text.find("]", k_br, limit)
                k = text.find(">", k, limit) if k >= 0 else -1
            else:
                k = k_gt
            i = (k + 1) if k >= 0 else limit
        else:
            return j
    return limit


def html_to_text(value: str) -> str:
    """HTML fragment → plain text (tags removed, script/style dropped, entities decoded)."""
    if "<" in value:
        # block-level tags become spaces so words do not run together
        value = re.sub(r"(?i)<\s*(br|/p|/div|/li|/h[1-6]|p|div|li|tr|/tr)\b[^>]*>", " ", value)
        value = nh3.clean(value, tags=set(), attributes={}, strip_comments=True)
    return html.unescape(value)


def clean_text(value: str | None, content_type: str | None = "text/plain", limit: int = MAX_SUMMARY) -> str:
    """Plain text from a feed value of the given type, whitespace normalised, capped."""
    if not value:
        return ""
    if len(value) > limit * 4:
        value = value[: limit * 4]
    ctype = (content_type or "text/plain").lower()
    if "html" in ctype:
        text = html_to_text(value)
    else:
        text = value
        if _ENTITY_RE.search(text):  # double-escaped entities (&amp;#8211;) are common
            text = html.unescape(text)
    text = _ILLEGAL_XML_CHARS_RE.sub("", text)
    text = _WS_RE.sub(" ", text).strip()
    if len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        text = text[: cut if cut > limit * 0.8 else limit].rstrip() + "…"
    return text


def _detail_type(entry, key: str) -> str:
    d = entry.get(f"{key}_detail")
    return (d or {}).get("type", "text/plain") if isinstance(d, dict) else "text/plain"


def _entry_to_raw(entry) -> RawEntry:
    title = clean_text(entry.get("title"), _detail_type(entry, "title"), MAX_TITLE)
    summary_html = entry.get("summary")
    summary = clean_text(summary_html, _detail_type(entry, "summary"), MAX_SUMMARY)
    content = None
    contents = entry.get("content") or []
    if contents:
        best = max(contents, key=lambda c: len(c.get("value") or ""))
        content = clean_text(best.get("value"), best.get("type", "text/html"), MAX_CONTENT) or None
        if content and content == summary:
            content = None
    if not summary and content:
        summary = clean_text(content, "text/plain", MAX_SUMMARY)
    link = entry.get("link")
    if not link:
        for ln in entry.get("links") or []:
            if ln.get("rel", "alternate") == "alternate" and ln.get("href"):
                link = ln["href"]
                break
    guid = entry.get("id") or None
    published = entry.get("published_parsed") or entry.get("updated_parsed") or entry.get("created_parsed")
    published_raw = entry.get("published") or entry.get("updated") or entry.get("created")
    authors = tuple(clean_text(a.get("name"), "text/plain", 200) for a in entry.get("authors") or []
                    if isinstance(a, dict) and a.get("name"))
    if not authors and entry.get("author"):
        authors = (clean_text(entry.get("author"), "text/plain", 200),)
    categories = tuple(dict.fromkeys(
        clean_text(t.get("term") or t.get("label"), "text/plain", 200) for t in entry.get("tags") or []
        if isinstance(t, dict) and (t.get("term") or t.get("label"))))
    return RawEntry(
        title=title, summary=summary, content=content,
        link=(link or "").strip()[:2048] or None,
        guid=str(guid).strip()[:1024] if guid else None,
        published=tuple(published[:6]) if published else None,
        published_raw=str(published_raw)[:200] if published_raw else None,
        authors=tuple(a for a in authors if a)[:20], categories=tuple(c for c in categories if c)[:50],
    )


def _count_items(text: str, limit: int) -> int:
    """Item/entry start tags in ``text``, counting stops at ``limit + 1`` (no list of a million matches)."""
    n = 0
    for _ in _ITEM_TAG_RE.finditer(text):
        n += 1
        if n > limit:
            break
    return n


def parse_feed(data: bytes, *, url: str, content_type: str | None = None,
               max_items: int = 1000) -> ParsedFeed:
    """Parse fetched bytes.  Raises FeedParseError when nothing usable is in them."""
    import feedparser  # heavy-ish import kept out of DAG parse time

    from .dates import register as _register_dates

    _register_dates()
    started = time.monotonic()
    if not data or not data.strip():
        raise FeedParseError("empty response body")
    text, encoding, warnings = decode_document(data, content_type)
    n_items = _count_items(text, MAX_ITEMS_HARD)
    if n_items > MAX_ITEMS_HARD:
        raise FeedParseError(f"refused: more than {MAX_ITEMS_HARD} items in one document")
    prepared = _prepare(text)
    headers = {"content-type": "application/xml; charset=utf-8"}
    if url and "://" in url:
        headers["content-location"] = url
    # feedparser's own HTML sanitising and relative-URI rewriting are off: every text field goes
    # through clean_text (nh3, every tag removed) and links are resolved in normalize.py; the two
    # passes cost a quarter of feedparser's time (bench/poll.py bodies: 1.24 -> 0.93 ms per item)
    parsed = feedparser.parse(io.BytesIO(prepared), response_headers=headers,
                              resolve_relative_uris=False, sanitize_html=False)
    if parsed.get("bozo"):
        exc = parsed.get("bozo_exception")
        warnings.append(f"malformed feed, kept what could be read: {exc.__class__.__name__}: {exc}"[:500])
    entries_src = parsed.get("entries") or []
    if not entries_src:
        if parsed.get("bozo") or not parsed.get("version"):
            exc = parsed.get("bozo_exception")
            reason = f"{exc.__class__.__name__}: {exc}" if exc else "no RSS/Atom/RDF root element"
            raise FeedParseError(f"not a usable feed ({reason})"[:500])
    dropped = max(0, len(entries_src) - max_items)
    entries = []
    for e in entries_src[:max_items]:
        try:
            raw = _entry_to_raw(e)
        except Exception as exc:  # noqa: BLE001 - one bad item never stops its feed
            warnings.append(f"skipped one entry: {exc.__class__.__name__}: {exc}"[:300])
            continue
        if not (raw.title or raw.summary or raw.link):
            warnings.append("skipped an entry with no title, summary or link")
            continue
        entries.append(raw)
    if dropped:
        warnings.append(f"kept the first {max_items} of {len(entries_src)} entries")
    feed = parsed.get("feed") or {}
    return ParsedFeed(
        entries=tuple(entries),
        title=clean_text(feed.get("title"), _detail_type(feed, "title"), MAX_TITLE),
        link=feed.get("link"),
        language=(feed.get("language") or "")[:2].lower() or None,
        encoding=encoding,
        version=parsed.get("version") or None,
        warnings=tuple(warnings),
        parse_seconds=time.monotonic() - started,
        dropped_entries=dropped,
    )
