"""Hardened feed parsing: bytes we fetched → ``ParsedFeed`` of plain ``RawEntry`` records.

feedparser never fetches anything here: it gets a ``BytesIO`` (a ``str`` or
``bytes`` argument could be taken for a URL or a file name).  Before feedparser
sees the document we:

1. decode it ourselves (:func:`decode_bytes`): BOM → the declared encoding if the bytes really
   are in it → UTF-16/32 by the NUL pattern → UTF-8, also "almost UTF-8" (a few invalid
   sequences become U+FFFD and are counted) → detection among the code pages Russian/English
   feeds use.  Every fallback is a warning with its reason (logged once per feed);
2. drop characters that are illegal in XML (C0 controls) and whitespace before
   the XML declaration;
3. refuse documents that declare entities (billion laughs, quadratic blow-up and
   external entities all need ``<!ENTITY``; feedparser's fallback parser would
   expand them itself), in linear time: one regex over the prolog, taken as the
   longer of the XML prolog and feedparser's own head split; a prolog longer than
   64 KiB is then cut down to its XML and DOCTYPE declarations;
4. neutralise numeric character references of any length or padding that name a
   surrogate/control/out-of-range code point (they crash feedparser's fallback parser),
   then hand feedparser UTF-8 with a matching declaration;
5. refuse documents with absurd item counts (real ``<item>``/``<entry>`` elements, any
   case, not the text of CDATA sections or comments) before parsing them.

Every text field (title, summary, content, author, categories) is *plain text*, made by one
function (:func:`clean_text` / ``_plain``) from the field's declared type, whatever feedparser put
where: HTML, XHTML and any other non-text type through :func:`html_to_text` (comments, <head>,
script/style/iframe contents dropped; SVG/MathML text kept; entities decoded); ``text/plain``
stays text (a title ``<script>`` is those characters, entities decoded once and never into
markup); a value with no declared type (feedparser copies content into ``summary``) is HTML if it
looks like markup.  A content-only entry gets a summary of its first paragraph(s)
(:func:`summary_from_content`), and ``content`` keeps the full text.  Every scan over feed text
is linear in its length.
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
# (any number of digits: a zero-padded or over-long reference must not slip past; ';' optional as
# feedparser's fallback parser takes it so).  Linear: each match ends at the first non-digit.
_CHARREF_RE = re.compile(r"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));?")

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
    language: str | None = None  # xml:lang of the entry's text, as written ("en-US")


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
    language_tag: str | None = None  # the feed's language as written (<language>, xml:lang, Content-Language)
    decoding: str = "utf-8"  # how the bytes were decoded (Decoded.how)
    replaced_bytes: int = 0  # invalid byte sequences replaced with U+FFFD while decoding


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


def _nul_pattern(data: bytes) -> str | None:
    """UTF-16/32 without a byte-order mark, told by where the NULs of ASCII characters fall in the
    first bytes (XML 1.0 appendix F; a feed starts with ``<`` and markup is mostly ASCII)."""
    head = data[:4096]
    n = len(head) - len(head) % 4
    if n < 8:
        return None
    head = head[:n]
    zeros = [head[i::4].count(0) for i in range(4)]
    quarter = n // 4
    # UTF-32: three NULs out of every four bytes for ASCII text
    if zeros[1] > 0.7 * quarter and zeros[2] > 0.7 * quarter:
        if zeros[3] > 0.7 * quarter and zeros[0] < 0.3 * quarter:
            return "utf-32-le"
        if zeros[0] > 0.7 * quarter and zeros[3] < 0.3 * quarter:
            return "utf-32-be"
    even, odd = zeros[0] + zeros[2], zeros[1] + zeros[3]
    half = n // 2
    if odd > 0.6 * half and even < 0.1 * half:
        return "utf-16-le"
    if even > 0.6 * half and odd < 0.1 * half:
        return "utf-16-be"
    return None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded document: the text, the codec used, how we got there, and how many invalid
    byte sequences became U+FFFD (0 unless ``how`` is ``almost-utf-8``)."""

    text: str
    encoding: str
    how: str  # bom | declared | utf-8 | nul-pattern | almost-utf-8 | detected | replaced
    replaced: int = 0
    warnings: tuple[str, ...] = ()


