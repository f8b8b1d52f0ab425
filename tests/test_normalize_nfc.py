"""Text is NFC-normalised at ingest: Elasticsearch's analyzers and our Python tokenizer then see
the same letters whether a feed sends "й" precomposed (U+0439) or as "и" + combining breve."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timezone

from pipeline.config import FeedConfig
from pipeline.normalize import normalize_entry
from pipeline.parse import RawEntry

FETCHED = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
FEED = FeedConfig(id="f", url="https://feeds.example.org/f.xml", source="Example", language="ru")


def _raw(title: str, summary: str, content: str | None) -> RawEntry:
    return RawEntry(title=title, summary=summary, content=content, link=None, guid=None,
                    published=(2026, 11, 23, 0, 0, 0), published_raw=None)


def test_decomposed_letters_are_composed_and_identify_the_same_item():
    composed = ("Новый ракетный комплекс «Орешник»", "Размещение в Белоруссии, ёмкость складов.",
                "Полный текст: ракетный щит")
    decomposed = tuple(unicodedata.normalize("NFD", t) for t in composed)
    assert decomposed != composed  # й and ё really are two code points each in NFD
    a = normalize_entry(_raw(*decomposed), FEED, FETCHED)
    b = normalize_entry(_raw(*composed), FEED, FETCHED)
    assert (a.title, a.summary, a.content) == composed
    assert a.id == b.id and a.content_hash == b.content_hash  # no guid or link: the id hashes the text
