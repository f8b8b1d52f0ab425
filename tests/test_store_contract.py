"""One contract suite for every Store backend, one class per role of ``pipeline.store.base``
(ArticleStore, FeedStateStore, TranslationCache, AlertLog) and one for the union (``Store``:
every role, plus close / ``with``).

``store`` is parametrized: SQLite always; Elasticsearch only when ``MEDIAMON_TEST_ES_URL`` points
at a real cluster (skipped visibly otherwise).  Optional: ``MEDIAMON_TEST_ES_API_KEY`` or
``MEDIAMON_TEST_ES_USERNAME``/``_PASSWORD``, ``MEDIAMON_TEST_ES_CA_CERTS``.  Every Elasticsearch
run uses a fresh random index prefix, runs the real ``setup()`` and deletes its indices after.
There is no stand-in for Elasticsearch here.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from pipeline.models import FeedState, TopicMatch, Translation
from pipeline.models import AlertEntry
from pipeline.store.base import (AlertLog, AlertStore, ArticleStore, FeedStateStore, NullTranslationCache,
                                 SearchRequest, Store, StoredVersion, TranslationCache)
from tests.conftest import make_settings
from tests.query_cases import make_article

ES_URL = os.environ.get("MEDIAMON_TEST_ES_URL")
UTC = timezone.utc


def _es_store(tmp_path):
    from pipeline.store.elasticsearch import ElasticsearchStore

    overrides = dict(elasticsearch_url=ES_URL, index_prefix=f"mmtest-{uuid.uuid4().hex[:10]}")
    for env, key in (("MEDIAMON_TEST_ES_API_KEY", "elasticsearch_api_key"),
                     ("MEDIAMON_TEST_ES_USERNAME", "elasticsearch_username"),
                     ("MEDIAMON_TEST_ES_PASSWORD", "elasticsearch_password"),
                     ("MEDIAMON_TEST_ES_CA_CERTS", "elasticsearch_ca_certs")):
        if os.environ.get(env):
            overrides[key] = os.environ[env]
    settings = make_settings(tmp_path, **overrides)
    store = ElasticsearchStore.from_settings(settings)
    store.setup()
    return store


@pytest.fixture(params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.es)])
def store(request, tmp_path):
    if request.param == "sqlite":
        from pipeline.store.sqlite import SQLiteStore

        s = SQLiteStore(tmp_path / "store.sqlite3")
        yield s
        s.close()
        return
    if not ES_URL:
        pytest.skip("MEDIAMON_TEST_ES_URL not set: Elasticsearch contract tests need a live cluster")
    s = _es_store(tmp_path)
    try:
        yield s
    finally:
        s.drop_all()
        s.close()


def T(day: int, hour: int = 12, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def corpus():
    return [
        make_article("a1", title="Россия разместила Орешник в Белоруссии", title_en="Russia deployed Oreshnik in Belarus",
                     language="ru", source="TASS", feed_id="tass", topics=("missiles",),
                     topic_matches=(TopicMatch(topic="missiles", score=1.0, terms=("Орешник",)),),
                     translation=Translation(status="ok", model="opus-mt")).replace(published_at=T(20)),
        make_article("a2", title="Missile deployed near the border", language="en", source="Reuters",
                     feed_id="reuters", topics=("missiles",), translation=Translation(status="skipped")
                     ).replace(published_at=T(21)),
        make_article("a3", title="Учения ПВО под Москвой", language="ru", source="TASS", feed_id="tass",
                     translation=Translation(status="unavailable")).replace(published_at=T(19)),
        make_article("a4", title="Nuclear talks resume", language="en", source="Reuters", feed_id="reuters",
                     topics=("nuclear",), translation=Translation(status="skipped")).replace(published_at=T(22)),
        make_article("a5", title="Удар «Орешником» по Днепру", language="ru", source="RIA", feed_id="ria",
                     topics=("missiles", "strikes"), translation=Translation(status="pending")
                     ).replace(published_at=T(18, month=10)),
    ]


class TestArticleStore:
    """Articles: idempotent upsert, lookups, search, counts."""

    def test_plays_the_role(self, store):
        assert isinstance(store, ArticleStore)

    def test_index_is_idempotent_and_reports_created_updated_unchanged(self, store):
        arts = corpus()
        r1 = store.index(arts)
        assert sorted(r1.created) == ["a1", "a2", "a3", "a4", "a5"] and not r1.updated and not r1.failed
        r2 = store.index(arts)
        assert sorted(r2.unchanged) == ["a1", "a2", "a3", "a4", "a5"] and not r2.created and not r2.updated
        changed = arts[1].replace(summary_en="now with a summary", topics=("missiles", "border"))
        r3 = store.index([changed, arts[0]])
        assert r3.updated == ("a2",) and r3.unchanged == ("a1",) and not r3.created
        assert store.count() == 5
        assert store.get_articles(["a2"])[0] == changed
        assert store.index([]).stored == 0

    def test_reingest_with_another_date_does_not_duplicate(self, store):
        arts = corpus()
        store.index(arts)
        moved = arts[0].replace(published_at=T(2, month=12), date_inferred=False)
        r = store.index([moved])
        assert r.updated == ("a1",)
        assert store.count() == 5
        assert store.search(SearchRequest(query="Oreshnik")).total == 1
        assert store.get_articles(["a1"]) == [moved]

    def test_known_ids_and_get_articles(self, store):
        arts = corpus()
        store.index(arts)
        assert store.known_ids(["a1", "zz", "a5", "a1"]) == {"a1", "a5"}
        assert store.known_ids([]) == set()
        got = store.get_articles(["a5", "missing", "a1"])
        assert [a.id for a in got] == ["a5", "a1"]
        assert got[0] == arts[4] and got[1] == arts[0], "round-trip keeps every field"

    def test_stored_versions_and_an_update_replace_the_indexed_text(self, store):
        """Issue 16: deduplication reads each stored article's content hash and feed; an update
        (same id, new text) replaces the stored text, what search finds and the topics."""
        arts = corpus()
        store.index(arts)
        assert store.stored_versions(["a1", "zz", "a2", "a1"]) == {
            "a1": StoredVersion("x", "tass"), "a2": StoredVersion("x", "reuters")}
        assert store.stored_versions([]) == {}
        changed = arts[1].replace(title="Weather update for the weekend", content_hash="y", topics=(), guid="g-2")
        result = store.index([changed])
        assert result.updated == ("a2",) and not result.created
        assert store.stored_versions(["a2"]) == {"a2": StoredVersion("y", "reuters", "g-2")}
        assert store.get_articles(["a2"]) == [changed]
        assert store.count() == len(arts)
        ids = lambda q: {a.id for a in store.search(SearchRequest(query=q, limit=50)).hits}  # noqa: E731
        assert "a2" in ids("weekend") and "a2" not in ids("border")
        assert "a2" not in {a.id for a in store.search(SearchRequest(topics=("missiles",), limit=50)).hits}

    def test_pending_translation(self, store):
        store.index(corpus())
        assert {a.id for a in store.articles_pending_translation()} == {"a3", "a5"}
        assert len(store.articles_pending_translation(limit=1)) == 1

    def test_search_query_and_filters(self, store):
        store.index(corpus())
        ids = lambda req: [a.id for a in store.search(req).hits]  # noqa: E731
        assert ids(SearchRequest(query="Орешник")) == ["a1", "a5"], "stemmed Russian, newest first"
        assert ids(SearchRequest(query="Oreshnik")) == ["a1"], "found in the translation"
        assert ids(SearchRequest(query="missiles")) == ["a2"]
        assert ids(SearchRequest(query="Орешник", sort="oldest")) == ["a5", "a1"]
        assert ids(SearchRequest(topics=("missiles",))) == ["a2", "a1", "a5"]
        assert ids(SearchRequest(languages=("en",))) == ["a4", "a2"]
        assert ids(SearchRequest(sources=("TASS",))) == ["a1", "a3"]
        assert ids(SearchRequest(feed_ids=("ria",))) == ["a5"]
        assert ids(SearchRequest(since=T(20), until=T(22))) == ["a2", "a1"], "since inclusive, until exclusive"
        assert ids(SearchRequest(query="Орешник", topics=("strikes",))) == ["a5"]
        assert ids(SearchRequest(query="source:TASS AND NOT Орешник")) == ["a3"]
        assert store.search(SearchRequest(query="nothingmatcheshere")).total == 0
        rel = store.search(SearchRequest(query="Орешник OR missile", sort="relevance"))
        assert {a.id for a in rel.hits} == {"a1", "a2", "a5"} and rel.total == 3

    def test_search_by_lemma_and_alias(self, store):
        """Every form of a word through its lemma (Беларусь/Беларуси share no stem), names through
        the alias groups, abbreviations unstemmed: the same hits as the Python evaluator."""
        from pipeline.aliases import AliasGroup, Aliases
        from pipeline.query import parse_query

        arts = [make_article("l1", title="Учения в Беларуси", language="ru").replace(published_at=T(20)),
                make_article("l2", title="Переговоры в Белоруссии", language="ru").replace(published_at=T(21)),
                make_article("l3", title="Lukashenko in Minsk", language="en").replace(published_at=T(22)),
                make_article("l4", title="Выход из ДНЯО обсуждается", language="ru").replace(published_at=T(23)),
                make_article("l5", title="Новости дня", language="ru").replace(published_at=T(24))]
        store.index(arts)
        aliases = Aliases((AliasGroup("belarus", ("Belarus", "Беларусь", "Белоруссия", "Minsk")),))
        for query, al, want in (("Беларусь", None, ["l1"]), ("Беларусью", None, ["l1"]),
                                ("Беларусь", aliases, ["l3", "l2", "l1"]), ("=Беларусь", aliases, ["l1"]),
                                ('"в Белоруссия"', None, ["l2"]), ("ДНЯО", None, ["l4"])):
            got = [a.id for a in store.search(SearchRequest(query=query, aliases=al)).hits]
            assert got == want, (query, got)
            q = parse_query(query, al)
            assert sorted(got) == sorted(a.id for a in arts if q.matches(a)), query

    def test_search_paging_with_cursor_and_offset(self, store):
        store.index(corpus())
        seen: list[str] = []
        req = SearchRequest(limit=2)
        pages = 0
        while True:
            res = store.search(req)
            assert res.total == 5
            seen += [a.id for a in res.hits]
            pages += 1
            if not res.next_cursor:
                break
            req = SearchRequest(limit=2, cursor=res.next_cursor)
        assert seen == ["a4", "a2", "a1", "a3", "a5"] and pages == 3
        assert [a.id for a in store.search(SearchRequest(limit=2, offset=2)).hits] == ["a1", "a3"]
        first = store.search(SearchRequest(limit=2, sort="oldest"))
        second = store.search(SearchRequest(limit=2, sort="oldest", cursor=first.next_cursor))
        assert [a.id for a in first.hits + second.hits] == ["a5", "a3", "a1", "a2"]

    def test_stats(self, store):
        store.index(corpus())
        s = store.stats()
        assert s.total == 5
        assert s.by_source == {"TASS": 2, "Reuters": 2, "RIA": 1}
        assert s.by_language == {"ru": 3, "en": 2}
        assert s.by_topic == {"missiles": 3, "nuclear": 1, "strikes": 1}
        assert s.by_day == {"2026-11-22": 1, "2026-11-21": 1, "2026-11-20": 1, "2026-11-19": 1, "2026-10-18": 1}
        assert list(s.by_day) == sorted(s.by_day, reverse=True)
        f = store.stats(SearchRequest(query="Орешник"))
        assert f.total == 2 and f.by_topic == {"missiles": 2, "strikes": 1} and f.by_source == {"TASS": 1, "RIA": 1}

    def test_empty_store(self, store):
        assert store.count() == 0
        assert store.search(SearchRequest(query="x")).total == 0
        assert store.stats().total == 0
        assert store.get_feed_states() == {}
        assert store.known_ids(["a"]) == set()


class TestFeedStateStore:
    """Each feed's cursor."""

    def test_plays_the_role(self, store):
        assert isinstance(store, FeedStateStore)

    def test_feed_state_round_trip(self, store):
        s1 = FeedState(feed_id="tass", url="https://tass.example/rss", configured_url="https://tass.example/rss",
                       etag='"abc"', last_modified="Mon, 23 Nov 2026 12:00:00 GMT", last_fetch_at=T(20),
                       last_success_at=T(20), last_status=200, items_total=42, last_new_items=3,
                       next_fetch_at=T(20, 13))
        s2 = FeedState(feed_id="ria", url="https://ria.example/rss", last_error="timeout", last_error_at=T(20),
                       consecutive_failures=2, disabled=True, disabled_reason="410 Gone")
        store.save_feed_states([s1, s2])
        assert store.get_feed_states() == {"tass": s1, "ria": s2}
        s1b = s1.replace(etag='"def"', consecutive_failures=0)
        store.save_feed_states([s1b])
        store.save_feed_states([s1b])
        assert store.get_feed_states() == {"tass": s1b, "ria": s2}
        store.save_feed_states([])


