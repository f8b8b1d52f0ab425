"""Embedded store: one SQLite file in DATA_DIR with an FTS5 index over stemmed text.

Schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[i]`` upgrades
version ``i`` to ``i + 1`` (SQL, or a function of the connection for steps that need Python),
each in one transaction.  Safe for one writer (WAL mode, busy timeout for
readers such as ``mediamon search`` running beside a cycle).

FTS5 columns (``articles_fts``, rowid = ``articles.rowid``)::

    title, summary, content              stemmed tokens: original text, FIELD_GAP, English text
    title_raw, summary_raw, content_raw  the same, folded but unstemmed (for trailing wildcards)

The FTS5 table is contentless (``content=''``, schema 3): it keeps the index, not a second copy of
the token text (the article itself is in ``articles.doc``): about 3 KB less per article and ~10 %
faster inserts.  Removing an article's terms therefore needs the values it was indexed with; they
are recomputed from the stored document (:func:`_fts_values`).  A change to the text analysis
(``pipeline/analysis.py``) must come with a migration that rebuilds the index, as schema 3 does.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

from ..analysis import FIELD_GAP, analyse, analyse_lemmas
from ..errors import StoreError, StoreUnavailable
from ..logs import get_logger, log
from ..models import Article, FeedState, to_iso
from .base import (AlertEntry, Closing, CorruptRows, IndexResult, SearchRequest, SearchResult, Stats, StoredVersion,
                   TranslationKey)

logger = get_logger(__name__)

FTS_COLUMNS = ("title", "summary", "content", "title_raw", "summary_raw", "content_raw",
               "title_lem", "summary_lem", "content_lem")
_FTS_PLACEHOLDERS = ",".join("?" * (len(FTS_COLUMNS) + 1))


def _rebuild_fts(db: sqlite3.Connection) -> None:
    """The FTS5 table is rebuilt from the stored documents (2 -> 3: contentless; 4 -> 5: lemma
    columns).  A change to the analysis (pipeline/analysis.py) must add a migration that calls this."""
    db.execute("DROP TABLE articles_fts")
    db.execute(_FTS_TABLE_SQL)
    _tune_fts(db)
    cur = db.execute("SELECT rowid, doc FROM articles")
    while rows := cur.fetchmany(1000):
        db.executemany(f"INSERT INTO articles_fts (rowid, {', '.join(FTS_COLUMNS)}) VALUES ({_FTS_PLACEHOLDERS})",
                       [(rowid, *_fts_values(Article.from_dict(json.loads(doc)))) for rowid, doc in rows])


# FTS5 b-tree pages of 8,000 bytes (default 4,050) and merges of 8 segments at a time (default 4):
# fewer, larger writes while a cycle indexes its batches.  Measured side by side on 20,000 bench
# articles (bench/search.py's generator): +35 % index throughput for both together.
_FTS_TUNING = (("pgsz", 8000), ("automerge", 8))


def _tune_fts(db: sqlite3.Connection) -> None:
    for key, value in _FTS_TUNING:
        db.execute("INSERT INTO articles_fts (articles_fts, rank) VALUES (?, ?)", (key, value))


_FTS_TABLE_SQL = f"""
    CREATE VIRTUAL TABLE articles_fts USING fts5(
        {', '.join(FTS_COLUMNS)},
        content = '', tokenize = "unicode61 remove_diacritics 0"
    )"""

MIGRATIONS: list = [
    # 0 -> 1
    """
    CREATE TABLE articles (
        rowid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        feed_id TEXT NOT NULL,
        source TEXT NOT NULL,
        language TEXT,
        canonical_url TEXT,
        published_at TEXT NOT NULL,
        fetched_at TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        translation_status TEXT,
        doc TEXT NOT NULL
    );
    CREATE INDEX articles_published ON articles(published_at, rowid);
    CREATE INDEX articles_source ON articles(source);
    CREATE INDEX articles_language ON articles(language);
    CREATE INDEX articles_translation ON articles(translation_status);
    CREATE TABLE article_topics (
        topic TEXT NOT NULL,
        article_rowid INTEGER NOT NULL REFERENCES articles(rowid) ON DELETE CASCADE,
        PRIMARY KEY (topic, article_rowid)
    ) WITHOUT ROWID;
    CREATE INDEX article_topics_rowid ON article_topics(article_rowid);
    CREATE VIRTUAL TABLE articles_fts USING fts5(
        title, summary, content, title_raw, summary_raw, content_raw,
        tokenize = "unicode61 remove_diacritics 0"
    );
    CREATE TABLE feed_state (
        feed_id TEXT PRIMARY KEY,
        state TEXT NOT NULL
    );
    CREATE TABLE translation_cache (
        model TEXT NOT NULL,
        language TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        translation TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (model, language, text_hash)
    ) WITHOUT ROWID;
    """,
    # 1 -> 2: alerts (pipeline/alerts.py): durable queue, sent-log, per-rule email log (throttle)
    """
    CREATE TABLE alert_queue (
        rule_id TEXT NOT NULL,
        article_id TEXT NOT NULL,
        terms TEXT NOT NULL DEFAULT '[]',
        queued_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        last_attempt_at TEXT,
        PRIMARY KEY (rule_id, article_id)
    ) WITHOUT ROWID;
    CREATE INDEX alert_queue_status ON alert_queue(rule_id, status, queued_at);
    CREATE TABLE alert_sent (
        rule_id TEXT NOT NULL,
        article_id TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        message_id TEXT NOT NULL,
        PRIMARY KEY (rule_id, article_id)
    ) WITHOUT ROWID;
    CREATE TABLE alert_emails (
        rule_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        items INTEGER NOT NULL,
        PRIMARY KEY (rule_id, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX alert_emails_time ON alert_emails(rule_id, sent_at);
    """,
    # 2 -> 3: contentless FTS5 table (the token text was stored twice)
    _rebuild_fts,
    # 3 -> 4: the translation-status index only holds the rows a later run translates again
    # (articles_pending_translation); every other insert skips it
    """
    DROP INDEX articles_translation;
    CREATE INDEX articles_translation_pending ON articles(translation_status, published_at)
        WHERE translation_status IN ('unavailable', 'pending');
    """,
    # 4 -> 5: lemma columns (title_lem, summary_lem, content_lem: pipeline.analysis.analyse_lemmas)
    _rebuild_fts,
    # 5 -> 6: a language filter reads its newest items from one index instead of sorting every item
    # of the language by date (`mediamon search -l ru`, the search page's language filter)
    """
    CREATE INDEX articles_language_published ON articles(language, published_at, rowid);
    """,
    # 6 -> 7: items whose feed gave no date (``date_inferred``: published_at is the time first seen)
    # are sorted after the dated ones and left out of --since windows; a partial index finds them
    """
    ALTER TABLE articles ADD COLUMN date_inferred INTEGER NOT NULL DEFAULT 0;
    UPDATE articles SET date_inferred = 1 WHERE json_extract(doc, '$.date_inferred') = 1;
    CREATE INDEX articles_undated ON articles(published_at, rowid) WHERE date_inferred = 1;
    """,
    # 7 -> 8 (issue 16): deduplication reads each batch id's content hash, feed and guid
    # (stored_versions) from one covering index instead of each row (the guid was only in the JSON
    # document: ~5x the time of known_ids over 20,000 ids with json_extract, ~1x with the index)
    """
    ALTER TABLE articles ADD COLUMN guid TEXT;
    UPDATE articles SET guid = json_extract(doc, '$.guid');
    CREATE INDEX articles_version ON articles(id, content_hash, feed_id, guid);
    """,
    # 8 -> 9 (issue 13, index budget): articles_language (language) is the first column of
    # articles_language_published (language, published_at, rowid): every query it served, the wider
    # one serves; one B-tree fewer to update per stored article
    """
    DROP INDEX IF EXISTS articles_language;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def _gap_join(first: list[str], second: list[str]) -> str:
    """``" ".join(first + [FIELD_GAP] + second)`` without building the concatenated list."""
    head = f"{' '.join(first)} {FIELD_GAP}" if first else FIELD_GAP
    return f"{head} {' '.join(second)}" if second else head


def _fts_pair(orig: str | None, en: str | None) -> tuple[str, str, str]:
    """(stems, distinct raw tokens, lemmas) of one field: the original text, FIELD_GAP, the English
    text (when it differs).  Joined piecewise: no concatenated token lists (index-build CPU)."""
    raw, stemmed = analyse(orig)
    lem = analyse_lemmas(orig)
    if not en or en == orig:
        # the *_raw columns serve trailing-wildcard queries only (never phrases or NEAR), so each
        # distinct token once is enough: less for FTS5 to index, the same matches
        return " ".join(stemmed), " ".join(dict.fromkeys(raw)), " ".join(lem)
    raw_en, stemmed_en = analyse(en)
    lem_en = analyse_lemmas(en)
    distinct = dict.fromkeys(raw)
    distinct[FIELD_GAP] = None  # (kept in its first place if the text itself contains the word)
    distinct.update(dict.fromkeys(raw_en))
    stem_col = _gap_join(stemmed, stemmed_en)
    # an English translation has no lemma channel (no Cyrillic), as a rule
    lem_col = _gap_join(lem, lem_en) if lem_en else " ".join(lem)
    return stem_col, " ".join(distinct), lem_col


def _fts_values(a: Article) -> tuple[str, ...]:
    t_stem, t_raw, t_lem = _fts_pair(a.title, a.title_en)
    s_stem, s_raw, s_lem = _fts_pair(a.summary, a.summary_en)
    if a.content or a.content_en:
        c_stem, c_raw, c_lem = _fts_pair(a.content, a.content_en)
    else:
        c_stem = c_raw = c_lem = ""
    return (t_stem, s_stem, c_stem, t_raw, s_raw, c_raw, t_lem, s_lem, c_lem)


class _Row(NamedTuple):
    """One article ready for the database (a NamedTuple: built 10^5 times per index build, and
    cheaper to create than a frozen dataclass)."""

    pos: int
    id: str
    doc: str = ""
    params: tuple = ()
    fts: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    error: str | None = None  # the article could not even be turned into a row: dead letter


# json.dumps(..., ensure_ascii=False, sort_keys=True) without building an encoder per call; the
# stored document must stay byte-identical (index() compares it to tell "unchanged" from "updated")
_encode_doc = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def _prepare_rows(articles: Sequence[Article]) -> list[_Row]:
    rows = []
    for pos, a in enumerate(articles):
        try:
            d = a.to_dict()
            doc = _encode_doc(d)
            params = (a.feed_id, a.source, a.language, a.canonical_url, d["published_at"], d["fetched_at"],
                      a.content_hash, a.translation.status, doc, int(a.date_inferred), a.guid)
            rows.append(_Row(pos, a.id, doc, params, _fts_values(a), tuple(a.topics)))
        except (ValueError, TypeError, AttributeError) as exc:
            rows.append(_Row(pos, str(getattr(a, "id", "?")), error=f"{exc.__class__.__name__}: {exc}"[:500]))
    return rows


class _FtsInsert:
    """One statement run on ``db`` in a thread of its own; :meth:`wait` joins it and returns the
    exception it raised, if any.  The connection is used by nobody else meanwhile (index())."""

    def __init__(self, db: sqlite3.Connection, sql: str, params: tuple):
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(db, sql, params), name="mediamon-fts-insert",
                                        daemon=True)
        self._thread.start()

    def _run(self, db: sqlite3.Connection, sql: str, params: tuple) -> None:
        try:
            db.execute(sql, params)
        except BaseException as exc:  # noqa: BLE001 - handed to the indexing thread by wait()
            self._error = exc

    def wait(self) -> BaseException | None:
        self._thread.join()
        return self._error


def _encode_cursor(published_at: str, rowid: int, undated: int = 0) -> str:
    value = [published_at, rowid] + ([1] if undated else [])
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, int, int]:
    """(published_at, rowid, 1 when the page ended among the undated items); a cursor of an older
    version has no third value (dated)."""
    try:
        p, r, *rest = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if len(rest) > 1:
            raise ValueError("too many values")
        return str(p), int(r), int(bool(rest and rest[0]))
    except Exception as exc:  # noqa: BLE001 - any garbage cursor is a user error
        raise ValueError(f"invalid cursor: {cursor!r}") from exc


