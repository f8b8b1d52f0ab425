"""Index build (issue 13's budget): the faster row building writes exactly the FTS5 values and the
JSON document that the straightforward definitions give, so search results cannot change."""

from __future__ import annotations

import json

import pytest

from pipeline.analysis import FIELD_GAP, analyse, analyse_lemmas
from pipeline.store.sqlite import _fts_values, _prepare_rows

from .test_search import art


def _reference_fts(a) -> tuple[str, ...]:
    """The definition of the nine FTS5 values (schema 5), written out with list concatenation."""
    def pair(orig, en):
        raw, stemmed = analyse(orig)
        lem = analyse_lemmas(orig)
        if en and en != orig:
            raw_en, stemmed_en = analyse(en)
            lem_en = analyse_lemmas(en)
            raw = raw + [FIELD_GAP] + raw_en
            stemmed = stemmed + [FIELD_GAP] + stemmed_en
            if lem_en:
                lem = lem + [FIELD_GAP] + lem_en
        return " ".join(stemmed), " ".join(dict.fromkeys(raw)), " ".join(lem)

    t, s, c = pair(a.title, a.title_en), pair(a.summary, a.summary_en), pair(a.content, a.content_en)
    return (t[0], s[0], c[0], t[1], s[1], c[1], t[2], s[2], c[2])


CASES = [
    art(1, "Ракета упала в поле", "Орешник в Белоруссии"),
    art(2, "Учения с ракетами", "Сводка", title_en="Exercises with missiles", summary_en="Summary"),
    art(3, "Missile test", "A missile was launched", lang="en", title_en="Missile test",
        summary_en="A missile was launched"),
    art(4, "", "", title_en="Only a translation", summary_en=""),
    art(5, "Заголовок", "...", title_en="", summary_en="Знаки: Ёлка ёж"),
    art(6, "Слово zzzmediamongapzzz внутри", "x", title_en="the gap word zzzmediamongapzzz again"),
    art(7, "Текст", "Текст").replace(content="Полный текст статьи о ракетах", content_en="Full text"),
    art(8, "Текст", "Текст").replace(content=None, content_en="Only the English full text"),
    art(9, "Текст", "Текст").replace(content="Только оригинал", content_en=None),
]


@pytest.mark.parametrize("a", CASES, ids=lambda a: a.id)
def test_fts_values_equal_the_reference_definition(a):
    assert _fts_values(a) == _reference_fts(a)


def test_prepared_rows_carry_the_document_and_columns_as_before():
    rows = _prepare_rows(CASES)
    for r, a in zip(rows, CASES):
        assert r.error is None and r.id == a.id
        assert r.doc == json.dumps(a.to_dict(), ensure_ascii=False, sort_keys=True)
        d = a.to_dict()
        assert r.params == (a.feed_id, a.source, a.language, a.canonical_url, d["published_at"],
                            d["fetched_at"], a.content_hash, a.translation.status, r.doc, 0, a.guid)
        assert r.fts == _reference_fts(a) and r.topics == tuple(a.topics)


# --- the FTS5 rows of a chunk are inserted in a thread while the next chunk is prepared -------------

def _many(n: int, start: int = 100):
    return [art(start + i, f"Ракета номер {i} упала", f"Сводка {i}", title_en=f"Missile number {i} fell")
            for i in range(n)]


def test_fts_rows_inserted_in_a_thread_are_searchable_per_chunk(tmp_path, monkeypatch):
    from pipeline.store.base import SearchRequest
    from pipeline.store.sqlite import SQLiteStore

    monkeypatch.setattr(SQLiteStore, "INDEX_CHUNK", 7)  # several chunks: overlap, careful rows between
    batch = _many(30)
    batch.insert(10, batch[3])  # a repeated id in a later chunk takes the careful path
    with SQLiteStore(tmp_path / "s.sqlite3") as s:
        r = s.index(batch)
        assert len(r.created) == 30 and not r.failed
        assert s.search(SearchRequest(query="ракета", limit=50)).total == 30
        assert s.search(SearchRequest(query="title:missile", limit=50)).total == 30
        assert s.search(SearchRequest(query="ракет*", limit=50)).total == 30
        assert s.search(SearchRequest(query='"Missile number 17"', limit=50)).total == 1


