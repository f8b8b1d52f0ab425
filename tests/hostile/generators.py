"""Hostile feed documents and response bodies, generated here (nothing copied from real feeds).

Every generator returns bytes (or an iterator of bytes for bodies that must never exist in
memory as a whole).  The expected outcome of each lives next to its use in the test modules.
"""

from __future__ import annotations

import zlib
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator
from xml.sax.saxutils import escape as xml_escape

BASE_DATE = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def rss(items: Iterable[str], *, decl: str = '<?xml version="1.0" encoding="utf-8"?>', prolog: str = "",
        channel_extra: str = "") -> str:
    """An RSS 2.0 document around already-serialised ``<item>`` strings."""
    return (f"{decl}{prolog}<rss version=\"2.0\"><channel><title>Hostile test feed</title>"
            f"<link>https://hostile.example/</link><description>generated</description>{channel_extra}"
            + "".join(items) + "</channel></rss>")


def item(title: str, link: str | None = None, *, guid: str | None = None, description: str | None = None,
         pub: str | None = None, raw_title: bool = False, raw_description: bool = False,
         raw_link: bool = False, extra: str = "") -> str:
    """One ``<item>``; text is XML-escaped unless ``raw_*`` (to inject markup/entities as such)."""
    parts = ["<item>", f"<title>{title if raw_title else xml_escape(title)}</title>"]
    if link is not None:
        parts.append(f"<link>{link if raw_link else xml_escape(link)}</link>")
    if guid is not None:
        parts.append(f'<guid isPermaLink="false">{xml_escape(guid)}</guid>')
    if description is not None:
        parts.append(f"<description>{description if raw_description else xml_escape(description)}</description>")
    if pub is not None:
        parts.append(f"<pubDate>{xml_escape(pub)}</pubDate>")
    parts.append(extra)
    parts.append("</item>")
    return "".join(parts)


def plain_items(n: int, prefix: str = "https://hostile.example/news/", *, start: int = 0) -> list[str]:
    return [item(f"Ordinary headline number {i}", f"{prefix}{i}", guid=f"g-{i}",
                 description=f"Body of story {i}.", pub=format_datetime(BASE_DATE - timedelta(minutes=i)))
            for i in range(start, start + n)]


# --- entity attacks ------------------------------------------------------------------------------

def billion_laughs(*, one_line: bool) -> bytes:
    """Ten levels of ten references: 10**9 'lol's if anything expanded it."""
    sep = "" if one_line else "\n "
    decls = ['<!ENTITY lol0 "lol">']
    for k in range(1, 10):
        decls.append(f'<!ENTITY lol{k} "' + f"&lol{k - 1};" * 10 + '">')
    prolog = f"<!DOCTYPE rss [{sep}" + sep.join(decls) + f"{sep}]>" + ("" if one_line else "\n")
    doc = rss([item("&lol9;", "https://hostile.example/laughs", raw_title=True)], prolog=prolog)
    if one_line:
        assert "\n" not in doc
    return doc.encode()