class SQLiteStore(Closing):
    """The embedded default store.  ``SQLiteStore(path)`` creates or migrates the file."""

    CHECKPOINT_WAL_BYTES = 40 * 2**20  # a background checkpoint once the WAL holds this much

    def __init__(self, path: Path | str, *, timeout: float = 30.0):
        self.path = Path(path)
        self._wal_path = None if str(path) == ":memory:" else Path(f"{path}-wal")
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_db: sqlite3.Connection | None = None
        self._timeout = timeout
        self.corrupt = CorruptRows("sqlite")  # stored rows that could not be read back (skipped)
        try:
            if str(path) != ":memory:":
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError) as exc:
                    raise StoreError(f"cannot open SQLite store {path}: {self.path.parent} (or a directory "
                                     "above it) is a file, not a directory") from exc
                except OSError as exc:
                    raise StoreUnavailable(f"cannot create data directory {self.path.parent}: "
                                           f"{exc.strerror or exc}") from exc
            self._db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # 64 MiB page cache (default 2 MiB): search and counts over 10^5 articles touch one table
            # page per hit; bench/search.py at 200k articles: worst query p50 93 -> ~40 ms
            self._db.execute("PRAGMA cache_size=-65536")
            # the WAL is checkpointed into the database every ~40 MB (not every 4 MB: pages that every
            # batch touches, FTS5 segments and index B-trees, are copied once per checkpoint), by a
            # thread with its own connection after a write (_maybe_checkpoint), so that a cycle's
            # indexing does not wait for it (~12 % of an index build).  The WAL is truncated when it
            # restarts, so its size tells how much is waiting.  This connection's own automatic
            # checkpoint is the backstop, at four times that (a reader that holds the WAL, a
            # checkpoint that cannot keep up).
            self._db.execute("PRAGMA journal_size_limit=0")
            self._db.execute(f"PRAGMA wal_autocheckpoint={max(1000, 4 * self.CHECKPOINT_WAL_BYTES // 4096)}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"cannot open SQLite store {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path} is not a usable mediamon store: {exc}") from exc

    # -- plumbing -------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this mediamon "
                             f"({SCHEMA_VERSION}); upgrade mediamon")
        for v in range(version, SCHEMA_VERSION):
            # one transaction per step: a failed migration leaves the previous version intact
            step = MIGRATIONS[v]
            if not callable(step):
                self._db.executescript("BEGIN IMMEDIATE;" + step + f";PRAGMA user_version={v + 1};COMMIT;")
                continue
            self._db.execute("BEGIN IMMEDIATE")
            try:
                step(self._db)
                self._db.execute(f"PRAGMA user_version={v + 1}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _tx(self):
        db = self._db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, exc, tb):
                if exc_type is None:
                    db.execute("COMMIT")
                elif db.in_transaction:
                    # SQLite may already have rolled back by itself (SQLITE_FULL, IOERR, NOMEM);
                    # a failing ROLLBACK must not replace the original error ("disk is full")
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                return False

        return _Tx()

    def _write(self, fn):
        try:
            with self._tx():
                result = fn()
            self._maybe_checkpoint()
            return result
        except sqlite3.OperationalError as exc:
            # locked, disk full (SQLITE_FULL surfaces as OperationalError), I/O errors
            raise StoreUnavailable(f"SQLite write failed ({self.path}): {exc}") from exc
        except sqlite3.DatabaseError as exc:
            # constraint/trigger failures, corruption: a clear store error, never a raw sqlite3 one
            raise StoreError(f"SQLite write failed ({self.path}): {exc.__class__.__name__}: {exc}") from exc

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None
        if self._checkpoint_db is not None:
            self._checkpoint_db.close()
            self._checkpoint_db = None
        self._db.close()

    def _maybe_checkpoint(self) -> None:
        """After a write: start a background checkpoint when the WAL has grown past
        CHECKPOINT_WAL_BYTES and none is running (PASSIVE: it never waits for, nor blocks, the writer
        or readers; what a running write adds meanwhile waits for the next one)."""
        if self._wal_path is None or (self._checkpointer is not None and self._checkpointer.is_alive()):
            return
        try:
            if self._wal_path.stat().st_size < self.CHECKPOINT_WAL_BYTES:
                return
        except OSError:
            return
        self._checkpointer = threading.Thread(target=self._checkpoint, name="mediamon-wal-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint(self) -> None:
        try:
            if self._checkpoint_db is None:
                self._checkpoint_db = sqlite3.connect(str(self.path), timeout=self._timeout, isolation_level=None,
                                                      check_same_thread=False)
            busy, frames, copied = self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            log(logger, logging.DEBUG, "wal_checkpoint", path=str(self.path), frames=frames, copied=copied)
        except sqlite3.Error as exc:
            # nothing is lost: the writer's own automatic checkpoint (the backstop) copies the WAL later
            log(logger, logging.WARNING, "wal_checkpoint_failed", path=str(self.path), error=str(exc))

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    # -- articles ---------------------------------------------------------------------------
    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM articles").fetchone()[0]

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(ids))
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT id FROM articles WHERE id IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self._db.execute(q, chunk))
        return found

    def stored_versions(self, ids: Iterable[str]) -> dict[str, StoredVersion]:
        ids = list(dict.fromkeys(ids))
        found: dict[str, StoredVersion] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = (f"SELECT id, content_hash, feed_id, guid FROM articles INDEXED BY articles_version"
                 f" WHERE id IN ({','.join('?' * len(chunk))})")
            found.update((r[0], StoredVersion(r[1], r[2], r[3])) for r in self._db.execute(q, chunk))
        return found

    # articles per executemany batch; 250 (was 500): a cycle batch of 1,000 is four chunks, so three of
    # them are built while the FTS5 thread indexes the one before (20,000 bench articles, alternating
    # runs: 2,395 / 2,432 articles/s against 2,192 / 2,090 with 500; 125: no better)
    INDEX_CHUNK = 250

    def index(self, articles: Sequence[Article]) -> IndexResult:
        """Create or update ``articles`` in one transaction.

        Fast path: the rows of each chunk of new articles go in with two ``executemany`` calls
        (articles, topics) and one FTS5 statement that runs in a thread while the next chunk's rows
        are built (:meth:`_write_chunk`).  Articles already
        stored (an update or an unchanged copy), repeated ids, and every article of a chunk the
        database refused take the careful path: one savepoint per article, so that an item the
        database refuses (constraint, trigger, text it cannot encode) is dead-lettered alone and the
        batch goes on.  Errors of the database itself (disk full, locked, I/O: OperationalError)
        abort the whole call."""
        outcome: dict[str, str] = {}  # id -> created | updated | unchanged
        failed: dict[str, str] = {}
        chunks = [articles[i:i + self.INDEX_CHUNK] for i in range(0, len(articles), self.INDEX_CHUNK)]

        def do() -> None:
            # the next chunk's rows are built while a thread inserts this chunk's FTS5 rows (one
            # statement: SQLite tokenizes and indexes without holding the GIL); see _write_chunk
            rows = _prepare_rows(chunks[0]) if chunks else []
            for k in range(len(chunks)):
                finish = self._write_chunk(rows, outcome, failed)
                try:
                    rows = _prepare_rows(chunks[k + 1]) if k + 1 < len(chunks) else []
                finally:
                    finish()  # always before anything else touches the connection (or rolls back)

        self._write(do)
        ids = list(dict.fromkeys(a.id for a in articles))
        return IndexResult(created=tuple(i for i in ids if outcome.get(i) == "created"),
                           updated=tuple(i for i in ids if outcome.get(i) == "updated"),
                           unchanged=tuple(i for i in ids if outcome.get(i) == "unchanged"),
                           failed=failed)

    _INSERT_ARTICLE = ("INSERT INTO articles (feed_id, source, language, canonical_url, published_at, fetched_at,"
                       " content_hash, translation_status, doc, date_inferred, guid, id, rowid)"
                       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
    _INSERT_FTS = f"INSERT INTO articles_fts (rowid, {', '.join(FTS_COLUMNS)}) VALUES ({_FTS_PLACEHOLDERS})"
    _INSERT_TOPIC = "INSERT OR IGNORE INTO article_topics (topic, article_rowid) VALUES (?,?)"

    # the FTS5 rows of a chunk as one statement over a JSON array of the rows' nine values: it runs
    # in one sqlite3_step, during which Python's sqlite3 module releases the GIL
    _INSERT_FTS_JSON = (f"INSERT INTO articles_fts (rowid, {', '.join(FTS_COLUMNS)}) SELECT ?1 + key, "
                        + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(FTS_COLUMNS)))
                        + " FROM json_each(?2)")
    _REFUSED = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, ValueError)

    def _write_chunk(self, rows: list["_Row"], outcome: dict[str, str],
                     failed: dict[str, str]) -> Callable[[], None]:
        """Write the chunk's new articles (fast path) and start inserting their FTS5 rows in a
        thread; the returned ``finish`` waits for that insert, then writes the careful-path
        articles.  Until ``finish`` returns, the caller must not use the connection: it may only
        prepare the next chunk's rows (pure Python, overlapping with SQLite's tokenizing)."""
        db = self._db
        existing: dict[str, tuple[int, str]] = {}
        ids = [r.id for r in rows]
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            for rowid, id_, doc in db.execute(
                    f"SELECT rowid, id, doc FROM articles WHERE id IN ({','.join('?' * len(part))})", part):
                existing[id_] = (rowid, doc)
        fast: list[_Row] = []
        careful: list[_Row] = []
        seen: set[str] = set()
        for r in rows:
            if r.error is None and r.id not in existing and r.id not in seen and r.id not in outcome:
                fast.append(r)
            else:
                careful.append(r)
            seen.add(r.id)
        job: _FtsInsert | None = None
        if fast:
            base = db.execute("SELECT coalesce(max(rowid), 0) FROM articles").fetchone()[0]
            db.execute("SAVEPOINT article_chunk")
            try:
                db.executemany(self._INSERT_ARTICLE, [r.params + (r.id, base + n) for n, r in enumerate(fast, 1)])
                db.executemany(self._INSERT_TOPIC, [(t, base + n) for n, r in enumerate(fast, 1) for t in r.topics])
                payload = json.dumps([r.fts for r in fast], ensure_ascii=False)
            except self._REFUSED:
                # some row is refused: redo this chunk one article at a time to find it
                db.execute("ROLLBACK TO article_chunk")
                db.execute("RELEASE article_chunk")
                careful = sorted(fast + careful, key=lambda r: r.pos)
                fast = []
            else:
                job = _FtsInsert(db, self._INSERT_FTS_JSON, (base + 1, payload))

        def finish() -> None:
            nonlocal careful
            if job is not None:
                error = job.wait()
                if error is None:
                    db.execute("RELEASE article_chunk")
                    for r in fast:
                        outcome[r.id] = "created"
                elif isinstance(error, self._REFUSED):
                    db.execute("ROLLBACK TO article_chunk")
                    db.execute("RELEASE article_chunk")
                    careful = sorted(fast + careful, key=lambda r: r.pos)
                else:
                    raise error  # the database itself failed (disk full, I/O): the call aborts
            for r in careful:
                self._write_one(r, outcome, failed)

        return finish

    def _write_one(self, r: "_Row", outcome: dict[str, str], failed: dict[str, str]) -> None:
        db = self._db
        if r.error is not None:
            failed[r.id] = r.error
            return
        db.execute("SAVEPOINT one_article")
        try:
            row = db.execute("SELECT rowid, doc FROM articles WHERE id=?", (r.id,)).fetchone()
            if row is not None and row[1] == r.doc:
                result = "unchanged"
            elif row is None:
                cur = db.execute(self._INSERT_ARTICLE, r.params + (r.id, None))
                rowid = cur.lastrowid
                result = "created"
            else:
                rowid = row[0]
                db.execute(
                    "UPDATE articles SET feed_id=?, source=?, language=?, canonical_url=?,"
                    " published_at=?, fetched_at=?, content_hash=?, translation_status=?, doc=?,"
                    " date_inferred=?, guid=? WHERE rowid=?", r.params + (rowid,))
                # contentless FTS5: the old terms are removed by giving the values they came from;
                # a corrupt stored doc (logged, counted) cannot give them, so its terms stay behind
                # under this rowid and the fresh copy replaces the document itself
                prev = self.corrupt.article(row[1], r.id)
                if prev is not None:
                    db.execute(f"INSERT INTO articles_fts (articles_fts, rowid, {', '.join(FTS_COLUMNS)})"
                               f" VALUES ('delete',{_FTS_PLACEHOLDERS})", (rowid, *_fts_values(prev)))
                db.execute("DELETE FROM article_topics WHERE article_rowid=?", (rowid,))
                result = "updated"
            if result != "unchanged":
                db.execute(self._INSERT_FTS, (rowid, *r.fts))
                db.executemany(self._INSERT_TOPIC, [(t, rowid) for t in r.topics])
        except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, ValueError) as exc:
            db.execute("ROLLBACK TO one_article")
            db.execute("RELEASE one_article")
            failed[r.id] = f"{exc.__class__.__name__}: {exc}"[:500]
            return
        db.execute("RELEASE one_article")
        # a repeated id in one call: a copy created here stays "created", whatever later copies do
        prior = outcome.get(r.id)
        if prior is None or (prior == "unchanged" and result == "updated"):
            outcome[r.id] = result

    def _rows_to_articles(self, rows) -> list[Article]:
        """Articles of rows whose first column is ``doc`` and last is ``id``; a corrupt one is skipped."""
        return [a for r in rows if (a := self.corrupt.article(r[0], r[-1])) is not None]

    def get_articles(self, ids: Iterable[str]) -> list[Article]:
        ids = list(ids)
        out: dict[str, Article] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT doc, id FROM articles WHERE id IN ({','.join('?' * len(chunk))})"
            for a in self._rows_to_articles(self._db.execute(q, chunk)):
                out[a.id] = a
        return [out[i] for i in ids if i in out]

    def ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Stored ids that start with ``prefix`` (``mediamon show`` takes the short id of the search
        table), at most ``limit``; a range over the unique index on id."""
        if not prefix:
            return []
        hi = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self._db.execute("SELECT id FROM articles WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                                (prefix, hi, limit)).fetchall()
        return [r[0] for r in rows]

    def articles_pending_translation(self, limit: int = 1000) -> list[Article]:
        rows = self._db.execute(
            "SELECT doc, id FROM articles WHERE translation_status IN ('unavailable', 'pending')"
            " ORDER BY published_at DESC LIMIT ?", (limit,))
        return self._rows_to_articles(rows)

    def _where(self, req: SearchRequest) -> tuple[list[str], list]:
        clauses: list[str] = []
        params: list = []
        if req.query and req.query.strip():
            from ..query import parse_query, to_sqlite

            sql, qparams = to_sqlite(parse_query(req.query, req.aliases))
            clauses.append(f"({sql})")
            params.extend(qparams)
        if req.topics:
            clauses.append("a.rowid IN (SELECT article_rowid FROM article_topics WHERE topic IN "
                           f"({','.join('?' * len(req.topics))}))")
            params.extend(req.topics)
        for col, values in (("language", req.languages), ("source", req.sources), ("feed_id", req.feed_ids)):
            if values:
                clauses.append(f"a.{col} IN ({','.join('?' * len(values))})")
                params.extend(values)
        if req.since:
            clauses.append("a.published_at >= ?")
            params.append(to_iso(req.since))
        if req.until:
            clauses.append("a.published_at < ?")
            params.append(to_iso(req.until))
        if not req.include_undated:
            clauses.append("a.date_inferred = 0")
        return clauses, params

    def search(self, request: SearchRequest) -> SearchResult:
        clauses, params = self._where(request)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        total = self._db.execute(f"SELECT count(*) FROM articles a{where}", params).fetchone()[0]
        if request.sort == "relevance" and request.query and request.query.strip():
            from ..query import parse_query, to_fts_rank

            rank = to_fts_rank(parse_query(request.query, request.aliases))
            if rank:
                return SearchResult(total=total, hits=tuple(self._by_relevance(rank, where, params, request)))
        order = "a.published_at DESC, a.rowid DESC" if request.sort != "oldest" else "a.published_at ASC, a.rowid ASC"
        op = "<" if request.sort != "oldest" else ">"
        # items with an inferred date (the feed gave none: published_at is when they were first seen)
        # come after every dated item, in either order: two runs, dated then undated
        undated = 0
        # (the existence check reads one entry of the partial index: a store without undated items
        # pays nothing more than before)
        if total and request.include_undated and self._db.execute(
                "SELECT 1 FROM articles WHERE date_inferred = 1 LIMIT 1").fetchone():
            undated = self._db.execute(f"SELECT count(*) FROM articles a WHERE "
                                       f"{' AND '.join(clauses + ['a.date_inferred = 1'])}", params).fetchone()[0]
        dated = total - undated

        def page(flag: int | None, after: tuple[str, int] | None, limit: int, offset: int) -> list:
            cl, pa = list(clauses), list(params)
            if flag is not None:
                cl.append(f"a.date_inferred = {flag}")
            if after is not None:
                cl.append(f"(a.published_at, a.rowid) {op} (?, ?)")
                pa.extend(after)
            pwhere = (" WHERE " + " AND ".join(cl)) if cl else ""
            # two steps: sort only (published_at, rowid) of the hits, then read the page's documents
            # (sorting the documents themselves moved every hit's JSON through the sorter)
            return self._db.execute(
                f"SELECT d.doc, d.published_at, d.rowid, d.date_inferred, d.id FROM articles d WHERE d.rowid IN ("
                f"SELECT a.rowid FROM articles a{pwhere} ORDER BY {order} LIMIT ? OFFSET ?) "
                f"ORDER BY {order.replace('a.', 'd.')}", pa + [limit, offset]).fetchall()

        limit = request.limit
        if not undated:
            after = _decode_cursor(request.cursor)[:2] if request.cursor else None
            rows = page(None, after, limit, 0 if request.cursor else request.offset)
        elif request.cursor:
            p, r, in_undated = _decode_cursor(request.cursor)
            rows = page(in_undated, (p, r), limit, 0)
            if not in_undated and len(rows) < limit:
                rows += page(1, None, limit - len(rows), 0)
        elif request.offset < dated:
            rows = page(0, None, limit, request.offset)
            if len(rows) < limit:
                rows += page(1, None, limit - len(rows), 0)
        else:
            rows = page(1, None, limit, request.offset - dated)
        hits = self._rows_to_articles(rows)
        next_cursor = None
        if rows and len(rows) == request.limit:
            next_cursor = _encode_cursor(rows[-1][1], rows[-1][2], rows[-1][3])
        return SearchResult(total=total, hits=tuple(hits), next_cursor=next_cursor)

    def _by_relevance(self, rank: str, where: str, params: list, request: SearchRequest) -> list[Article]:
        """BM25 order (FTS5's bm25(), lower is better) over the query's positive words, then newest;
        hits matched only by keyword clauses (``source:x OR …``) rank last.  Offset paging only."""
        rows = self._db.execute(
            "SELECT d.doc, d.id FROM (SELECT a.rowid AS rid, coalesce(r.score, 0) AS score, a.published_at AS p"
            " FROM articles a LEFT JOIN (SELECT rowid, bm25(articles_fts) AS score FROM articles_fts"
            f" WHERE articles_fts MATCH ?) r ON r.rowid = a.rowid{where}"
            " ORDER BY score, a.published_at DESC, a.rowid DESC LIMIT ? OFFSET ?) h"
            " JOIN articles d ON d.rowid = h.rid ORDER BY h.score, h.p DESC, d.rowid DESC",
            [rank, *params, request.limit, request.offset]).fetchall()
        return self._rows_to_articles(rows)

    def count_by_day(self, request: SearchRequest) -> dict[str, int]:
        """Hits per UTC day (``YYYY-MM-DD``, newest first): ``stats(request).by_day`` alone, one
        query instead of five (the count-over-time chart of ``mediamon serve``)."""
        clauses, params = self._where(request)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._db.execute(f"SELECT substr(a.published_at, 1, 10) AS k, count(*) FROM articles a{where}"
                                " GROUP BY k ORDER BY k DESC", params).fetchall()
        return {str(k): n for k, n in rows if k is not None}

    def stats(self, request: SearchRequest | None = None) -> Stats:
        req = request or SearchRequest()
        clauses, params = self._where(req)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""

        def counts(expr: str, join: str = "") -> dict[str, int]:
            rows = self._db.execute(
                f"SELECT {expr} AS k, count(*) FROM articles a {join}{where} GROUP BY k ORDER BY count(*) DESC, k",
                params).fetchall()
            return {str(k): n for k, n in rows if k is not None}

        total = self._db.execute(f"SELECT count(*) FROM articles a{where}", params).fetchone()[0]
        return Stats(
            total=total,
            by_source=counts("a.source"),
            by_language=counts("coalesce(a.language, 'unknown')"),
            by_topic=counts("t.topic", "JOIN article_topics t ON t.article_rowid = a.rowid "),
            by_day=dict(sorted(counts("substr(a.published_at, 1, 10)").items(), reverse=True)),
        )

    # -- feed state ------------------------------------------------------------------------------
    def get_feed_states(self) -> dict[str, FeedState]:
        rows = self._db.execute("SELECT feed_id, state FROM feed_state").fetchall()
        return {fid: st for fid, s in rows if (st := self.corrupt.feed_state(s, fid)) is not None}

    def save_feed_states(self, states: Iterable[FeedState]) -> None:
        rows = [(s.feed_id, json.dumps(s.to_dict(), sort_keys=True)) for s in states]

        def do() -> None:
            self._db.executemany(
                "INSERT INTO feed_state (feed_id, state) VALUES (?, ?)"
                " ON CONFLICT(feed_id) DO UPDATE SET state=excluded.state", rows)

        self._write(do)

    # -- translation cache --------------------------------------------------------------------------
    def get_translations(self, keys: Iterable[TranslationKey]) -> dict[TranslationKey, str]:
        out: dict[TranslationKey, str] = {}
        for key in dict.fromkeys(keys):
            row = self._db.execute(
                "SELECT translation FROM translation_cache WHERE model=? AND language=? AND text_hash=?",
                key).fetchone()
            if row is not None:
                out[key] = row[0]
        return out

    def put_translations(self, items: Iterable[tuple[TranslationKey, str]]) -> None:
        now = to_iso(datetime.now(timezone.utc))
        rows = [(k[0], k[1], k[2], v, now) for k, v in items]
        if not rows:
            return

        def do() -> None:
            self._db.executemany(
                "INSERT OR REPLACE INTO translation_cache (model, language, text_hash, translation, created_at)"
                " VALUES (?,?,?,?,?)", rows)

        self._write(do)

    # -- alerts (contract: see the comment above AlertEntry in base.py) ---------------------------------
    def alert_enqueue(self, entries: Iterable[AlertEntry]) -> int:
        rows = [(e.rule_id, e.article_id, json.dumps(list(e.terms), ensure_ascii=False),
                 to_iso(e.queued_at or datetime.now(timezone.utc))) for e in entries]
        if not rows:
            return 0

        def do() -> int:
            before = self._db.total_changes
            # a pair already queued (pending or failed) or already sent is left as it is
            self._db.executemany(
                "INSERT INTO alert_queue (rule_id, article_id, terms, queued_at)"
                " SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS"
                " (SELECT 1 FROM alert_sent s WHERE s.rule_id = ?1 AND s.article_id = ?2)"
                " ON CONFLICT(rule_id, article_id) DO NOTHING", rows)
            return self._db.total_changes - before

        return self._write(do)

    def _alert_rows(self, rows) -> list[AlertEntry]:
        from ..models import from_iso

        return [AlertEntry(rule_id=r[0], article_id=r[1], terms=tuple(json.loads(r[2] or "[]")),
                           queued_at=from_iso(r[3]), status=r[4], attempts=r[5], last_error=r[6],
                           last_attempt_at=from_iso(r[7])) for r in rows]

    def alert_pending(self, rule_id: str) -> list[AlertEntry]:
        rows = self._db.execute(
            "SELECT q.rule_id, q.article_id, q.terms, q.queued_at, q.status, q.attempts, q.last_error,"
            " q.last_attempt_at FROM alert_queue q WHERE q.rule_id = ? AND q.status = 'pending'"
            " AND NOT EXISTS (SELECT 1 FROM alert_sent s WHERE s.rule_id = q.rule_id"
            " AND s.article_id = q.article_id) ORDER BY q.queued_at, q.article_id", (rule_id,)).fetchall()
        return self._alert_rows(rows)

    def alert_record_attempt(self, rule_id: str, article_ids: Iterable[str], *, at: datetime,
                             error: str | None, failed: bool = False, count: bool = True) -> None:
        rows = [(to_iso(at), error, int(count), "failed" if failed else "pending", rule_id, a)
                for a in dict.fromkeys(article_ids)]
        if not rows:
            return

        def do() -> None:
            self._db.executemany(
                "UPDATE alert_queue SET last_attempt_at = ?, last_error = ?, attempts = attempts + ?,"
                " status = ? WHERE rule_id = ? AND article_id = ?", rows)

        self._write(do)

    def alert_claim(self, rule_id: str, article_ids: Iterable[str], *, at: datetime, stale_before: datetime,
                    marker: str) -> set[str]:
        rows = [(marker, to_iso(at), rule_id, a, marker, to_iso(stale_before)) for a in dict.fromkeys(article_ids)]

        def do() -> set[str]:
            claimed: set[str] = set()
            for row in rows:  # one write transaction: a concurrent claimer sees all of these or none
                cur = self._db.execute(
                    "UPDATE alert_queue SET last_error = ?1, last_attempt_at = ?2, attempts = attempts + 1"
                    " WHERE rule_id = ?3 AND article_id = ?4 AND status = 'pending'"
                    " AND NOT (coalesce(last_error, '') = ?5 AND last_attempt_at > ?6)"
                    " AND NOT EXISTS (SELECT 1 FROM alert_sent s WHERE s.rule_id = ?3 AND s.article_id = ?4)",
                    row)
                if cur.rowcount:
                    claimed.add(row[3])
            return claimed

        return self._write(do) if rows else set()

    def alert_mark_sent(self, rule_id: str, article_ids: Iterable[str], *, message_id: str,
                        sent_at: datetime) -> int:
        ids = list(dict.fromkeys(article_ids))
        ts = to_iso(sent_at)

        def do() -> int:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT INTO alert_sent (rule_id, article_id, sent_at, message_id) VALUES (?,?,?,?)"
                " ON CONFLICT(rule_id, article_id) DO NOTHING", [(rule_id, a, ts, message_id) for a in ids])
            logged = self._db.total_changes - before
            self._db.executemany("DELETE FROM alert_queue WHERE rule_id = ? AND article_id = ?",
                                 [(rule_id, a) for a in ids])
            self._db.execute(
                "INSERT INTO alert_emails (rule_id, message_id, sent_at, items) VALUES (?,?,?,?)"
                " ON CONFLICT(rule_id, message_id) DO NOTHING", (rule_id, message_id, ts, len(ids)))
            return logged

        return self._write(do)

    def alert_mark_summarised(self, rule_id: str, article_ids: Iterable[str], *, at: datetime, note: str) -> int:
        rows = [(note, to_iso(at), rule_id, a) for a in dict.fromkeys(article_ids)]

        def do() -> int:
            before = self._db.total_changes
            self._db.executemany("UPDATE alert_queue SET status = 'summarised', last_error = ?, last_attempt_at = ?"
                                 " WHERE rule_id = ? AND article_id = ? AND status = 'pending'", rows)
            return self._db.total_changes - before

        return self._write(do) if rows else 0

    def alert_emails_since(self, rule_id: str, since: datetime) -> int:
        return self._db.execute("SELECT count(*) FROM alert_emails WHERE rule_id = ? AND sent_at > ?",
                                (rule_id, to_iso(since))).fetchone()[0]

    def alert_sent_ids(self, rule_id: str, article_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(article_ids))
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT article_id FROM alert_sent WHERE rule_id = ? AND article_id IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self._db.execute(q, [rule_id, *chunk]))
        return found

    def alert_recent_emails(self, rule_id: str, limit: int = 10) -> list[dict]:
        """The rule's latest emails from the per-rule email log, newest first (read-only; the alert
        rules page of ``mediamon serve``): ``{"message_id", "sent_at", "items"}``."""
        rows = self._db.execute("SELECT message_id, sent_at, items FROM alert_emails WHERE rule_id = ?"
                                " ORDER BY sent_at DESC LIMIT ?", (rule_id, limit)).fetchall()
        return [{"message_id": m, "sent_at": t, "items": n} for m, t, n in rows]

    def alert_summary(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for rule_id, status, n in self._db.execute(
                "SELECT rule_id, status, count(*) FROM alert_queue GROUP BY rule_id, status"):
            out.setdefault(rule_id, {})[status] = n
        for rule_id, n in self._db.execute("SELECT rule_id, count(*) FROM alert_sent GROUP BY rule_id"):
            out.setdefault(rule_id, {})["sent"] = n
        for rule_id, n in self._db.execute("SELECT rule_id, count(*) FROM alert_emails GROUP BY rule_id"):
            out.setdefault(rule_id, {})["emails"] = n
        return out

    def alert_retry_failed(self, rule_id: str) -> int:
        def do() -> int:
            cur = self._db.execute("UPDATE alert_queue SET status = 'pending', last_error = NULL"
                                   " WHERE rule_id = ? AND status = 'failed'", (rule_id,))
            return cur.rowcount

        return self._write(do)
