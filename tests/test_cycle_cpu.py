"""Issue 13's polling budget: the CPU savings of the first cycle keep every answer the same.

* wildcard prefixes are looked up in sets that also hold the tokens shorter than the prefix
  length (``AnalyzedArticle.prefixes``): such a token never counts as a hit;
* matched terms cut from the text with unfolded token offsets (``_FieldData.cut``);
* feedparser's per-start-tag base URI resolution goes through a memo (``parse._memoise_safe_uris``)
  keyed by both arguments, bounded, and giving feedparser's own answers.
"""

from __future__ import annotations

import pytest

from pipeline import parse as parse_mod
from pipeline.parse import parse_feed
from pipeline.query import analyze_article, parse_query
from pipeline.query.evaluate import PrefixGroup

from .query_cases import make_article


@pytest.mark.parametrize("query, text, expected", [
    ("abc*", "ab a b", False),          # a token shorter than a short prefix is no hit
    ("abc*", "xy abcx", True),
    ("ab*", "a", False),
    ("ab*", "ab", True),                # the prefix is the whole token
    ("abcde*", "abc abcd", False),      # a long prefix whose head (3 letters) is a whole token
    ("abcde*", "abcdef", True),
    ("ракет* OR xyz*", "рак ра xy", False),
    ("ракет* OR xyz*", "ракетами", True),
])
def test_wildcards_never_hit_a_shorter_token(query, text, expected):
    doc = analyze_article(make_article("p1", title=text))
    q = parse_query(query)
    assert q.matches(doc) is expected
    assert bool(q.matched_terms(doc)) is expected


def test_prefix_group_hits_are_only_real_prefixes():
    doc = analyze_article(make_article("p2", title="ab abc abcdef x"))
    group = PrefixGroup(["a", "ab", "abc", "abd", "abcd", "abcdeg", "abcdef", "x", "xy", "xyz", "zzzz"])
    assert sorted(group.hits(doc, "all")) == ["a", "ab", "abc", "abcd", "abcdef", "x"]
    assert group.any_in(doc, "all")
    assert not PrefixGroup(["xy", "abx", "abcdx"]).any_in(doc, "all")


def test_matched_terms_are_cut_as_written_from_unfolded_text():
    """cut() takes offsets without folding: Ё, capitals and NFD text still give the words as written."""
    a = make_article("m2", title="ЁЖИК сказал: Ракетами «ОРЕШНИК» и Cafe\u0301 Noir")
    assert parse_query("ежик").matched_terms(a) == ["ЁЖИК"]
    assert parse_query("ракет*").matched_terms(a) == ["Ракетами"]
    assert parse_query('"сказал ракетами"').matched_terms(a) == ["сказал: Ракетами"]


ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="http://outlet.example/root/">
  <title>t</title><id>urn:x</id><updated>2026-11-20T12:00:00Z</updated>
  <entry xml:base="https://a.example/one/"><title>A</title><id>urn:a</id>
    <link href="story.html"/><updated>2026-11-20T12:00:00Z</updated></entry>
  <entry xml:base="https://b.example/two/"><title>B</title><id>urn:b</id>
    <link href="story.html"/><updated>2026-11-20T12:00:00Z</updated></entry>
  <entry xml:base="javascript:alert(1)//"><title>C</title><id>urn:c</id>
    <link href="story.html"/><updated>2026-11-20T12:00:00Z</updated></entry>
  <entry><title>D</title><id>urn:d</id>
    <link href="story.html"/><updated>2026-11-20T12:00:00Z</updated></entry>
