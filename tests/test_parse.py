"""Parsing: golden files for our fixtures, hostile documents, and the real feeds in ../shared."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.errors import FeedParseError
from pipeline.parse import clean_text, decode_document, parse_feed

from . import golden
from .conftest import SHARED_FEEDS


@pytest.mark.parametrize("name", sorted(golden.CASES))
def test_golden(name):
    expected = json.loads((golden.GOLDEN / (name.rsplit(".", 1)[0] + ".json")).read_text(encoding="utf-8"))
    assert golden.articles_for(name) == expected


def test_fixture_feeds_expectations_in_words():
    ru = golden.articles_for("ru_news.xml")["articles"]
    by_guid = {a["guid"]: a for a in ru}
    first = by_guid["news-101"]
    assert first["canonical_url"] == "https://news.example.ru/politics/oreshnik-belarus?id=101"
    assert first["published_at"] == "2026-11-23T07:15:00Z"  # +0300 -> UTC
    assert "<" not in first["summary"] and "alert" not in first["summary"]  # script dropped, tags removed
    hostile = by_guid["news-103"]
    assert hostile["title"].startswith("<script>alert(1)</script>")  # text/plain stays text, never markup
    assert hostile["url"] is None and hostile["canonical_url"] is None  # javascript: link dropped
    assert "«электронные пуски»" in hostile["summary"]  # double-escaped entities decoded
    undated = by_guid["news-104"]
    assert undated["date_inferred"] is True and undated["published_at"] == "2026-11-24T00:00:00Z"
    assert undated["title"] == "Курс рубля вырос на торгах в понедельник"  # whitespace normalised
    en = golden.articles_for("en_news.xml")["articles"]
    assert en[0]["published_at"] == "2026-11-23T12:45:00Z"  # -05:00
    assert en[1]["published_at"] == "2026-11-23T11:00:00Z"  # EST
    assert en[2]["title"] == "Markets & the weekly outlook"
    assert en[2]["summary"] == "Stocks were mixed on Monday."  # <img onerror> gone
    cp = golden.articles_for("ru_cp1251.xml")["articles"]
    mislabelled = golden.articles_for("ru_cp1251_labelled_utf8.xml")
    assert [a["title"] for a in cp] == [a["title"] for a in mislabelled["articles"]]
    assert cp[1]["title"] == "Белоруссия и Россия провели совместные учения"
    assert any("detected" in w for w in mislabelled["warnings"])


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<rss version="2.0"><channel><title>&lol9;</title><item><title>&lol9;</title></item></channel></rss>"""

QUADRATIC = ('<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "' + "x" * 40_000 + '">]>'
             '<rss version="2.0"><channel><item><title>' + "&a;" * 5_000 + "</title></item></channel></rss>")

EXTERNAL = """<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><item><title>&xxe;</title></item></channel></rss>"""


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, QUADRATIC, EXTERNAL], ids=["billion-laughs", "quadratic", "xxe"])
def test_entity_declarations_refused_in_bounded_time(doc):
    t0 = time.monotonic()
    with pytest.raises(FeedParseError, match="entit"):
        parse_feed(doc.encode(), url="https://x.example/feed")
    assert time.monotonic() - t0 < 1.0


def test_plain_doctype_without_entities_is_fine():
    doc = ('<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
           '"http://my.netscape.com/publish/formats/rss-0.91.dtd"><rss version="0.91"><channel><title>t</title>'
           "<item><title>Hello</title><link>https://x.example/1</link></item></channel></rss>")
    assert parse_feed(doc.encode(), url="https://x.example/feed").entries[0].title == "Hello"


def test_control_characters_and_leading_whitespace_survive():
    doc = ("\n\n  <?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><item>"
           "<title>Bad\x0b char\x01s</title><link>https://x.example/1</link></item></channel></rss>")
    feed = parse_feed(doc.encode(), url="https://x.example/feed")
    assert feed.entries[0].title == "Bad chars"


def test_absurd_item_count_refused_before_parsing():
    doc = "<rss version='2.0'><channel>" + "<item><title>x</title></item>" * 30_000 + "</channel></rss>"
    t0 = time.monotonic()
    with pytest.raises(FeedParseError, match="items"):
        parse_feed(doc.encode(), url="https://x.example/feed")
    assert time.monotonic() - t0 < 1.0


def test_not_a_feed_and_empty_body():
    with pytest.raises(FeedParseError):
        parse_feed(b"<html><body>hello</body></html>", url="https://x.example/")
    with pytest.raises(FeedParseError):
        parse_feed(b"   ", url="https://x.example/")


def test_max_items_keeps_first_n():
    doc = "<rss version='2.0'><channel>" + "".join(
        f"<item><title>t{i}</title><link>https://x.example/{i}</link></item>" for i in range(50)) + "</channel></rss>"
    feed = parse_feed(doc.encode(), url="https://x.example/feed", max_items=10)
    assert len(feed.entries) == 10 and feed.dropped_entries == 40