# share of invalid sequences among the non-ASCII sequences up to which a body is "almost UTF-8"
# (a single-byte Cyrillic page read as UTF-8 has nearly every non-ASCII byte invalid: a cp1251
# letter is a valid UTF-8 lead byte only before one of the few bytes 0x80-0xBF it uses for
# punctuation, so real text never comes near 5 %)
ALMOST_UTF8_MAX_INVALID = 0.05


_SINGLE_BYTE_CODECS = frozenset(filter(None, (_valid_codec(a) for a in _SINGLE_BYTE_ALIASES)))


def decode_bytes(data: bytes, content_type: str | None = None) -> Decoded:
    """Bytes → text, in this order (docs/RELIABILITY.md, "Decoding order"):

    1. a byte-order mark;
    2. the declared encoding (HTTP charset, else the XML declaration) when the bytes really are
       in it (a single-byte label on a body that is valid multi-byte UTF-8 is UTF-8);
    3. UTF-16/32 without a BOM, by the NUL pattern of its ASCII characters;
    4. UTF-8, also when it is "almost UTF-8": a few invalid sequences among many valid ones
       become U+FFFD and are counted;
    5. detection among the code pages Russian/English feeds use (``DETECTION_CANDIDATES``).

    Every fallback says why in ``warnings``."""
    warnings: list[str] = []
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return Decoded(data[len(bom):].decode(enc), enc, "bom")
            except UnicodeDecodeError:
                warnings.append(f"byte-order mark says {enc} but the body is not")
                data = data[len(bom):]
                break
    nul_enc = _nul_pattern(data)
    head = data[:1024]
    if nul_enc is not None:  # read the XML declaration through the NULs
        head = data[:4096].decode(nul_enc, errors="replace")[:1024].encode("ascii", errors="replace")
    head = head.lstrip()
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

    if declared_codec in ("utf-16", "utf-32") and nul_enc and nul_enc.startswith(declared_codec):
        declared_codec = nul_enc  # "utf-16" without a BOM: the NULs say which end is first
    if nul_enc is not None and declared_codec != nul_enc:
        try:
            text = data.decode(nul_enc)
        except UnicodeDecodeError:
            text = None
        if text is not None:
            if declared and declared_codec not in ("utf-16", "utf-32"):
                warnings.append(f"declared {declared} but the body is {nul_enc} (NUL pattern); decoded as {nul_enc}")
            elif not declared:
                warnings.append(f"no encoding declared; the NUL pattern says {nul_enc}")
            return Decoded(text, nul_enc, "nul-pattern", warnings=tuple(warnings))

    is_utf8 = True
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        is_utf8 = False
        text = ""
    has_multibyte = is_utf8 and not data.isascii()

    if declared_codec in (None, "utf-8"):
        if is_utf8:
            return Decoded(text, "utf-8", "utf-8" if declared_codec is None else "declared",
                           warnings=tuple(warnings))
    elif declared_codec in _SINGLE_BYTE_CODECS and has_multibyte:
        warnings.append(f"declared {declared} but the body is UTF-8; decoded as UTF-8")
        return Decoded(text, "utf-8", "utf-8", warnings=tuple(warnings))
    elif declared_codec in _SINGLE_BYTE_CODECS and not is_utf8 and (almost := _almost_utf8(data)) is not None:
        text, replaced = almost
        warnings.append(f"declared {declared} but the body is UTF-8 with {replaced} invalid byte sequence(s); "
                        "decoded as UTF-8, those replaced with U+FFFD")
        return Decoded(text, "utf-8", "almost-utf-8", replaced, tuple(warnings))
    elif declared_codec:
        try:
            return Decoded(data.decode(declared_codec), declared_codec, "declared", warnings=tuple(warnings))
        except UnicodeDecodeError:
            pass
    if not is_utf8:
        almost = _almost_utf8(data)
        if almost is not None:
            text, replaced = almost
            warnings.append(f"{replaced} invalid byte sequence(s) in an otherwise UTF-8 body"
                            + (f" (declared {declared})" if declared and declared_codec != "utf-8" else "")
                            + "; replaced with U+FFFD")
            return Decoded(text, "utf-8", "almost-utf-8", replaced, tuple(warnings))
    # declared encoding missing or wrong: detect
    best = charset_normalizer.from_bytes(data[:500_000], cp_isolation=DETECTION_CANDIDATES).best()
    if best is None or not best.encoding:
        text = data.decode("utf-8", errors="replace")
        warnings.append("could not detect the encoding; decoded as UTF-8 with replacement characters")
        return Decoded(text, "utf-8", "replaced", _count_replaced(data, text), tuple(warnings))
    enc = best.encoding
    if declared:
        warnings.append(f"declared {declared} but the body is not; detected {enc}")
    else:
        warnings.append(f"no usable encoding declared; detected {enc}")
    return Decoded(data.decode(enc, errors="replace"), enc, "detected", warnings=tuple(warnings))


