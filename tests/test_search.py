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


def test_store_of_schema_2_is_migrated_to_a_contentless_index(tmp_path):
    """A store written before schema 3 (FTS5 kept a copy of the token text) opens, keeps every
    article searchable, gets smaller on VACUUM, and updates still remove the old terms."""
    import json
    import sqlite3

    from pipeline.store.sqlite import FTS_COLUMNS, MIGRATIONS, _fts_values

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for v in (0, 1):
        db.executescript("BEGIN;" + MIGRATIONS[v] + f";PRAGMA user_version={v + 1};COMMIT;")
    old = [art(1, "Ракета упала в поле"), art(2, "Комплекс «Орешник» в Белоруссии", days=1),
           art(3, "Missile test in the Pacific", lang="en", source="BBC", days=2)]
    for rowid, a in enumerate(old, 1):
        db.execute("INSERT INTO articles (rowid, id, feed_id, source, language, canonical_url, published_at,"
                   " fetched_at, content_hash, translation_status, doc) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (rowid, a.id, a.feed_id, a.source, a.language, a.canonical_url, a.published_at.isoformat(),
                    a.fetched_at.isoformat(), a.content_hash, a.translation.status,
                    json.dumps(a.to_dict(), ensure_ascii=False, sort_keys=True)))
        # the six columns of schema 1 (stems, raw tokens); schema 5 adds the lemma columns
        db.execute(f"INSERT INTO articles_fts (rowid, {', '.join(FTS_COLUMNS[:6])}) VALUES (?,?,?,?,?,?,?)",
                   (rowid, *_fts_values(a)[:6]))
    db.close()

    s = SQLiteStore(path)
    try:
        assert s.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        sql = s.connection.execute("SELECT sql FROM sqlite_master WHERE name='articles_fts'").fetchone()[0]
        assert "content = ''" in sql
        assert s.connection.execute("SELECT count(*) FROM sqlite_master WHERE name='articles_fts_content'"
                                    ).fetchone()[0] == 0
        # schema 4: the translation-status index holds only rows to translate again, and is used
        plan = s.connection.execute("EXPLAIN QUERY PLAN SELECT doc FROM articles WHERE translation_status IN"
                                    " ('unavailable', 'pending') ORDER BY published_at DESC LIMIT 5").fetchall()
        assert "articles_translation_pending" in str(plan)
        assert s.articles_pending_translation() == []
        for q, want in (("ракеты", {"id001"}), ("Орешника", {"id002"}), ("missiles", {"id003"}),
                        ("title:ракет*", {"id001"}), ('"упала в поле"', {"id001"})):
            assert {h.id for h in s.search(SearchRequest(query=q)).hits} == want, q
        r = s.index([old[0].replace(title="Курс рубля вырос", content_hash="new")])
        assert r.updated == ("id001",)
        assert not s.search(SearchRequest(query="ракета")).hits
        assert {h.id for h in s.search(SearchRequest(query="рубль")).hits} == {"id001"}
    finally:
        s.close()


def test_one_refused_article_in_a_large_batch_is_dead_lettered_alone(tmp_path):
    """The fast path writes whole chunks with executemany; a chunk the database refuses is redone
    article by article, so only the bad item fails."""
    s = SQLiteStore(tmp_path / "b.sqlite3")
    try:
        s.connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON articles WHEN NEW.id = 'id777' "
                             "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END")
        batch = [art(i, f"Заголовок номер {i}", days=i % 30) for i in range(1, 1201)]
        r = s.index(batch + [batch[5]])  # a repeated id goes the careful way
        assert set(r.failed) == {"id777"} and "refused" in r.failed["id777"]
        assert len(r.created) == 1199 and s.count() == 1199
        assert list(r.created) == [a.id for a in batch if a.id != "id777"]  # input order
        assert {h.id for h in s.search(SearchRequest(query='"номер 778"')).hits} == {"id778"}
        again = s.index(batch[:10])
        assert again.unchanged == tuple(a.id for a in batch[:10]) and not again.created
    finally:
        s.close()