def test_decode_document_prefers_real_utf8_over_a_single_byte_label():
    text = '<?xml version="1.0" encoding="windows-1251"?><rss><channel><title>Ракета</title></channel></rss>'
    decoded, enc, warnings = decode_document(text.encode("utf-8"))
    assert "Ракета" in decoded and enc == "utf-8" and warnings


def test_clean_text():
    assert clean_text("<p>a<br>b</p><script>x()</script>", "text/html") == "a b"
    assert clean_text("Tom &amp; Jerry", "text/plain") == "Tom & Jerry"
    assert clean_text("<b>kept</b>", "text/plain") == "<b>kept</b>"
    assert len(clean_text("слово " * 10_000, "text/plain", 100)) <= 101


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared/feeds not present")
def test_every_real_feed_parses_or_fails_cleanly():
    """Every real feed in ../shared/feeds gives items or a clear FeedParseError, in bounded time."""
    ok = failed = 0
    for path in sorted(SHARED_FEEDS.glob("*.xml")):
        t0 = time.monotonic()
        try:
            feed = parse_feed(path.read_bytes(), url=f"https://feeds.example.org/{path.name}")
        except FeedParseError as exc:
            assert str(exc)
            failed += 1
            continue
        assert time.monotonic() - t0 < 20
        for e in feed.entries:
            assert isinstance(e.title, str) and "\x00" not in e.title
        ok += 1 if feed.entries else 0
    assert ok >= 50 and failed <= 3


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="../shared/feeds not present")
def test_real_cp1251_feeds_give_cyrillic():
    for name in ("newsru_all_2006.xml", "aif_health_2006.xml"):
        feed = parse_feed((SHARED_FEEDS / name).read_bytes(), url="https://feeds.example.org/x")
        letters = "".join(e.title for e in feed.entries)
        cyr = sum("а" <= ch.lower() <= "я" for ch in letters)
        assert cyr > 0.5 * sum(ch.isalpha() for ch in letters)


RU = "Минобороны сообщило о развертывании комплекса"


def _doc(decl: str | None) -> str:
    d = f'<?xml version="1.0" encoding="{decl}"?>' if decl else '<?xml version="1.0"?>'
    return d + f"<rss version=\"2.0\"><channel><title>{RU}</title></channel></rss>"


@pytest.mark.parametrize("data, content_type, how, encoding", [
    ("\ufeff" + _doc("windows-1251"), None, "bom", "utf-8"),                     # 1. the BOM wins
    (_doc("windows-1251"), None, "declared", "cp1251"),                          # 2. declared, and it is
    (_doc("koi8-r"), "application/xml; charset=koi8-r", "declared", "koi8-r"),   # 2. the HTTP charset
    (_doc("utf-16"), None, "declared", "utf-16-le"),                             # 2+3: the NULs say LE
    (_doc(None), None, "nul-pattern", "utf-16-le"),                              # 3. no BOM, no label
    (_doc("utf-8"), None, "almost-utf-8", "utf-8"),                              # 4. one bad byte
    (_doc(None), None, "detected", "cp1251"),                                    # 5. detection
], ids=["bom", "declared", "http-charset", "utf-16-declared", "nul-pattern", "almost-utf-8", "detected"])
def test_decoding_order(data, content_type, how, encoding):
    from pipeline.parse import decode_bytes

    codec = "utf-8-sig" if how == "bom" else encoding
    if how == "almost-utf-8":
        raw = data.encode("utf-8").replace("развертывании".encode(), b"\xff" + "развертывании".encode())
    elif how == "detected":
        raw = data.encode("cp1251")
    elif how == "nul-pattern":
        raw = data.encode("utf-16-le")
    else:
        raw = data.encode(codec)
    d = decode_bytes(raw, content_type)
    assert (d.how, d.encoding) == (how, encoding), d.warnings
    assert RU.replace("развертывании", "\ufffdразвертывании" if how == "almost-utf-8" else "развертывании") in d.text
    assert d.replaced == (1 if how == "almost-utf-8" else 0)
    assert bool(d.warnings) == (how in ("nul-pattern", "almost-utf-8", "detected"))


def test_text_fields_one_function_by_declared_type():
    from pipeline.parse import clean_text, summary_from_content

    assert clean_text("<p>a</p><p>b &amp; c</p>", "text/html") == "a b & c"
    assert clean_text("<p>a</p>", "application/xhtml+xml") == "a"
    assert clean_text("<b>x</b>", "application/octet-stream") == "x"  # never kept as markup
    assert clean_text("a <b> c", "text/plain") == "a <b> c"  # text stays text
    assert clean_text("&lt;b&gt; &#8211;", "text/plain") == "&lt;b&gt; –"
    assert clean_text("<p>sniffed</p>", None) == "sniffed"
    assert summary_from_content("<p>One.</p><p>Two.</p><p>" + "x " * 400 + "</p>", "text/html") == "One. Two."