def _count_replaced(data: bytes, text: str) -> int:
    """U+FFFD characters that ``decode(errors="replace")`` made (not the ones the body had)."""
    return text.count("\ufffd") - data.count(b"\xef\xbf\xbd")


def _almost_utf8(data: bytes) -> tuple[str, int] | None:
    """(text, replaced) when ``data`` is UTF-8 but for a few invalid sequences, else None."""
    text = data.decode("utf-8", errors="replace")
    replaced = _count_replaced(data, text)
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    valid_multibyte = non_ascii - replaced - data.count(b"\xef\xbf\xbd")
    if replaced <= 0 or valid_multibyte <= 0:
        return None
    if replaced <= ALMOST_UTF8_MAX_INVALID * (valid_multibyte + replaced):
        return text, replaced
    return None


def decode_document(data: bytes, content_type: str | None = None) -> tuple[str, str, list[str]]:
    """Bytes → (text, encoding used, warnings); see :func:`decode_bytes`."""
    d = decode_bytes(data, content_type)
    return d.text, d.encoding, list(d.warnings)


def _prepare(text: str) -> bytes:
    """Defuse and normalise the document text; return UTF-8 bytes for feedparser."""
    text = text.lstrip("\ufeff \t\r\n")
    # drop illegal characters *before* looking for declarations: "<!EN\x01TITY" must not pass
    # the check and then become "<!ENTITY" for feedparser
    text = _ILLEGAL_XML_CHARS_RE.sub("", text)
    # the prolog as an XML parser sees it, or as feedparser's own head split sees it, whichever is
    # longer (a stray "</x>" before the DOCTYPE, or a megabyte of comment, must not hide entities)
    m_head = _FEEDPARSER_HEAD_END_RE.search(text)
    prolog_end = max(root := _first_element_start(text), m_head.start() if m_head else len(text))
    if _ENTITY_DECL_RE.search(text, 0, prolog_end):
        kind = "in its DTD" if _DOCTYPE_RE.search(text, 0, prolog_end) else "before its root element"
        raise FeedParseError(f"refused: the document declares XML entities {kind} "
                             "(entity expansion / external entity attack)")
    if root > PROLOG_KEEP:
        text = _slim_prolog(text, root)
    text = _CHARREF_RE.sub(_safe_charref, text)
    # rewrite the declaration to match the bytes we hand over
    m = re.match(r"<\?xml[^>]{0,200}\?>", text)
    if m:
        decl = re.sub(r"""encoding\s*=\s*["'][^"']*["']""", 'encoding="utf-8"', m.group(0))
        text = decl + text[m.end():]
    return text.encode("utf-8")


PROLOG_KEEP = 64 * 1024  # a longer prolog is cut down to its XML and DOCTYPE declarations


def _slim_prolog(text: str, root: int) -> str:
    """The document with a long prolog (megabytes of comments, PIs or bogus ``<!x>``, already
    checked for entity declarations) reduced to its XML declaration and a DOCTYPE of sane size:
    feedparser's fallback parser took ~10 s per 4 MB of ``<!x>``, and none of it is content."""
    keep = []
    m = re.match(r"<\?xml[^>]{0,200}\?>", text)
    if m:
        keep.append(m.group(0))
    d = _DOCTYPE_RE.search(text, 0, root)
    if d is not None:
        end = _first_element_start(text[d.start():root] + "<x>")  # the DOCTYPE's own end
        if 0 < end <= PROLOG_KEEP:
            keep.append(text[d.start():d.start() + end])
    keep.append("\n")
    return "".join(keep) + text[root:]