def test_a_chunk_whose_fts_insert_is_refused_is_redone_article_by_article(tmp_path, monkeypatch):
    from pipeline.store.base import SearchRequest
    from pipeline.store.sqlite import SQLiteStore

    with SQLiteStore(tmp_path / "s.sqlite3") as s:
        # the one-statement FTS5 insert of the fast path fails with a constraint error; the careful
        # path (one savepoint and one FTS5 insert per article) must still store and index every item
        s.connection.execute("CREATE TABLE refuse (x CHECK (0))")
        monkeypatch.setattr(SQLiteStore, "_INSERT_FTS_JSON", "INSERT INTO refuse SELECT ?1 + key FROM json_each(?2)")
        r = s.index(_many(12))
        assert len(r.created) == 12 and not r.failed
        assert s.search(SearchRequest(query="ракета", limit=50)).total == 12


def test_a_database_error_in_the_fts_thread_aborts_the_whole_call(tmp_path, monkeypatch):
    from pipeline.errors import StoreUnavailable
    from pipeline.store.sqlite import SQLiteStore

    with SQLiteStore(tmp_path / "s.sqlite3") as s:
        monkeypatch.setattr(SQLiteStore, "_INSERT_FTS_JSON", "INSERT INTO no_such_table SELECT 1")
        with pytest.raises(StoreUnavailable, match="no_such_table"):
            s.index(_many(5))
        assert s.count() == 0  # nothing half-written: the transaction was rolled back
        monkeypatch.undo()
        assert len(s.index(_many(5)).created) == 5


# --- WAL checkpoints in a background thread ---------------------------------------------------------

def test_the_wal_is_checkpointed_in_the_background_and_restarts_small(tmp_path, monkeypatch):
    from pipeline.store.base import SearchRequest
    from pipeline.store.sqlite import SQLiteStore

    monkeypatch.setattr(SQLiteStore, "CHECKPOINT_WAL_BYTES", 64 * 1024)
    path = tmp_path / "s.sqlite3"
    wal = tmp_path / "s.sqlite3-wal"
    with SQLiteStore(path) as s:
        assert s.connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # the backstop
        sizes = []
        for k in range(6):
            s.index(_many(40, start=1000 + 40 * k))
            sizes.append(wal.stat().st_size)
            s._checkpointer and s._checkpointer.join()  # (a test wants the checkpoint done before the next write)
        assert s._checkpoint_db is not None  # a checkpoint ran, on its own connection
        # every batch writes more than the threshold, and each write after a checkpoint restarts the WAL
        # from its beginning (truncated): after the first write (the schema too) it holds about one batch
        assert max(sizes[1:]) < 1.5 * min(sizes[1:]) and sizes[-1] < sizes[0], sizes
        assert s.search(SearchRequest(query="ракета", limit=1)).total == 240
    # closing joins the checkpointer and leaves a store that reopens with everything in it
    with SQLiteStore(path) as s:
        assert s.count() == 240 and s.search(SearchRequest(query="title:missile", limit=1)).total == 240


def test_without_a_checkpoint_the_wal_would_keep_growing(tmp_path, monkeypatch):
    """The control for the test above: with the background checkpoint off (threshold out of reach)
    the same writes grow the WAL batch after batch (the backstop is far away)."""
    from pipeline.store.sqlite import SQLiteStore

    monkeypatch.setattr(SQLiteStore, "CHECKPOINT_WAL_BYTES", 2**40)
    wal = tmp_path / "s.sqlite3-wal"
    with SQLiteStore(tmp_path / "s.sqlite3") as s:
        sizes = []
        for k in range(6):
            s.index(_many(40, start=1000 + 40 * k))
            sizes.append(wal.stat().st_size)
        assert s._checkpointer is None and sizes[-1] > 2.5 * sizes[0], sizes


def test_a_failing_background_checkpoint_loses_nothing(tmp_path, monkeypatch, caplog):
    import sqlite3

    from pipeline.store.sqlite import SQLiteStore

    monkeypatch.setattr(SQLiteStore, "CHECKPOINT_WAL_BYTES", 64 * 1024)
    path = tmp_path / "s.sqlite3"
    with SQLiteStore(path) as s:
        class Broken:
            def execute(self, *a):
                raise sqlite3.OperationalError("disk I/O error")

            def close(self):
                pass

        s._checkpoint_db = Broken()  # type: ignore[assignment]
        for k in range(3):
            s.index(_many(40, start=1000 + 40 * k))
            s._checkpointer and s._checkpointer.join()
        assert any(r.getMessage() == "wal_checkpoint_failed" for r in caplog.records)
        assert s.count() == 120
    with SQLiteStore(path) as s:
        assert s.count() == 120