def quadratic_blowup(*, one_line: bool, entity_chars: int = 50_000, refs: int = 10_000) -> bytes:
    """One big entity referenced many times: ~50 KB + 60 KB of document → 500 M characters."""
    sep = "" if one_line else "\n"
    prolog = f'<!DOCTYPE rss [{sep}<!ENTITY a "' + "x" * entity_chars + f'">{sep}]>{sep}'
    refs_text = ("&a;" * refs) if one_line else "\n".join("&a;" * 100 for _ in range(refs // 100))
    return rss([item(refs_text, "https://hostile.example/quadratic", raw_title=True)], prolog=prolog).encode()


def external_entity(target: str = "file:///etc/passwd") -> bytes:
    prolog = f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{target}">]>'
    return rss([item("&xxe;", "https://hostile.example/xxe", raw_title=True,
                     description="&xxe;", raw_description=True)], prolog=prolog).encode()


def external_parameter_entity(dtd_url: str) -> bytes:
    """A parameter entity that would pull a DTD from our own loopback server if anything fetched it."""
    prolog = f'<!DOCTYPE rss [<!ENTITY % remote SYSTEM "{dtd_url}"> %remote;]>'
    return rss([item("Parameter entity", "https://hostile.example/pe")], prolog=prolog).encode()


def external_doctype(dtd_url: str) -> bytes:
    """An external DTD with no internal subset: nothing may fetch it; the items are fine."""
    prolog = f'<!DOCTYPE rss SYSTEM "{dtd_url}">'
    return rss(plain_items(2, "https://hostile.example/extdtd/"), prolog=prolog).encode()


def entity_hidden_by_control_char() -> bytes:
    """`<!EN\\x01TITY`: invisible to a naive check, an entity declaration once controls are dropped."""
    return quadratic_blowup(one_line=True, refs=2_000).replace(b"<!ENTITY", b"<!EN\x01TITY")


def entity_after_padding(pad: int = 2 << 20) -> bytes:
    """Entity declarations behind a 2 MiB comment (past any fixed-size prolog scan)."""
    doc = quadratic_blowup(one_line=True, refs=5_000).decode()
    decl_end = doc.index("?>") + 2
    return (doc[:decl_end] + "<!--" + "p" * pad + "-->" + doc[decl_end:]).encode()


def entity_after_stray_end_tag() -> bytes:
    """`</x>` before the DOCTYPE: an XML parser's prolog ends there, feedparser's does not."""
    doc = quadratic_blowup(one_line=True, refs=5_000).decode()
    decl_end = doc.index("?>") + 2
    return (doc[:decl_end] + "</x>" + doc[decl_end:]).encode()


def xinclude_file() -> bytes:
    it = item("XInclude attempt", "https://hostile.example/xinclude",
              extra='<description xmlns:xi="http://www.w3.org/2001/XInclude">'
                    '<xi:include href="file:///etc/passwd" parse="text"/></description>')
    return rss([it]).encode()


def invalid_char_references() -> bytes:
    """Character references to a surrogate, beyond U+10FFFF, to NUL and ESC; and a legal one."""
    title = "Refs: &#xD800; &#55296; &#x110000; &#99999999999999999999; &#0; &#x1b; &#x44F;"
    return rss([item(title, "https://hostile.example/charrefs", raw_title=True)]).encode()


# --- encodings -------------------------------------------------------------------------------------

RU_TITLES = ["Ракетный комплекс развернут в Белоруссии", "Курс рубля вырос на торгах в понедельник",
             "Учения противовоздушной обороны прошли успешно"]


def ru_feed(encoding: str, *, declared: str | None, bom: bool = False) -> bytes:
    decl = f'<?xml version="1.0" encoding="{declared}"?>' if declared else '<?xml version="1.0"?>'
    items = [item(t, f"https://hostile.example/ru/{n}", description=t + ". Подробности позже.",
                  pub=format_datetime(BASE_DATE)) for n, t in enumerate(RU_TITLES)]
    doc = rss(items, decl=decl)
    data = doc.encode(encoding)
    if bom:
        data = {"utf-8": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[encoding] + data
    return data


def garbage(n: int = 64 * 1024, seed: int = 7) -> bytes:
    import random

    rnd = random.Random(seed)
    return bytes(rnd.randrange(256) for _ in range(n))


# --- structure ----------------------------------------------------------------------------------------

def control_characters() -> bytes:
    title = "Ctl\x01\x02\x07\x08\x0b\x0c\x0e\x1b[31m\x1f\x7f ok \u2028line\u2029para \u202eRLO\u202c \x85nel"
    return rss([item(title, "https://hostile.example/ctl", description="Tab\there\x00nul\x1fus")]).encode("utf-8")


def truncated(complete_items: int = 2) -> bytes:
    doc = rss(plain_items(complete_items + 1, "https://hostile.example/trunc/"))
    cut = doc.rindex("<item>") + 30  # in the middle of the last item's title
    return doc[:cut].encode()


def mismatched_tags() -> bytes:
    items = plain_items(2, "https://hostile.example/mismatch/")
    items.insert(1, "<item><title>Broken <b>bold</title><link>https://hostile.example/mismatch/x</link></i></item>")
    return rss(items).encode()


def zero_items() -> bytes:
    return rss([]).encode()


def many_items(n: int, *, upper: bool = False, compact: bool = True) -> bytes:
    tag = "ITEM" if upper else "item"
    if compact:
        body = f"<{tag}/>" * n
    else:
        body = "".join(f"<{tag}><title>t{i}</title><link>https://hostile.example/many/{i}</link></{tag}>"
                       for i in range(n))
    return rss([body]).encode()


# --- dates, ids, links ----------------------------------------------------------------------------------

DATE_CASES = {
    # guid: (pubDate, expected UTC ISO | None when the date must be inferred | "bounded" when any
    # date in the plausible window will do: an offset of +99:99 is read as such by feedparser)
    "year-9999": ("Fri, 31 Dec 9999 23:59:59 GMT", None),
    "before-1970": ("Wed, 31 Dec 1969 23:59:59 GMT", None),
    "year-1900": ("Mon, 01 Jan 1900 00:00:00 GMT", None),
    "year-0001": ("0001-01-01T00:00:00Z", None),
    "not-a-date": ("yesterday-ish, around lunch", None),
    "absurd-offset": ("Mon, 23 Nov 2026 10:00:00 +9999", "bounded"),
    "feb-30": ("Mon, 30 Feb 2026 10:00:00 GMT", "bounded"),  # normalised to 2 March by timegm
    "huge-year": ("Mon, 23 Nov 99999999999 10:00:00 GMT", None),
    "ru-month": ("Пн, 23 ноя 2026 10:15:00 +0300", "2026-11-23T07:15:00Z"),
    "uk-month": ("23 листопада 2026 10:15:00 +0200", "2026-11-23T08:15:00Z"),
    "de-month": ("Mo, 23 Nov. 2026 10:15:00 +0100", "2026-11-23T09:15:00Z"),
    "pt-month": ("Seg, 24 Set 2018 19:42:40 -0300", "2018-09-24T22:42:40Z"),
    "ok-rfc822": ("Mon, 23 Nov 2026 10:00:00 GMT", "2026-11-23T10:00:00Z"),
    # issue 16: the year 0001 written in RFC 822 was stored as 2001 (parsedate's two-digit rule)
    "rfc822-year-0001": ("Mon, 01 Jan 0001 00:00:00 GMT", None),
    "ru-month-year-0001": ("Пн, 01 янв 0001 10:00:00 +0300", None),
    "rfc822-year-0026": ("Mon, 23 Nov 0026 10:00:00 GMT", None),
    # a two-digit year: the date as read (26 -> 2026, 99 -> 1999), flagged as inferred
    "two-digit-year-19": ("Sun, 24 Mar 19 10:00:00 GMT", ("inferred", "2019-03-24T10:00:00Z")),
    "two-digit-year-99": ("Wed, 24 Mar 99 10:00:00 GMT", ("inferred", "1999-03-24T10:00:00Z")),
}


def absurd_dates() -> bytes:
    return rss([item(f"Date case {g}", f"https://hostile.example/dates/{g}", guid=g, pub=pub)
                for g, (pub, _) in DATE_CASES.items()]).encode()


def duplicated_guids(version: int = 1) -> bytes:
    """Three link-less items sharing a guid; two items sharing a link under different guids."""
    items = [item(f"Same guid, copy {k} (v{version})", None, guid="dup-guid", description=f"copy {k}")
             for k in range(3)]
    items += [item(f"Same link, guid {g} (v{version})", "https://hostile.example/dup/link", guid=g)
              for g in ("guid-a", "guid-b")]
    return rss(items).encode()


def relative_links() -> bytes:
    items = [
        item("Root-relative link", "/news/relative-1", guid="rel-1"),
        item("Path-relative link", "relative-2.html", guid="rel-2"),
        item("Protocol-relative link", "//other.example/relative-3", guid="rel-3"),
        "<item xml:base=\"javascript:alert(1)//\"><title>Base is javascript:</title>"
        "<link>x</link><guid isPermaLink=\"false\">rel-4</guid></item>",
    ]
    return rss(items).encode()


# --- markup and injection -------------------------------------------------------------------------------

HOSTILE_TITLES = {
    "script": '<script>alert("t1")</script> Орешник Беларусь',
    "handler": '<img src=x onerror="alert(2)"> Орешник Беларусь',
    "svg": '<svg/onload=alert(3)> Орешник Беларусь',
    "crlf": "Орешник Беларусь\r\nBcc: victim@evil.example\r\nSubject: pwned",
    "lf-only": "Орешник Беларусь\nX-Injected: 1\n\n<html>body takeover</html>",
    "unicode-breaks": "Орешник Беларусь\u2028To: victim@evil.example\u0085Cc: also@evil.example",
    "long": "Орешник Беларусь " + "очень длинный заголовок " * 2000,
}

HOSTILE_LINKS = {
    "script": "javascript:alert(document.cookie)",
    "handler": "jav&#x09;ascript:alert(1)",
    "svg": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "crlf": "https://hostile.example/inj\r\nBcc: victim@evil.example",
    "lf-only": "https://hostile.example/inj2?x=%0d%0aBcc:%20victim@evil.example",
    "unicode-breaks": "https://hostile.example/inj3",
    "long": "https://hostile.example/long",
}

HOSTILE_SUMMARY = ('<p onclick="alert(4)">Орешник</p><a href="javascript:alert(5)">Беларусь</a>'
                   '<iframe src="https://evil.example/"></iframe><style>body{display:none}</style>'
                   '<img src="https://evil.example/track.gif" onload="alert(6)">')


def hostile_markup() -> bytes:
    items = []
    for key, title in HOSTILE_TITLES.items():
        # titles as text/plain (escaped once), summaries as HTML (escaped once: feedparser sees markup)
        # links raw: "jav&#x09;ascript:" reaches the parser as a character reference
        items.append(item(title, HOSTILE_LINKS[key], guid=f"hostile-{key}", description=HOSTILE_SUMMARY,
                          pub=format_datetime(BASE_DATE), raw_link=True))
    return rss(items).encode("utf-8")


# --- bodies --------------------------------------------------------------------------------------------------

def big_stream(total: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """``total`` bytes of a syntactically plausible feed, produced chunk by chunk."""
    head = b'<?xml version="1.0"?><rss version="2.0"><channel><title>big</title><description>'
    yield head
    sent = len(head)
    block = b"A" * chunk
    while sent < total:
        n = min(chunk, total - sent)
        yield block[:n]
        sent += n


def gzip_bomb(decoded: int = 256 << 20) -> bytes:
    """``decoded`` bytes of zeros gzip-compressed (about 1000:1)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    out = [comp.compress(block) for _ in range(decoded >> 20)]
    out.append(comp.flush())
    return b"".join(out)


def deflate_bomb(decoded: int = 256 << 20) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    out = [comp.compress(block) for _ in range(decoded >> 20)]
    out.append(comp.flush())
    return b"".join(out)