def _safe_charref(m: re.Match) -> str:
    """Every numeric character reference, whatever its length or zero padding, comes out as one
    feedparser can take: a legal XML character is kept (written canonically when it was padded,
    over-long or missing its ';'), a C0 control is dropped (like a raw one), a surrogate or
    out-of-range value becomes U+FFFD.  (Over-long references used to slip past fixed digit limits
    and crash feedparser, failing the feed every cycle.)"""
    hex_digits, dec_digits = m.group(1), m.group(2)
    digits = (hex_digits if hex_digits is not None else dec_digits).lstrip("0") or "0"
    if len(digits) > 8:  # beyond U+10FFFF in either base; never int() a 5,000-digit string
        return "&#xFFFD;"
    cp = int(digits, 16 if hex_digits is not None else 10)
    if cp < 0x20 and cp not in (0x9, 0xA, 0xD):
        return ""
    if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF or cp in (0xFFFE, 0xFFFF):
        return "&#xFFFD;"
    whole = m.group(0)
    if whole.endswith(";") and len(whole) <= 12 and not (hex_digits or dec_digits).startswith("0"):
        return whole
    return f"&#x{cp:X};"


def _first_element_start(text: str) -> int:
    """Index of the first start tag of the root element (skipping declarations, PIs,
    comments and the DOCTYPE with its internal subset).  Linear in the document, which the
    fetcher already capped: every search starts where the last one ended and looks no further
    than it must (a '[' is looked for only up to the declaration's '>': one search to the end
    per ``<!x>`` made 2 MB of ``<!x>`` take 11 s).  No shorter cap: a prolog padded past any
    cap would otherwise hide its entity declarations."""
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
            k_gt = text.find(">", j, limit)
            k_br = text.find("[", j, k_gt if k_gt >= 0 else limit)
            if k_br >= 0:
                k = text.find("]", k_br, limit)
                k = text.find(">", k, limit) if k >= 0 else -1
            else:
                k = k_gt
            i = (k + 1) if k >= 0 else limit
        else:
            return j
    return limit


# --- text fields -------------------------------------------------------------------------------------

# block-level tags end a paragraph.  Linear: the tag name must follow '<' (or '</') directly, as in
# HTML ('< p' is text), and the attributes stop at the next '<' ('[^>]*' scanned to the end of the
# value for every '<br' of '<br<br<br…': 200k characters took 13.8 s)
_BLOCK_TAG_RE = re.compile(
    r"</?(?:br|p|div|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|pre|section|article|header|footer|"
    r"dd|dt|dl|figcaption|hr)\b[^<>]*>", re.I)
# SVG and MathML: nh3 drops foreign content with its text, so we take the text out first
_FOREIGN_START_RE = re.compile(r"<(svg|math)\b", re.I)
_SCRIPT_STYLE_RE = re.compile(r"<(script|style)\b", re.I)
_ANY_TAG_RE = re.compile(r"<[^<>]*>")
# elements whose content is not text a reader sees (raw text in HTML5: an <iframe>'s "content"
# is markup that would otherwise come out as literal tags)
_DROP_WITH_CONTENT = {"script", "style", "iframe", "noembed", "noframes", "noscript", "xmp", "template"}
# markup in a value whose type nobody declared (feedparser copies content into ``summary``)
_LOOKS_HTML_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>|<!--")

SUMMARY_FROM_CONTENT = 600  # a content-only entry's summary: whole first paragraphs up to this many characters


def _strip_comments(value: str) -> str:
    """Remove comments in linear time.  A comment ends at the next '-->'; one that never closes
    ends at its first '>' (as in feedparser's sanitiser), so '<!-- -- x >text' does not swallow
    the rest of the value the way an HTML5 parser would."""
    out: list[str] = []
    i, n = 0, len(value)
    closers_left = True  # once a '-->' search failed, none lies further on
    while i < n:
        j = value.find("<!--", i)
        if j < 0:
            break
        out.append(value[i:j])
        k = value.find("-->", j + 4) if closers_left else -1
        if k >= 0:
            i = k + 3
            continue
        closers_left = False
        k = value.find(">", j + 4)
        i = (k + 1) if k >= 0 else n
    out.append(value[i:])
    return "".join(out)


