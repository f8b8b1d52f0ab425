"""Issue 16, item 6: a corrupt stored row (an article doc of ``{}``, invalid JSON, a broken
``feed_state`` row) is one bad row: logged with its id, skipped and counted, never a failed command.
SQLite through the CLI (where it showed as a JSONDecodeError/KeyError traceback); Elasticsearch
offline, against a loopback stub that answers ``_search`` with the broken documents."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.models import FeedState
from pipeline.store.sqlite import SQLiteStore

from .conftest import write_feeds_yaml
from .query_cases import make_article

runner = CliRunner()


def _env(tmp_path):
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    write_feeds_yaml(cfg, [{"id": f"f{n}", "url": str(tmp_path / f"missing{n}.xml"), "source": "S"} for n in (1, 2, 3)])
    return {"MEDIAMON_CONFIG_DIR": str(cfg), "MEDIAMON_DATA_DIR": str(tmp_path / "data"),
            "MEDIAMON_TRANSLATION_BACKEND": "none", "MEDIAMON_ALLOW_PRIVATE_NETWORKS": "true"}


def _corrupt_store(tmp_path) -> None:
    """Five articles with the word 'ракета' and three feed states, two of each then corrupted."""
    path = tmp_path / "data" / "mediamon.sqlite3"
    with SQLiteStore(path) as store:
        store.index([make_article(f"a{n}", title=f"ракета {n}", source="S") for n in range(5)])
        store.save_feed_states([FeedState(feed_id=f"f{n}", url=f"http://x.example/{n}", items_total=n)
                                for n in (1, 2, 3)])
    db = sqlite3.connect(path)
    db.execute("UPDATE articles SET doc='{}' WHERE id='a1'")
    db.execute("UPDATE articles SET doc='{\"id\": \"a3\", \"title\": ' WHERE id='a3'")
    db.execute("UPDATE feed_state SET state='{not json' WHERE feed_id='f1'")
    db.execute("UPDATE feed_state SET state='[]' WHERE feed_id='f2'")
    db.commit()
    db.close()


def test_corrupt_sqlite_rows_are_skipped_logged_and_counted(tmp_path, caplog):
    env = _env(tmp_path)
    _corrupt_store(tmp_path)
    caplog.set_level(logging.WARNING, logger="mediamon")

    res = runner.invoke(app, ["search", "ракета", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert sorted(h["id"] for h in json.loads(res.output.strip().splitlines()[-1])) == ["a0", "a2", "a4"]

    res = runner.invoke(app, ["feeds", "list", "--json"], env=env)
    assert res.exit_code == 0, res.output
    rows = {r["id"]: r for r in map(json.loads, res.output.strip().splitlines()[-3:])}
    assert rows["f3"]["items"] == 3 and rows["f1"]["items"] == 0 and rows["f2"]["items"] == 0

    bad = [(r.fields["table"], r.fields["row_id"]) for r in caplog.records if getattr(r, "event", "") == "store_corrupt_row"]
    assert ("articles", "a1") in bad and ("articles", "a3") in bad
    assert ("feed_state", "f1") in bad and ("feed_state", "f2") in bad

    # a run over the corrupt feed states goes on (the feeds fail for their own reason: missing files)
    res = runner.invoke(app, ["run", "--json"], env=env)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert json.loads(res.output.strip().splitlines()[-1])["feeds"] == 3


def test_the_store_counts_and_a_fresh_copy_replaces_a_corrupt_article(tmp_path):
    _corrupt_store(tmp_path)
    with SQLiteStore(tmp_path / "data" / "mediamon.sqlite3") as store:
        assert [a.id for a in store.get_articles(["a0", "a1", "a2", "a3"])] == ["a0", "a2"]
        assert set(store.get_feed_states()) == {"f3"}
        assert store.corrupt.count == 4
        # the next fetch of a1 stores it again: an update over a corrupt doc, not a failed index
        res = store.index([make_article("a1", title="ракета 1 again", source="S")])
        assert res.updated == ("a1",) and not res.failed
        assert [a.title for a in store.get_articles(["a1"])] == ["ракета 1 again"]
        # the broken feed states are overwritten by the next save
        store.save_feed_states([FeedState(feed_id="f1", url="http://x.example/1")])
        assert set(store.get_feed_states()) == {"f1", "f3"}


@pytest.mark.parametrize("source", [{}, {"id": "e2"}, None, "text", {"id": "e3", "published_at": "not a date"}],
                         ids=["empty", "no-dates", "none", "string", "bad-date"])
def test_corrupt_elasticsearch_documents_are_skipped(httpserver, source):
    pytest.importorskip("elasticsearch")
    from elasticsearch import Elasticsearch
    from werkzeug import Response

    from pipeline.store.base import SearchRequest
    from pipeline.store.elasticsearch import ElasticsearchStore

    headers = {"X-Elastic-Product": "Elasticsearch",
               "Content-Type": "application/vnd.elasticsearch+json; compatible-with=9"}
    good = make_article("e1", title="ракета").to_dict()
    article_hits = [{"_index": "mediamon-articles-2026.11", "_id": "e1", "_source": good, "sort": [1, "e1"]},
                    {"_index": "mediamon-articles-2026.11", "_id": "bad", "_source": source, "sort": [0, "bad"]}]
    state_hits = [{"_index": "mediamon-feed-state", "_id": "f1", "_source": FeedState(feed_id="f1", url="http://x/1").to_dict(),
                   "sort": ["f1"]},
                  {"_index": "mediamon-feed-state", "_id": "f2", "_source": source, "sort": ["f2"]}]

    def answer(hits):
        return Response(json.dumps({"took": 1, "timed_out": False,
                                    "hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": hits}}),
                        headers=headers)

    httpserver.expect_request("/mediamon-articles/_search").respond_with_response(answer(article_hits))
    httpserver.expect_request("/mediamon-feed-state/_search").respond_with_response(answer(state_hits))
    store = ElasticsearchStore(Elasticsearch(httpserver.url_for("/"), max_retries=0))
    result = store.search(SearchRequest(query="ракета"))
    assert [a.id for a in result.hits] == ["e1"]
    assert [a.id for a in store.get_articles(["e1", "bad"])] == ["e1"]
    assert list(store.get_feed_states()) == ["f1"]
    assert store.corrupt.count == 3
