"""Embedded search: Russian and English morphology, field scopes, filters, dates, paging."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.models import Article, Translation
from pipeline.store.base import SearchRequest
from pipeline.store.sqlite import SCHEMA_VERSION, SQLiteStore

T0 = datetime(2026, 11, 20, tzinfo=timezone.utc)


def art(i: int, title: str, summary: str = "", *, lang="ru", source="TASS", days=0, title_en=None,
        summary_en=None, topics=()) -> Article:
    return Article(id=f"id{i:03d}", feed_id=source.lower(), url=f"https://x.example/{i}",
                   canonical_url=f"https://x.example/{i}", guid=None, source=source, feed_language=lang,
                   language=lang, title=title, summary=summary, published_at=T0 + timedelta(days=days),
                   fetched_at=T0, content_hash=f"h{i}", title_en=title_en, summary_en=summary_en,
                   translation=Translation(status="ok" if title_en else "skipped"), topics=tuple(topics))


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "s.sqlite3")
    s.index([
        art(1, "Ракета упала в поле", days=0),
        art(2, "Запуск ракеты перенесли", days=1, source="RIA"),
        art(3, "Учения с ракетами прошли успешно", days=2, title_en="Exercises with missiles went well"),
        art(4, "Комплекс «Орешник» в Белоруссии", "Размещение Орешника завершат в декабре", days=3,
            topics=["missile_deployment"]),
        art(5, "Об Орешнике рассказали в Минобороны", days=4),
        art(6, "Missile test in the Pacific", "A ballistic missile was launched", lang="en", source="BBC",
            days=5),
        art(7, "NATO boosts missiles on eastern flank", lang="en", source="BBC", days=6),
        art(8, "Ёлка на Красной площади", days=7),
        art(9, "Курс рубля вырос", days=8),
    ])
    yield s
    s.close()


def ids(result):
    return {a.id for a in result.hits}


def test_russian_morphology(store):
    assert ids(store.search(SearchRequest(query="ракета"))) == {"id001", "id002", "id003"}
    assert ids(store.search(SearchRequest(query="ракетами"))) == {"id001", "id002", "id003"}
    assert ids(store.search(SearchRequest(query="Орешник"))) == {"id004", "id005"}
    assert ids(store.search(SearchRequest(query="елка"))) == {"id008"}  # ё = е


def test_english_morphology_and_translations(store):
    assert ids(store.search(SearchRequest(query="missiles"))) == {"id003", "id006", "id007"}
    assert ids(store.search(SearchRequest(query="title:exercise"))) == {"id003"}


def test_wildcard_and_field_scopes(store):
    assert ids(store.search(SearchRequest(query="ракет*"))) == {"id001", "id002", "id003"}
    assert ids(store.search(SearchRequest(query="summary:орешник"))) == {"id004"}
    assert ids(store.search(SearchRequest(query="source:bbc AND missile"))) == {"id006", "id007"}


def test_filters_dates_sort_paging(store):
    r = store.search(SearchRequest(languages=("en",)))
    assert ids(r) == {"id006", "id007"}
    r = store.search(SearchRequest(sources=("RIA",)))
    assert ids(r) == {"id002"}
    r = store.search(SearchRequest(since=T0 + timedelta(days=7)))
    assert ids(r) == {"id008", "id009"}
    r = store.search(SearchRequest(until=T0 + timedelta(days=1)))
    assert ids(r) == {"id001"}
    r = store.search(SearchRequest(topics=("missile_deployment",)))
    assert ids(r) == {"id004"}
    first = store.search(SearchRequest(limit=4))
    assert [a.id for a in first.hits] == ["id009", "id008", "id007", "id006"] and first.total == 9
    second = store.search(SearchRequest(limit=4, cursor=first.next_cursor))
    assert [a.id for a in second.hits] == ["id005", "id004", "id003", "id002"]
    oldest = store.search(SearchRequest(limit=2, sort="oldest"))
    assert [a.id for a in oldest.hits] == ["id001", "id002"]


def test_stats(store):
    st = store.stats()
    assert st.total == 9 and st.by_source["TASS"] == 6 and st.by_language == {"ru": 7, "en": 2}
    assert st.by_topic == {"missile_deployment": 1} and len(st.by_day) == 9


def test_reindex_is_idempotent_and_updates_search(store):
    a = store.get_articles(["id009"])[0]
    r = store.index([a])
    assert r.unchanged == ("id009",) and store.count() == 9
    r = store.index([a.replace(title="Курс рубля снизился", content_hash="new")])
    assert r.updated == ("id009",)
    assert ids(store.search(SearchRequest(query="снизился"))) == {"id009"}
    assert not ids(store.search(SearchRequest(query="вырос")))


def test_schema_is_versioned(tmp_path):
    s = SQLiteStore(tmp_path / "v.sqlite3")
    assert s.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    s.close()
    SQLiteStore(tmp_path / "v.sqlite3").close()  # reopening does not re-run migrations
