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
