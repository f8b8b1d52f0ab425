"""Schema 7 (issue 16): the guid column and the covering index that deduplication reads
(``SQLiteStore.stored_versions``); a store of schema 6 is migrated with every guid filled in."""

from __future__ import annotations

import json
import sqlite3

from pipeline.store.base import StoredVersion
from pipeline.store.sqlite import FTS_COLUMNS, MIGRATIONS, SCHEMA_VERSION, SQLiteStore, _fts_values

from .test_search import art


def test_store_of_schema_6_gets_the_guid_column_and_version_index(tmp_path):
    path = tmp_path / "v6.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for v in range(6):
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
    old = [art(1, "Учения в Белоруссии").replace(guid="tass-1"), art(2, "Без guid")]
    for rowid, a in enumerate(old, 1):
        db.execute("INSERT INTO articles (rowid, id, feed_id, source, language, canonical_url, published_at,"
                   " fetched_at, content_hash, translation_status, doc) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (rowid, a.id, a.feed_id, a.source, a.language, a.canonical_url, a.published_at.isoformat(),
                    a.fetched_at.isoformat(), a.content_hash, a.translation.status,
                    json.dumps(a.to_dict(), ensure_ascii=False, sort_keys=True)))
        db.execute(f"INSERT INTO articles_fts (rowid, {', '.join(FTS_COLUMNS)}) VALUES ({','.join('?' * 10)})",
                   (rowid, *_fts_values(a)))
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