</feed>
"""


def _unmemoised(monkeypatch) -> None:
    from feedparser import mixin

    parse_feed(ATOM, url="http://x.example/f.xml")  # installs the memo
    monkeypatch.setattr(mixin, "make_safe_absolute_uri", mixin.make_safe_absolute_uri.original)
    monkeypatch.setattr(parse_mod, "_memoise_safe_uris", lambda: None)  # and parse_feed keeps it out


@pytest.mark.parametrize("url", ["http://feeds.example/f.xml", "https://other.example/deep/f.xml", "file.xml"])
def test_base_uri_memo_gives_feedparsers_answers(monkeypatch, url):
    memo = parse_feed(ATOM, url=url)
    links = [e.link for e in memo.entries]
    # xml:base per entry: one relative href, three bases; an unsafe base is not taken
    assert links[:2] == ["https://a.example/one/story.html", "https://b.example/two/story.html"]
    assert links[2] == links[3] == "http://outlet.example/root/story.html"
    with monkeypatch.context() as m:
        _unmemoised(m)
        from feedparser import mixin

        assert not getattr(mixin.make_safe_absolute_uri, "mediamon_memo", False)
        plain = parse_feed(ATOM, url=url)
        assert not getattr(mixin.make_safe_absolute_uri, "mediamon_memo", False)
    assert plain.entries == memo.entries
    assert (plain.link, plain.title, plain.language) == (memo.link, memo.title, memo.language)


def test_base_uri_memo_is_keyed_by_both_arguments_and_bounded(monkeypatch):
    from feedparser import mixin

    parse_feed(ATOM, url="http://x.example/f.xml")
    safe = mixin.make_safe_absolute_uri
    original = safe.original
    monkeypatch.setattr(parse_mod, "_SAFE_URIS", {})
    pairs = [("http://a.example/x/", "y"), ("http://b.example/x/", "y"), ("http://a.example/x/", "z"),
             ("http://a.example/x/", None), ("javascript:x", "y"), ("http://a.example/", "javascript:alert(1)")]
    for _ in range(2):  # the second round answers from the memo
        assert [safe(b, r) for b, r in pairs] == [original(b, r) for b, r in pairs]
    assert len(parse_mod._SAFE_URIS) == len(pairs)
    long = "http://a.example/" + "p" * parse_mod._SAFE_URI_KEY_MAX
    assert safe(long, "q") == original(long, "q")
    assert len(parse_mod._SAFE_URIS) == len(pairs)  # long pairs are not kept
    for i in range(parse_mod._SAFE_URIS_MAX + 10):
        assert safe(f"http://h{i}.example/", "x") == f"http://h{i}.example/x"
    assert len(parse_mod._SAFE_URIS) <= parse_mod._SAFE_URIS_MAX


def test_entitlement_caches_are_keyed_by_feed_url_and_host():
    """``identity.ascii_host`` and the feed URL's domain are cached; interleaved feeds and hosts
    still get their own answers."""
    from pipeline.config import FeedConfig
    from pipeline.identity import ascii_host, entitled

    tass = FeedConfig(id="tass", url="https://tass.ru/rss/v2.xml", source="TASS")
    bbc = FeedConfig(id="bbc", url="https://feeds.bbc.co.uk/news/rss.xml", source="BBC")
    ru = FeedConfig(id="ru", url="https://xn--e1afmkfd.xn--p1ai/rss", source="RU")
    local = FeedConfig(id="local", url="feeds/local.xml", source="Local")
    declared = FeedConfig(id="decl", url="feeds/local.xml", source="Decl", domains=["tass.ru"])
    cases = [
        (tass, "https://news.tass.ru/a/1", True), (bbc, "https://news.tass.ru/a/1", False),
        (bbc, "https://www.bbc.co.uk/news/1", True), (tass, "https://www.bbc.co.uk/news/1", False),
        (ru, "https://ПРИМЕР.РФ./новости/1", True), (tass, "https://пример.рф/новости/1", False),
        (local, "https://news.tass.ru/a/1", False), (declared, "https://news.tass.ru/a/1", True),
        (declared, "https://www.bbc.co.uk/news/1", False),
    ]
    for _ in range(3):  # first round fills the caches, the next ones read them
        for feed, url, expected in cases:
            assert entitled(feed, url) is expected, (feed.id, url)
    assert ascii_host("ПРИМЕР.РФ.") == ascii_host("пример.рф") == "xn--e1afmkfd.xn--p1ai"
    assert ascii_host("[::1]") == "::1"
    assert ascii_host("a..b") is None and ascii_host("  ") is None


@pytest.mark.parametrize("text, declared, expected", [
    ("ab", "ru", "ru"),                                  # under 3 letters: the declaration
    ("12 345 ½ ² Ⅻ 678 9", "en", "en"),                  # digits and numerals are not letters
    ("½²Ⅻ ab", "en", "en"),
])
def test_language_detection_counts_letters_as_before(text, declared, expected):
    from pipeline.normalize import LanguageDetector

    assert LanguageDetector(["ru", "en", "uk", "be"]).detect(text, declared) == expected


def test_a_batch_is_analysed_once_for_rules_and_index(tmp_path, monkeypatch):
    """The analysis memo (``pipeline.analysis``) is really shared: after the topic rules ran over a
    batch, translated as in a cycle, indexing it tokenises no text again."""
    from datetime import datetime, timezone

    from pipeline import analysis
    from pipeline.classify import classify_stage
    from pipeline.config import FeedConfig, load_topics
    from pipeline.normalize import LanguageDetector, normalize_feed
    from pipeline.settings import Settings
    from pipeline.store.sqlite import SQLiteStore
    from pipeline.translate import translate_stage
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    items = "".join(f"<item><title>Ракета номер {i} и учения</title><link>https://ru.example/n/{i}</link>"
                    f"<description>Министр заявил о пуске {i}. Missile test {i}.</description></item>"
                    for i in range(20))
    en_items = "".join(f"<item><title>Missile test {i} near Minsk</title><link>https://en.example/n/{i}</link>"
                       f"<description>Officials said drills {i} went on.</description></item>" for i in range(20))
    feeds = [FeedConfig(id="ru", url="https://ru.example/rss", source="RU", language="ru"),
             FeedConfig(id="en", url="https://en.example/rss", source="EN", language="en")]
    now = datetime(2026, 11, 28, tzinfo=timezone.utc)
    arts = []
    for feed, body in zip(feeds, (items, en_items)):
        doc = f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'
        arts += normalize_feed(parse_feed(doc.encode(), url=feed.url), feed, now, LanguageDetector(["ru", "en"]))[0]
    assert len(arts) == 40
    analysis.forget()
    store = SQLiteStore(tmp_path / "s.sqlite3")
    try:
        translated, _ = translate_stage(arts, settings=Settings(translation_backend="none"), store=store)
        classified, counts = classify_stage(translated, list(load_topics(root / "config")))
        assert counts["classified"] == 40
        calls: list[str] = []
        real = analysis.tokenize
        monkeypatch.setattr(analysis, "tokenize", lambda text: calls.append(text) or real(text))
        result = store.index(classified)
        assert len(result.created) == 40
        assert calls == []
    finally:
        store.close()
        analysis.forget()


@pytest.mark.slow
def test_base_uri_memo_changes_nothing_on_real_feeds_and_feedparsers_base_tests(monkeypatch):
    """Every real feed in ../shared/feeds and feedparser's own xml:base tests parse to the same
    entries with the memo as with feedparser's function."""
    from .conftest import SHARED

    docs = sorted((SHARED / "feeds").glob("*.xml")) + sorted(
        (SHARED / "peer" / "feedparser-tests" / "wellformed" / "base").glob("*.xml"))
    if len(docs) < 100:
        pytest.skip("../shared/feeds or ../shared/peer/feedparser-tests not present")
    url = "http://feeds.example.org/dir/feed.xml"

    def parse_all() -> list:
        out = []
        for p in docs:
            try:
                f = parse_feed(p.read_bytes(), url=url)
                out.append((p.name, f.entries, f.link, f.title, f.warnings))
            except Exception as exc:  # noqa: BLE001 - a refused document must be refused alike
                out.append((p.name, repr(exc)))
        return out

    memo = parse_all()
    with monkeypatch.context() as m:
        _unmemoised(m)
        plain = parse_all()
    assert len(plain) == len(memo) and plain == memo
    assert sum(1 for r in memo if len(r) > 2 and r[1]) > 100  # documents with entries were compared