_HEAD_START_RE = re.compile(r"<head[\s>]", re.I)
_HEAD_END_RE = re.compile(r"</head\s*>", re.I)


def _drop_head(value: str) -> str:
    """A whole HTML document as a value: its <head> (title, meta, styles) is not the text.  Linear:
    one search for each start, one for each end, never two for the same stretch."""
    out: list[str] = []
    i = 0
    while True:
        m = _HEAD_START_RE.search(value, i)
        if m is None:
            break
        e = _HEAD_END_RE.search(value, m.end())
        if e is None:
            break
        out.append(value[i:m.start()])
        i = e.end()
    out.append(value[i:])
    return "".join(out)


def _drop_script_style(value: str) -> str:
    """<script>/<style> elements removed with their content (an unclosed one: to the end).  Linear."""
    out: list[str] = []
    i = 0
    while True:
        m = _SCRIPT_STYLE_RE.search(value, i)
        if m is None:
            break
        out.append(value[i:m.start()])
        e = re.compile(rf"</{m.group(1)}\s*>", re.I).search(value, m.end())
        if e is None:
            i = len(value)
            break
        i = e.end()
    out.append(value[i:])
    return " ".join(out)


def _foreign_to_text(value: str) -> str:
    """Each <svg>/<math> element replaced by its text (tags become spaces, scripts and styles go),
    escaped so nh3 keeps it as text.  Linear: each element's end is searched for once, from its start."""
    out: list[str] = []
    i = 0
    while True:
        m = _FOREIGN_START_RE.search(value, i)
        if m is None:
            break
        end_tag = re.compile(rf"</{m.group(1)}\s*>", re.I).search(value, m.end())
        stop = end_tag.end() if end_tag else len(value)
        inner = value[m.start():stop]
        inner = _drop_script_style(inner)
        inner = _ANY_TAG_RE.sub(" ", inner)
        out.append(value[i:m.start()])
        out.append(html.escape(html.unescape(inner), quote=False))
        i = stop
    out.append(value[i:])
    return "".join(out)


def html_to_text(value: str, *, paragraphs: bool = False) -> str:
    """HTML fragment → plain text (tags removed, script/style dropped, entities decoded).  Block
    tags become line breaks (``paragraphs=True`` keeps them; else callers collapse them).
    Every step is linear in the value."""
    if "<" in value:
        value = _drop_head(_strip_comments(value))
        value = _foreign_to_text(value)
        value = _BLOCK_TAG_RE.sub("\n", value)
        value = nh3.clean(value, tags=set(), clean_content_tags=_DROP_WITH_CONTENT, attributes={},
                          strip_comments=True)
    text = html.unescape(value)
    if not paragraphs:
        return text
    # str.split, not a regex: '\s*\n\s*' rescans a long run of spaces from each of its positions
    return "\n".join(p for p in (x.strip() for x in text.split("\n")) if p)


def _unescape_plain(text: str) -> str:
    """Entities left in a text/plain value (double-escaped feeds: ``&amp;#8211;``) decoded once,
    except those that would make markup of text: ``&lt;blink&gt;`` as text stays those characters."""
    def one(m: re.Match) -> str:
        out = html.unescape(m.group(0))
        return m.group(0) if ("<" in out or ">" in out) else out
    return _ENTITY_RE.sub(one, text)


def _plain(value: str, content_type: str | None) -> str:
    """The one way a feed value becomes plain text, by its declared type: HTML and XHTML through
    :func:`html_to_text`; text/plain kept as text (entities decoded once, never into markup); no
    declared type: HTML when it looks like markup, else text."""
    ctype = (content_type or "").strip().lower()
    if not ctype:
        ctype = "text/html" if _LOOKS_HTML_RE.search(value) else "text/plain"
    if ctype in ("text/plain", "text", "plain"):
        return _unescape_plain(value) if "&" in value else value
    # html, xhtml, any XML type and anything else (application/octet-stream …): never kept as markup
    return html_to_text(value, paragraphs=True)


