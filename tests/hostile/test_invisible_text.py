"""Invisible characters in feed text (issue 16, item 8 part): bidi overrides and isolates, zero-width
characters and C1 controls are removed from stored titles, summaries and content at normalize time;
ZWNJ/ZWJ stay where a script or an emoji sequence needs them."""

from __future__ import annotations

import pytest

from pipeline.normalize import strip_invisible
from pipeline.store.base import SearchRequest
from pipeline.store.sqlite import SQLiteStore

from . import generators as gen
from .conftest import cycle, feed


@pytest.mark.parametrize("text,expected", [
    ("Оре\u200bшник", "Орешник"),  # zero-width space splitting a keyword
    ("Оре\u2060шник\ufeff", "Орешник"),  # word joiner, BOM
    ("Оре\u200cшник и Оре\u200dшник", "Орешник и Орешник"),  # joiners inside a Cyrillic word: removed
    ("\u200dOreshnik\u200c", "Oreshnik"),  # at a word's edge: removed
    ("txt.\u202egpj.exe", "txt.gpj.exe"),  # right-to-left override (filename spoofing)
    ("a\u202ab\u202bc\u202cd\u202de", "abcde"),  # embeddings, pop, left-to-right override
    ("a\u2066b\u2067c\u2068d\u2069e", "abcde"),  # isolates
    ("C1\x80\x85\x9b[31m\x9f", "C1[31m"),  # C1 controls (NEL, CSI, APC)
    ("می\u200cخواهم", "می\u200cخواهم"),  # Persian: ZWNJ between Arabic-script letters is spelling
    ("क्\u200dष", "क्\u200dष"),  # Devanagari: ZWJ after a virama shapes the conjunct
    ("\U0001f469\u200d\U0001f4bb", "\U0001f469\u200d\U0001f4bb"),  # emoji ZWJ sequence (woman technologist)
    ("\U0001f44d\U0001f3fd\u200d", "\U0001f44d\U0001f3fd"),  # a dangling ZWJ after an emoji: removed
    ("שלום \u200fעולם", "שלום \u200fעולם"),  # RLM is a legitimate mark in RTL text: kept
    ("", ""),
])
def test_strip_invisible(text, expected):
    assert strip_invisible(text) == expected


def test_invisible_characters_never_reach_the_store(hserver, hsettings, warm):
    title = "\u202eОре\u200bшник\u202c в Бела\u2060руси\u2067"
    hserver.expect_request("/inv").respond_with_data(
        gen.rss([gen.item(title, "https://hostile.example/inv/1", guid="inv-1",
                          description="Сооб\u200dщение \u2066о\u2069 ракетах\ufeff")]).encode(),
        content_type="application/rss+xml")
    o = cycle(hsettings, [feed("inv", hserver.url_for("/inv"), language="ru")])
    [a] = o.articles
    assert a.title == "Орешник в Беларуси"
    assert a.summary == "Сообщение о ракетах"
    with SQLiteStore(hsettings.store_path) as store:
        assert [h.id for h in store.search(SearchRequest(query='"Орешник в Беларуси"')).hits] == [a.id]


def test_normalize_entry_strips_title_summary_and_content():
    """At normalize time, whatever the parser let through (a JSON feed, a C1 byte that decoded)."""
    from datetime import datetime, timezone

    from pipeline.config import FeedConfig
    from pipeline.normalize import normalize_entry
    from pipeline.parse import RawEntry

    raw = RawEntry(title="Оре\u200bшник\x9b", summary="\u202eтекст\u202c", content="кон\ufeffтент\x85",
                   link="https://hostile.example/x", guid="x", published=None, published_raw=None,
                   authors=(), categories=())
    a = normalize_entry(raw, FeedConfig(id="f", url="https://hostile.example/rss", source="S"),
                        datetime(2026, 11, 23, tzinfo=timezone.utc))
    assert (a.title, a.summary, a.content) == ("Орешник", "текст", "контент")
