"""Bulk-response handling of ElasticsearchStore.index against a loopback HTTP stub.

The stub (pytest-httpserver) exists only to inject item failures into ``_bulk`` responses
(409/429/400/5xx mixtures) that a healthy cluster would not produce on demand.  Besides
``_bulk`` it answers just what ``index()`` asks first: the one-time HEAD index check (200) and
the id lookup through the read alias (no hits: every article is new).  It is not an
Elasticsearch; the store contract suite (tests/test_store_contract.py) never uses it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

pytest.importorskip("elasticsearch")
from werkzeug import Request, Response  # noqa: E402

from pipeline.errors import StoreError, StoreUnavailable  # noqa: E402
from pipeline.store.elasticsearch import ElasticsearchStore, PartialWriteError  # noqa: E402
from tests.query_cases import make_article  # noqa: E402

ES_HEADERS = {"X-Elastic-Product": "Elasticsearch",
              "Content-Type": "application/vnd.elasticsearch+json; compatible-with=9"}


def es_json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, headers=ES_HEADERS)


class BulkStub:
    """Scripted ``_bulk`` endpoint: ``plan[id]`` is the list of statuses returned for that id on
    successive requests (the last one repeats).  Records every bulk request's (op, index, id)."""

    ERRORS = {
        400: {"type": "document_parsing_exception", "reason": "[1:2] failed to parse field [published_at]"},
        409: {"type": "version_conflict_engine_exception", "reason": "document already exists"},
        429: {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"},
        500: {"type": "illegal_state_exception", "reason": "boom"},
        503: {"type": "unavailable_shards_exception", "reason": "primary shard is not active"},
    }

    def __init__(self, httpserver, plan: dict[str, list[int]] | None = None, request_status: int | None = None):
        self.plan = plan or {}
        self.request_status = request_status
        self.bulk_requests: list[list[tuple[str, str, str]]] = []
        self.bulk_params: list[dict] = []
        httpserver.expect_request("/_bulk", method="PUT").respond_with_handler(self.bulk)
        httpserver.expect_request("/_bulk", method="POST").respond_with_handler(self.bulk)
        httpserver.expect_request("/mediamon-articles/_search").respond_with_handler(
            lambda r: es_json({"took": 1, "timed_out": False, "hits": {"total": {"value": 0, "relation": "eq"},
                                                                      "hits": []}}))
        httpserver.expect_request(
            "/mediamon-articles,mediamon-feed-state,mediamon-translations,mediamon-alerts-queue,"
            "mediamon-alerts-sent,mediamon-alerts-emails", method="HEAD").respond_with_response(
            Response(status=200, headers=ES_HEADERS))

    def bulk(self, request: Request) -> Response:
        lines = [json.loads(x) for x in request.get_data().decode().splitlines() if x.strip()]
        ops: list[tuple[str, str, str]] = []
        i = 0
        while i < len(lines):
            (op, meta), = lines[i].items()
            ops.append((op, meta["_index"], meta["_id"]))
            i += 1 if op == "delete" else 2
        self.bulk_requests.append(ops)
        self.bulk_params.append(dict(request.args))
        if self.request_status:
            return es_json({"error": {"type": "unavailable", "reason": "down"}, "status": self.request_status},
                           status=self.request_status)
        items = []
        for op, index, _id in ops:
            statuses = self.plan.get(_id, [201])
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            item: dict = {"_index": index, "_id": _id, "status": status}
            if status < 300:
                item.update({"result": "created" if status == 201 else "updated", "_version": 1})
            else:
                item["error"] = {**self.ERRORS[status], "index": index}
            items.append({op: item})
        return es_json({"took": 3, "errors": any(x[next(iter(x))]["status"] >= 300 for x in items), "items": items})


def make_store(httpserver, **kw) -> ElasticsearchStore:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(httpserver.url_for("/"), max_retries=0)
    return ElasticsearchStore(client, initial_backoff=0.01, max_backoff=0.02, **kw)


def arts(*ids: str, month: int = 11):
    return [make_article(i, title=f"t {i}").replace(published_at=datetime(2026, month, 3, tzinfo=timezone.utc))
            for i in ids]


def test_all_new_articles_are_created_in_their_monthly_index(httpserver):
    stub = BulkStub(httpserver)
    store = make_store(httpserver)
    res = store.index(arts("a", "b") + arts("c", month=12))
    assert sorted(res.created) == ["a", "b", "c"] and not res.failed and res.stored == 3
    (ops,) = stub.bulk_requests
    assert ops == [("create", "mediamon-articles-2026.11", "a"), ("create", "mediamon-articles-2026.11", "b"),
                   ("create", "mediamon-articles-2026.12", "c")]
    assert stub.bulk_params[0].get("refresh") == "wait_for"


def test_mixture_409_429_400_is_handled_per_item(httpserver):
    stub = BulkStub(httpserver, {"dup": [409], "busy": [429, 429, 201], "bad": [400], "ok": [201]})
    store = make_store(httpserver, max_retries=3)
    res = store.index(arts("ok", "dup", "busy", "bad"))
    assert set(res.created) == {"ok", "busy"}
    assert res.unchanged == ("dup",), "409 on create means already stored"
    assert set(res.failed) == {"bad"} and "document_parsing_exception" in res.failed["bad"]
    assert "400" in res.failed["bad"]
    # only the rejected item was sent again, twice
    assert [sorted(i for _, _, i in ops) for ops in stub.bulk_requests] == [
        ["bad", "busy", "dup", "ok"], ["busy"], ["busy"]]


def test_429_after_the_last_retry_raises_and_reports_only_acknowledged_items(httpserver):
    stub = BulkStub(httpserver, {"busy": [429], "ok": [201], "bad": [400]})
    store = make_store(httpserver, max_retries=2)
    with pytest.raises(StoreUnavailable) as ei:
        store.index(arts("ok", "busy", "bad"))
    assert isinstance(ei.value, PartialWriteError)
    partial = ei.value.result
    assert partial.created == ("ok",) and "busy" not in partial.created + partial.updated + partial.unchanged
    assert set(partial.failed) == {"bad"}
    assert len(stub.bulk_requests) == 3  # first try + 2 retries of "busy" alone
    assert all(ops == [("create", "mediamon-articles-2026.11", "busy")] for ops in stub.bulk_requests[1:])
    assert ei.value.transient


@pytest.mark.parametrize("status", [500, 503])
def test_item_5xx_raises_store_unavailable_without_retry(httpserver, status):
    stub = BulkStub(httpserver, {"x": [status], "y": [201]})
    store = make_store(httpserver, max_retries=3)
    with pytest.raises(StoreUnavailable, match="did not store 1 of 2"):
        store.index(arts("x", "y"))
    assert len(stub.bulk_requests) == 1


def test_whole_request_503_is_store_unavailable(httpserver):
    BulkStub(httpserver, request_status=503)
    store = make_store(httpserver, max_retries=1)
    with pytest.raises(StoreUnavailable):
        store.index(arts("a"))


def test_whole_request_429_is_retried_then_store_unavailable(httpserver):
    stub = BulkStub(httpserver, request_status=429)
    store = make_store(httpserver, max_retries=2)
    with pytest.raises(StoreUnavailable):
        store.index(arts("a", "b"))
    assert len(stub.bulk_requests) == 3


def test_auth_failure_is_a_permanent_store_error(httpserver):
    BulkStub(httpserver, request_status=401)
    store = make_store(httpserver)
    with pytest.raises(StoreError) as ei:
        store.index(arts("a"))
    assert not ei.value.transient and "401" in str(ei.value)


def test_unreachable_cluster_is_store_unavailable():
    from elasticsearch import Elasticsearch

    store = ElasticsearchStore(Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=2))
    with pytest.raises(StoreUnavailable):
        store.index(arts("a"))


