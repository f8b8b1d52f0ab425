"""Alert delivery attempts are counted once even when the Elasticsearch request times out.

The production client (``ElasticsearchStore.client_from_settings``) retries timed-out requests
(``retry_on_timeout=True``), which is right for idempotent writes but would count an attempt
twice when the first request was applied and only its answer was late.  Tested against a
loopback ``_bulk`` endpoint that answers after the client's timeout.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

pytest.importorskip("elasticsearch")
from werkzeug import Request, Response  # noqa: E402

from pipeline.errors import StoreUnavailable  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.store.elasticsearch import ElasticsearchStore  # noqa: E402

from .test_es_bulk import ES_HEADERS  # noqa: E402


def test_a_timed_out_attempt_update_is_not_resent(httpserver):
    bulk_requests: list[list[dict]] = []

    def slow_bulk(request: Request) -> Response:
        lines = [json.loads(x) for x in request.get_data().decode().splitlines() if x.strip()]
        bulk_requests.append(lines)
        time.sleep(1.0)  # applied, but the answer comes after the client's timeout
        items = [{"update": {"_index": "mediamon-alerts-queue", "_id": line["update"]["_id"], "status": 200,
                             "result": "updated"}} for line in lines if "update" in line]
        return Response(json.dumps({"took": 1, "errors": False, "items": items}), headers=ES_HEADERS)

    httpserver.expect_request("/_bulk", method="PUT").respond_with_handler(slow_bulk)
    httpserver.expect_request("/_bulk", method="POST").respond_with_handler(slow_bulk)
    httpserver.expect_request(
        "/mediamon-articles,mediamon-feed-state,mediamon-translations,mediamon-alerts-queue,"
        "mediamon-alerts-sent,mediamon-alerts-emails", method="HEAD").respond_with_response(
        Response(status=200, headers=ES_HEADERS))

    settings = Settings(elasticsearch_url=httpserver.url_for("/").rstrip("/"))
    client = ElasticsearchStore.client_from_settings(settings, request_timeout=0.3)  # retry_on_timeout as shipped
    store = ElasticsearchStore(client)
    at = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
    with pytest.raises(StoreUnavailable):
        store.alert_record_attempt("oreshnik", ["a1", "a2"], at=at, error="delivery started")
    assert len(bulk_requests) == 1, "a timed-out increment was sent again: the attempt would count twice"
    script = bulk_requests[0][1]["script"]
    assert "attempts" in script["source"] and script["params"]["inc"] == 1