def _cap(text: str, limit: int) -> str:
    if len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        text = text[: cut if cut > limit * 0.8 else limit].rstrip() + "…"
    return text


def clean_text(value: str | None, content_type: str | None = "text/plain", limit: int = MAX_SUMMARY) -> str:
    """Plain text from a feed value of the given type (None: sniffed), whitespace normalised, capped."""
    if not value:
        return ""
    if len(value) > limit * 4:
        value = value[: limit * 4]
    text = _plain(value, content_type)
    text = _ILLEGAL_XML_CHARS_RE.sub("", text)
    return _cap(_WS_RE.sub(" ", text).strip(), limit)


def summary_from_content(value: str | None, content_type: str | None, limit: int = SUMMARY_FROM_CONTENT) -> str:
    """A content-only entry's summary: its first paragraph(s) as plain text, whole paragraphs
    while they fit in ``limit`` characters (the first one cut at a word if it alone is longer)."""
    if not value:
        return ""
    text = _ILLEGAL_XML_CHARS_RE.sub("", _plain(value[: MAX_CONTENT * 4], content_type))
    out: list[str] = []
    size = 0
    for para in text.split("\n"):
        para = _WS_RE.sub(" ", para).strip()
        if not para:
            continue
        if out and size + 1 + len(para) > limit:
            break
        out.append(para)
        size += len(para) + (1 if len(out) > 1 else 0)
        if size >= limit:
            break
    return _cap(" ".join(out), limit)


def _detail_type(entry, key: str) -> str | None:
    """The declared type of ``entry[key]``; None when feedparser gave none (it copies content
    into ``summary`` without a ``summary_detail``)."""
    d = entry.get(f"{key}_detail")
    return d.get("type") or None if isinstance(d, dict) else None


def _detail_lang(entry, key: str) -> str | None:
    d = entry.get(f"{key}_detail")
    return (d.get("language") or None) if isinstance(d, dict) else None


def _entry_to_raw(entry) -> RawEntry:
    title = clean_text(entry.get("title"), _detail_type(entry, "title") or None, MAX_TITLE)
    contents = [c for c in entry.get("content") or [] if isinstance(c, dict) and c.get("value")]
    best = max(contents, key=lambda c: len(c["value"])) if contents else None
    content = None
    if best is not None:
        content = clean_text(best["value"], best.get("type") or "text/html", MAX_CONTENT) or None
    summary_type = _detail_type(entry, "summary")
    raw_summary = entry.get("summary")
    if summary_type is None and best is not None and (not raw_summary or any(
            raw_summary == c["value"] for c in contents)):
        # a content-only entry: feedparser copied the content into ``summary`` with no type;
        # derive a short summary from the content instead (content keeps the full text)
        summary = summary_from_content(best["value"], best.get("type") or "text/html")
    else:
        summary = clean_text(raw_summary, summary_type, MAX_SUMMARY)
    if content and content == summary:
        content = None
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
    language = (_detail_lang(entry, "title") or _detail_lang(entry, "summary")
                or (best.get("language") if best is not None else None) or None)
    return RawEntry(
        title=title, summary=summary, content=content,
        link=(link or "").strip()[:2048] or None,
        guid=str(guid).strip()[:1024] if guid else None,
        published=tuple(published[:6]) if published else None,
        published_raw=str(published_raw)[:200] if published_raw else None,
        authors=tuple(a for a in authors if a)[:20], categories=tuple(c for c in categories if c)[:50],
        language=str(language).strip()[:35] if language else None,
    )


_ITEM_SCAN_RE = re.compile(r"<!\[CDATA\[|<!--|<(?:\w+:)?(?:item|entry)[\s>/]", re.I)