def test_duplicate_ids_in_one_batch_are_written_once(httpserver):
    stub = BulkStub(httpserver)
    store = make_store(httpserver)
    a1, = arts("a")
    res = store.index([a1, a1.replace(title="newer")])
    assert res.created == ("a",)
    assert stub.bulk_requests == [[("create", "mediamon-articles-2026.11", "a")]]


def test_state_writes_raise_on_item_failures(httpserver):
    from pipeline.models import FeedState

    BulkStub(httpserver, {"f1": [201], "f2": [503]})
    store = make_store(httpserver)
    with pytest.raises(StoreUnavailable):
        store.save_feed_states([FeedState(feed_id="f1", url="http://x/1"), FeedState(feed_id="f2", url="http://x/2")])


def test_missing_setup_is_reported(httpserver):
    from elasticsearch import Elasticsearch

    httpserver.expect_request(
        "/mediamon-articles,mediamon-feed-state,mediamon-translations,mediamon-alerts-queue,"
        "mediamon-alerts-sent,mediamon-alerts-emails", method="HEAD").respond_with_response(
        Response(status=404, headers=ES_HEADERS))
    store = ElasticsearchStore(Elasticsearch(httpserver.url_for("/"), max_retries=0))
    with pytest.raises(StoreError, match="mediamon setup"):
        store.index(arts("a"))


def test_stored_versions_and_an_update_overwrite_the_stored_document(httpserver):
    """Issue 16: deduplication asks for each stored article's content hash and feed only; an
    updated article is written with an ``index`` op under its id into the monthly index it lives
    in (an overwrite), a new one with ``create`` (409 there = already stored)."""
    from pipeline.store.base import StoredVersion
    from pipeline.store.elasticsearch import _jsonable, article_doc

    old = arts("upd")[0].replace(content_hash="h1", feed_id="tass")
    searches: list[dict] = []

    def search(request: Request) -> Response:
        body = json.loads(request.get_data() or b"{}")
        searches.append(body)
        wanted = set(body["query"]["ids"]["values"])
        src = _jsonable(article_doc(old))
        if body.get("_source") not in (None, True):
            src = {k: src[k] for k in body["_source"]}
        hits = [{"_index": "mediamon-articles-2026.10", "_id": "upd", "_source": src}] if "upd" in wanted else []
        return es_json({"took": 1, "timed_out": False, "hits": {"total": {"value": len(hits), "relation": "eq"},
                                                              "hits": hits}})

    httpserver.expect_request("/mediamon-articles/_search").respond_with_handler(search)
    stub = BulkStub(httpserver)
    store = make_store(httpserver)
    assert store.stored_versions(["upd", "new", "upd"]) == {"upd": StoredVersion("h1", "tass")}
    assert searches[0]["_source"] == ["content_hash", "feed_id", "guid"]
    assert sorted(searches[0]["query"]["ids"]["values"]) == ["new", "upd"]
    assert store.stored_versions([]) == {}

    stub.plan = {"upd": [200]}
    res = store.index([old.replace(title="t upd, now with Oreshnik", content_hash="h2"), *arts("new")])
    assert res.updated == ("upd",) and res.created == ("new",)
    (ops,) = stub.bulk_requests
    assert ops == [("index", "mediamon-articles-2026.10", "upd"), ("create", "mediamon-articles-2026.11", "new")]