def test_store_of_schema_4_gets_the_lemma_columns(tmp_path):
    """Schema 5 rebuilds the FTS5 index with the lemma columns: an article stored before it is then
    found by a form that only its lemma shares (Беларусь: stem 'белар'; Беларуси: 'беларус'), and
    the FTS5 tuning (page size, automerge) is in place."""


    path = tmp_path / "v4.sqlite3"
    db = store_of_schema(path, 4)
    a = art(1, "Учения в Беларуси", "Войска прибыли в Минск")
    insert_old_article(db, 1, a, fts_columns=6)
    assert db.execute("SELECT count(*) FROM articles_fts WHERE articles_fts MATCH 'белар'").fetchone()[0] == 0
    db.close()

    s = SQLiteStore(path)
    try:
        assert s.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [h.id for h in s.search(SearchRequest(query="Беларусь")).hits] == [a.id]
        assert [h.id for h in s.search(SearchRequest(query='"войско прибыть"')).hits] == [a.id]
        config = dict(s.connection.execute("SELECT k, v FROM articles_fts_config").fetchall())
        assert config["pgsz"] == 8000 and config["automerge"] == 8
    finally:
        s.close()


def test_a_language_filter_reads_the_newest_items_from_the_language_index(tmp_path):
    """Schema 6: `-l ru` with no query walks (language, published_at) in order instead of sorting
    every item of the language by date."""
    s = SQLiteStore(tmp_path / "lang.sqlite3")
    try:
        s.index([art(i, f"Новость {i}", days=i % 30) for i in range(1, 60)])
        plan = " ".join(str(r) for r in s.connection.execute(
            "EXPLAIN QUERY PLAN SELECT a.rowid FROM articles a WHERE a.language IN ('ru')"
            " ORDER BY a.published_at DESC, a.rowid DESC LIMIT 20").fetchall())
        assert "articles_language_published" in plan and "TEMP B-TREE" not in plan, plan
        assert [h.id for h in s.search(SearchRequest(languages=("ru",), limit=3)).hits] == ["id059", "id029", "id058"]
    finally:
        s.close()


def store_of_schema(path, version: int):
    """A SQLite store file as an older version of mediamon left it: the migrations up to ``version``
    applied, nothing stored.  Returns the open connection (autocommit)."""
    import sqlite3

    from pipeline.store.sqlite import MIGRATIONS

    db = sqlite3.connect(path, isolation_level=None)
    for v in range(version):
        step = MIGRATIONS[v]
        db.execute("BEGIN")
        if callable(step):
            step(db)
        else:
            for stmt in step.split(";"):
                if stmt.strip():
                    db.execute(stmt)
        db.execute(f"PRAGMA user_version={v + 1}")
        db.execute("COMMIT")
    return db


def insert_old_article(db, rowid: int, a, *, fts_columns: int) -> None:
    """``a`` stored the way the early schemas stored it: the columns of schema 1 and the first
    ``fts_columns`` FTS5 columns."""
    import json

    from pipeline.store.sqlite import FTS_COLUMNS, _fts_values

    db.execute("INSERT INTO articles (rowid, id, feed_id, source, language, canonical_url, published_at,"
               " fetched_at, content_hash, translation_status, doc) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
               (rowid, a.id, a.feed_id, a.source, a.language, a.canonical_url, a.published_at.isoformat(),
                a.fetched_at.isoformat(), a.content_hash, a.translation.status,
                json.dumps(a.to_dict(), ensure_ascii=False, sort_keys=True)))
    db.execute(f"INSERT INTO articles_fts (rowid, {', '.join(FTS_COLUMNS[:fts_columns])})"
               f" VALUES ({','.join('?' * (fts_columns + 1))})", (rowid, *_fts_values(a)[:fts_columns]))