def _count_items(text: str, limit: int) -> int:
    """Item/entry start tags in ``text`` that are elements (not inside a CDATA section or a comment),
    counting stops at ``limit + 1``.  Linear: one pass, each section's end found once."""
    n = 0
    pos = 0
    while True:
        m = _ITEM_SCAN_RE.search(text, pos)
        if m is None:
            return n
        tok = m.group(0)
        if tok.startswith("<![") or tok.startswith("<!-"):
            end = text.find("]]>" if tok.startswith("<![") else "-->", m.end())
            if end < 0:
                return n  # the rest of the document is inside it
            pos = end + 3
            continue
        n += 1
        if n > limit:
            return n
        pos = m.end()


def language_subtag(tag: str | None) -> str | None:
    """'en-US' / 'en_us' / 'EN' → 'en'; None for something that is not a language tag."""
    if not tag:
        return None
    primary = re.split(r"[-_\s]", tag.strip(), maxsplit=1)[0].lower()
    return primary if primary.isascii() and primary.isalpha() and 2 <= len(primary) <= 3 else None


# feedparser resolves the document's base URI at *every* start tag (``make_safe_absolute_uri(base,
# xml:base or base)``, a urljoin and a scheme check): 14 % of a parse worker's CPU on bench/poll.py's
# feeds, for a handful of distinct (base, rel) pairs per document.  The function is pure (its only
# other input is feedparser's constant scheme whitelist), so the module name feedparser.mixin calls
# is replaced once by a memo of it: same arguments, same answer.  Bounded: pairs whose strings are
# short enough, the memo emptied when full.
_SAFE_URIS: dict[tuple[object, object], object] = {}
_SAFE_URIS_MAX = 512
_SAFE_URI_KEY_MAX = 2048  # characters of base + rel; longer pairs are computed every time


def _memoise_safe_uris() -> None:
    from feedparser import mixin

    original = mixin.make_safe_absolute_uri
    if getattr(original, "mediamon_memo", False):
        return

    def make_safe_absolute_uri(base, rel=None):  # feedparser's signature
        key = (base, rel)
        try:
            return _SAFE_URIS[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable argument: not ours to judge, feedparser's answer
            return original(base, rel)
        out = original(base, rel)
        if len(base or "") + len(rel or "") <= _SAFE_URI_KEY_MAX:
            if len(_SAFE_URIS) >= _SAFE_URIS_MAX:
                _SAFE_URIS.clear()
            _SAFE_URIS[key] = out
        return out

    make_safe_absolute_uri.mediamon_memo = True  # type: ignore[attr-defined]
    make_safe_absolute_uri.original = original  # type: ignore[attr-defined]
    mixin.make_safe_absolute_uri = make_safe_absolute_uri


def parse_feed(data: bytes, *, url: str, content_type: str | None = None,
               max_items: int = 1000, content_language: str | None = None) -> ParsedFeed:
    """Parse fetched bytes.  Raises FeedParseError when nothing usable is in them.
    ``content_language`` (the HTTP header) is the language hint when the document declares none."""
    import feedparser  # heavy-ish import kept out of DAG parse time

    from .dates import register as _register_dates

    _register_dates()
    _memoise_safe_uris()
    started = time.monotonic()
    if not data or not data.strip():
        raise FeedParseError("empty response body")
    decoded = decode_bytes(data, content_type)
    text, encoding, warnings = decoded.text, decoded.encoding, list(decoded.warnings)
    decoded_how, replaced = decoded.how, decoded.replaced
    del decoded
    n_items = _count_items(text, MAX_ITEMS_HARD)
    if n_items > MAX_ITEMS_HARD:
        raise FeedParseError(f"refused: more than {MAX_ITEMS_HARD} items in one document")
    prepared = _prepare(text)
    del text
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
    # <language> / xml:lang on the root (feedparser puts either in feed.language), else the header
    tag = (str(feed.get("language") or "").strip() or (content_language or "").split(",")[0].strip())[:35] or None
    return ParsedFeed(
        entries=tuple(entries),
        title=clean_text(feed.get("title"), _detail_type(feed, "title"), MAX_TITLE),
        link=feed.get("link"),
        language=language_subtag(tag),
        encoding=encoding,
        version=parsed.get("version") or None,
        warnings=tuple(warnings),
        parse_seconds=time.monotonic() - started,
        dropped_entries=dropped,
        language_tag=tag,
        decoding=decoded_how,
        replaced_bytes=replaced,
    )
