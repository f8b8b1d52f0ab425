"""Schema 8 (issue 16): the guid column and the covering index that deduplication reads
(``SQLiteStore.stored_versions``); a store of schema 6 is migrated with every guid filled in."""

from __future__ import annotations


from pipeline.store.base import StoredVersion
from pipeline.store.sqlite import FTS_COLUMNS, SCHEMA_VERSION, SQLiteStore

from .test_search import art, insert_old_article, store_of_schema


def test_store_of_schema_6_gets_the_guid_column_and_version_index(tmp_path):
    path = tmp_path / "v6.sqlite3"
    db = store_of_schema(path, 6)
    old = [art(1, "Учения в Белоруссии").replace(guid="tass-1"), art(2, "Без guid")]
    for rowid, a in enumerate(old, 1):
        insert_old_article(db, rowid, a, fts_columns=len(FTS_COLUMNS))
    db.close()

    with SQLiteStore(path) as s:
        assert s.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 7
        assert s.stored_versions(["id001", "id002", "id404"]) == {
            "id001": StoredVersion("h1", "tass", "tass-1"), "id002": StoredVersion("h2", "tass", None)}
        plan = " ".join(str(r) for r in s.connection.execute(
            "EXPLAIN QUERY PLAN SELECT id, content_hash, feed_id, guid FROM articles INDEXED BY articles_version"
            " WHERE id IN (?, ?)", ("id001", "id002")).fetchall())
        assert "COVERING INDEX articles_version" in plan, plan
        # new and updated rows keep the column in step with the document
        r = s.index([old[1].replace(title="Теперь с guid", guid="tass-2", content_hash="h2b"),
                     art(3, "Новая").replace(guid="tass-3")])
        assert r.updated == ("id002",) and r.created == ("id003",)
        assert s.stored_versions(["id002", "id003"]) == {
            "id002": StoredVersion("h2b", "tass", "tass-2"), "id003": StoredVersion("h3", "tass", "tass-3")}


def test_store_of_schema_8_loses_the_redundant_language_index_and_finds_the_same(tmp_path):
    """Schema 9: articles_language (language) is dropped, articles_language_published (language,
    published_at, rowid) serves its queries; the same queries find the same rows before and after."""
    import shutil
    import sqlite3

    from pipeline.query import parse_query, to_sqlite
    from pipeline.store.base import SearchRequest

    from .test_search import T0

    path = tmp_path / "v8.sqlite3"
    db = store_of_schema(path, 8)
    old = [art(1, "Учения в Белоруссии", "Орешник"), art(2, "Ракета упала", days=1),
           art(3, "Missile test", "A missile", lang="en", source="BBC", days=2),
           art(4, "Ракеты и Орешник", days=3, title_en="Missiles and Oreshnik"), art(5, "Сводка", lang="uk", days=4)]
    for rowid, a in enumerate(old, 1):
        insert_old_article(db, rowid, a, fts_columns=len(FTS_COLUMNS))
    db.close()
    before_copy = tmp_path / "v8-copy.sqlite3"
    shutil.copy(path, before_copy)
    queries = ["ракета", "Орешник", "missiles", "ракет*", "title:ракет* AND language:ru", "language:en",
               "Белоруссия OR missile", "NOT Сводка"]

    def rows(conn, q, languages=()):
        sql, params = to_sqlite(parse_query(q))
        where = f"({sql})" + (f" AND a.language IN ({','.join('?' * len(languages))})" if languages else "")
        return [r[0] for r in conn.execute(f"SELECT a.rowid FROM articles a WHERE {where}"
                                           " ORDER BY a.published_at DESC, a.rowid DESC", [*params, *languages])]

    conn = sqlite3.connect(before_copy)
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'articles_language'").fetchone()
    expected = {(q, langs): rows(conn, q, langs) for q in queries for langs in ((), ("ru",), ("en", "uk"))}
    conn.close()
    assert any(expected.values())

    with SQLiteStore(path) as s:
        c = s.connection
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 9
        assert c.execute("SELECT 1 FROM sqlite_master WHERE name = 'articles_language'").fetchone() is None
        assert {key: rows(c, *key) for key in expected} == expected
        plan = " ".join(str(r) for r in c.execute(
            "EXPLAIN QUERY PLAN SELECT rowid FROM articles a WHERE a.language IN ('ru') ORDER BY published_at DESC"))
        assert "articles_language_published" in plan, plan
        # the store's own language filter, newest first, as before
        hits = s.search(SearchRequest(languages=("ru",), limit=10, since=T0 - T0.resolution)).hits
        assert [a.id for a in hits] == ["id004", "id002", "id001"]