class TestTranslationCache:
    """Translations by (model, language, text hash)."""

    def test_plays_the_role(self, store):
        assert isinstance(store, TranslationCache)

    def test_translation_cache(self, store):
        k1 = ("opus-mt", "ru", "h1")
        k2 = ("opus-mt", "uk", "h1")
        store.put_translations([(k1, "Hello"), (k2, "Hi")])
        assert store.get_translations([k1, k2, ("opus-mt", "ru", "missing")]) == {k1: "Hello", k2: "Hi"}
        store.put_translations([(k1, "Hello again")])
        assert store.get_translations([k1]) == {k1: "Hello again"}
        assert store.get_translations([]) == {}
        store.put_translations([])

    def test_the_null_cache_keeps_nothing(self):
        """``mediamon translate --no-cache``: a cache that plays the role and never answers."""
        null = NullTranslationCache()
        assert isinstance(null, TranslationCache)
        k = ("opus-mt", "ru", "h1")
        null.put_translations([(k, "Hello")])
        assert null.get_translations([k]) == {}


class TestAlertLog:
    """The alert queue and sent-log."""

    def test_plays_the_role(self, store):
        assert isinstance(store, AlertLog)

    def test_alert_queue_and_sent_log(self, store):
        store.index(corpus())
        t0 = T(22, 8)
        entries = [AlertEntry(rule_id="r1", article_id="a1", terms=("Орешник",), queued_at=t0),
                   AlertEntry(rule_id="r1", article_id="a5", queued_at=t0 + timedelta(minutes=1)),
                   AlertEntry(rule_id="r2", article_id="a1", queued_at=t0)]
        assert store.alert_enqueue(entries) == 3
        assert store.alert_enqueue(entries) == 0, "enqueuing twice changes nothing"
        pending = store.alert_pending("r1")
        assert [(e.article_id, e.terms, e.status, e.attempts) for e in pending] == \
            [("a1", ("Орешник",), "pending", 0), ("a5", (), "pending", 0)]
        store.alert_record_attempt("r1", ["a5"], at=t0, error="550 mailbox unavailable", failed=True)
        assert [e.article_id for e in store.alert_pending("r1")] == ["a1"]
        assert store.alert_retry_failed("r1") == 1
        again = {e.article_id: e for e in store.alert_pending("r1")}
        assert again["a5"].attempts == 1 and again["a5"].last_error is None and again["a5"].last_attempt_at == t0

        sent_at = T(22, 9)
        assert store.alert_mark_sent("r1", ["a1", "a5"], message_id="<m1@x>", sent_at=sent_at) == 2
        assert store.alert_mark_sent("r1", ["a1"], message_id="<m1@x>", sent_at=sent_at) == 0, "second send refused"
        assert store.alert_pending("r1") == []
        assert store.alert_sent_ids("r1", ["a1", "a5", "a2"]) == {"a1", "a5"}
        assert store.alert_sent_ids("r2", ["a1"]) == set()
        assert store.alert_enqueue([AlertEntry(rule_id="r1", article_id="a1")]) == 0, "sent pairs are never requeued"
        assert store.alert_emails_since("r1", sent_at - timedelta(hours=1)) == 1
        assert store.alert_emails_since("r1", sent_at) == 0
        summary = store.alert_summary()
        assert summary["r1"] == {"sent": 2, "emails": 1}
        assert summary["r2"] == {"pending": 1}


class TestStore:
    """The union: one backend playing every role, closed by ``with``."""

    def test_is_a_store(self, store):
        assert isinstance(store, Store)
        assert isinstance(store, AlertStore)  # what alert delivery takes

    def test_with_closes_the_store(self, store, monkeypatch):
        real_close = store.close
        calls = []

        def close():
            calls.append(1)
            real_close()

        monkeypatch.setattr(store, "close", close)
        with store as entered:
            assert entered is store
            assert entered.count() == 0
        assert calls == [1]
        store.close()  # closing again is harmless (the fixture closes it once more)
