"""Normalising: canonical URLs, ids, dates, language."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipeline.config import FeedConfig
from pipeline.normalize import (LanguageDetector, article_id, canonical_url, entry_datetime, normalize_entry,
                                safe_link)
from pipeline.parse import RawEntry

from .conftest import SHARED_FEEDS

FETCHED = datetime(2026, 11, 24, tzinfo=timezone.utc)


@pytest.mark.parametrize("url,expected", [
    ("HTTPS://News.Example.RU:443/a/b?utm_source=rss&id=7#top", "https://news.example.ru/a/b?id=7"),
    ("http://example.com:80", "http://example.com/"),
    ("http://example.com:8080/x?fbclid=1&gclid=2&yclid=3", "http://example.com:8080/x"),
    ("https://example.com/x?b=2&a=1", "https://example.com/x?b=2&a=1"),  # order kept: it can matter
    ("javascript:alert(1)", None),
    ("/relative/path", None),
    ("data:text/html,hi", None),
    ("", None),
])
def test_canonical_url(url, expected):
    assert canonical_url(url) == expected


def test_safe_link_only_http():
    assert safe_link(" https://x.example/a ") == "https://x.example/a"
    assert safe_link("JavaScript:alert(1)") is None
    assert safe_link("file:///etc/passwd") is None


def test_ids_are_stable_and_shared_across_feeds():
    a = article_id("https://x.example/a", "https://feed1", "g1", "t", "s")
    b = article_id("https://x.example/a", "https://feed2", "g2", "other", "other")
    assert a == b and len(a) == 40
    assert article_id(None, "https://feed1", "g1", "t", "s") != article_id(None, "https://feed2", "g1", "t", "s")
    assert article_id(None, "https://feed1", None, "t", "s") == article_id(None, "https://feed1", None, "t", "s")


@pytest.mark.parametrize("parsed,expected,inferred", [
    ((2026, 11, 23, 7, 15, 0), datetime(2026, 11, 23, 7, 15, tzinfo=timezone.utc), False),
    (None, FETCHED, True),
    ((9999, 1, 1, 0, 0, 0), FETCHED, True),
    ((1969, 12, 31, 0, 0, 0), FETCHED, True),
    ((2026, 11, 30, 0, 0, 0), FETCHED, True),  # far in the future
])
def test_entry_datetime(parsed, expected, inferred):
    assert entry_datetime(parsed, FETCHED) == (expected, inferred)


def test_language_detection_with_declared_tie_breaker():
    d = LanguageDetector(["ru", "en", "uk", "be"])
    assert d.detect("Министерство обороны сообщило о размещении ракетного комплекса", "en") == "ru"
    assert d.detect("The defence ministry reported the deployment of a missile system", "ru") == "en"
    assert d.detect("Міністерство оборони повідомило про розміщення ракетного комплексу", "ru") == "uk"
    assert d.detect("NATO", "ru") == "ru"  # too short: trust the feed
    assert d.detect("", "en") == "en"


def test_normalize_entry_fields():
    feed = FeedConfig(id="f", url="https://feeds.example.org/f.xml", source="Example", language="ru", tags=("t1",),
                      domains=("x.example",))
    raw = RawEntry(title="Ракеты «Орешник»", summary="Текст новости о ракетах.", content=None,
                   link="https://x.example/a?utm_medium=rss", guid="g", published=(2026, 11, 23, 0, 0, 0),
                   published_raw="Mon, 23 Nov 2026 03:00:00 +0300", authors=("A",), categories=("Армия",))
    a = normalize_entry(raw, feed, FETCHED, LanguageDetector(["ru", "en"]))
    assert a.id == article_id("https://x.example/a", feed.url, "g", "", "")
    assert a.language == "ru" and a.feed_language == "ru" and a.source == "Example"
    assert a.categories == ("Армия", "t1") and a.translation.status == "pending"
    assert a.content_hash and not a.date_inferred


@pytest.mark.parametrize("value,expected", [
    ("Seg, 24 Set 2018 19:42:40 -0300", (2018, 9, 24, 22, 42, 40)),
    ("Пн, 23 ноя 2026 10:15:00 +0300", (2026, 11, 23, 7, 15, 0)),
    ("23 ноября 2026 10:15 +0300", (2026, 11, 23, 7, 15, 0)),
    ("Di, 03 Dez 2024 08:00:00 GMT", (2024, 12, 3, 8, 0, 0)),
    ("not a date", None),
])
def test_localised_month_names(value, expected):
    from pipeline.dates import parse_localised_rfc822

    r = parse_localised_rfc822(value)
    assert (tuple(r[:6]) if r else None) == expected


# --- language by script (lingua's n-gram models skipped when the letters decide) -------------------

RU_LONG = ("Россия может разместить ракетный комплекс «Орешник» в Белоруссии уже в декабре, заявил "
           "министр обороны; военные начали подготовку позиций и учения расчётов. Эксперты считают, что "
           "это ответ на размещение американских ракет в Европе.")
UK_NO_MARKERS = "Зеленський заявив про мир. " * 8  # Ukrainian without і ї є ґ: lingua must decide
BE_TEXT = "Лукашэнка сказаў, што Беларусь гатовая размясціць комплекс. " * 3


def test_script_shortcut_answers_like_lingua():
    d = LanguageDetector(["ru", "en", "uk", "be"])
    codes = d.codes
    assert d._by_script(RU_LONG, codes, 150) == "ru" and d.detect(RU_LONG, None) == "ru"
    assert d._by_script("NATO says the missile was deployed in Belarus", codes, 40) == "en"
    assert d._by_script(UK_NO_MARKERS, codes, 180) is None and d.detect(UK_NO_MARKERS, None) == "uk"
    assert d._by_script(BE_TEXT, codes, 150) is None and d.detect(BE_TEXT, "ru") == "be"
    assert d._by_script("Ракета", codes, 6) is None  # short text: lingua and the declaration decide
    # another Latin-script candidate: the letters no longer decide
    assert LanguageDetector(["en", "de", "ru"])._by_script("The missile was deployed", ("de", "en", "ru"), 21) is None
    # another Cyrillic candidate without known marker letters: no shortcut to Russian
    assert LanguageDetector(["ru", "bg"])._by_script(RU_LONG, ("bg", "ru"), 150) is None


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason="needs ../shared/feeds")
def test_script_shortcut_agrees_with_lingua_on_every_real_item():
    from pipeline.parse import parse_feed

    d = LanguageDetector(["ru", "en", "uk", "be"])
    lingua = d._detector(d.codes)
    applied = 0
    for path in sorted(SHARED_FEEDS.glob("*.xml")):
        try:
            entries = parse_feed(path.read_bytes(), url="https://example.org/feed").entries
        except Exception:  # noqa: BLE001 - the broken feeds
            continue
        for e in entries:
            text = f"{e.title}. {e.summary}"[:d.MAX_CHARS]
            got = d._by_script(text, d.codes, sum(ch.isalpha() for ch in text))
            if got is not None:
                applied += 1
                top = lingua.compute_language_confidence_values(text)[0].language.iso_code_639_1.name.lower()
                assert got == top, (path.name, text)
    assert applied > 2000
