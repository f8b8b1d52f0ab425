"""config/kibana/*.ndjson and the saved-objects import of `mediamon setup` (offline).

The loopback server here only records the import request that `mediamon setup` sends; whether
Kibana 9 accepts these objects is verified only against a live Kibana (docs/DEPLOYMENT.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from werkzeug import Request, Response

from pipeline.kibana import import_kibana, kibana_objects
from tests.conftest import make_settings
from tests.test_es_template import mapped_field

ROOT = Path(__file__).resolve().parent.parent
NDJSON = ROOT / "config" / "kibana" / "mediamon.ndjson"
ES_DIR = ROOT / "config" / "elasticsearch"


def load(path: Path = NDJSON) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def state_fields(fname: str) -> set[str]:
    return set(json.loads((ES_DIR / fname).read_text(encoding="utf-8"))["mappings"]["properties"])


def test_ndjson_parses_and_ids_are_unique():
    objs = load()
    ids = [(o["type"], o["id"]) for o in objs]
    assert len(ids) == len(set(ids))
    assert {o["type"] for o in objs} == {"index-pattern", "search", "lens", "dashboard"}


def test_data_views_point_at_the_alias_and_sent_log():
    views = {o["id"]: o["attributes"] for o in load() if o["type"] == "index-pattern"}
    assert views["mediamon-articles"]["title"] == "mediamon-articles"
    assert views["mediamon-articles"]["timeFieldName"] == "published_at"
    assert views["mediamon-alerts-sent"]["title"] == "mediamon-alerts-sent"
    assert views["mediamon-alerts-sent"]["timeFieldName"] == "sent_at"


def test_every_reference_resolves_inside_the_file():
    objs = load()
    present = {(o["type"], o["id"]) for o in objs}
    for o in objs:
        for ref in o.get("references", []):
            assert (ref["type"], ref["id"]) in present, (o["id"], ref)
        if o["type"] == "dashboard":
            panels = json.loads(o["attributes"]["panelsJSON"])
            names = {r["name"] for r in o["references"]}
            assert {p["panelRefName"] for p in panels} <= names
            assert len(panels) >= 4


def test_fields_used_by_lens_and_searches_exist_in_the_mappings():
    alerts = state_fields("alerts-sent.index.json")
    for o in load():
        index = next((r["id"] for r in o.get("references", []) if r["type"] == "index-pattern"), None)
        exists = (lambda f: mapped_field(f) is not None) if index == "mediamon-articles" else (lambda f: f in alerts)
        if o["type"] == "lens":
            for layer in o["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values():
                for col in layer["columns"].values():
                    if col["sourceField"] != "___records___":
                        assert exists(col["sourceField"]), (o["id"], col["sourceField"])
                    if col["operationType"] == "terms":
                        assert "normalizer" not in (mapped_field(col["sourceField"]) or {}), "facets use .raw"
        if o["type"] == "search":
            for c in o["attributes"]["columns"]:
                assert exists(c), (o["id"], c)
            for field, _ in o["attributes"]["sort"]:
                assert exists(field)
            ssj = json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
            assert ssj["indexRefName"] == o["references"][0]["name"]


def write_topics(cfg: Path) -> None:
    (cfg / "topics.yaml").write_text(yaml.safe_dump({"topics": [
        {"id": "missiles", "name": "Missile deployments", "query": "Орешник OR Oreshnik"},
        {"id": "nuclear", "name": "Nuclear weapons", "query": "nuclear OR ядерн*"}]}, allow_unicode=True),
        encoding="utf-8")


def test_topic_searches_and_prefix(tmp_path):
    settings = make_settings(tmp_path, index_prefix="news")
    write_topics(settings.config_dir)
    objs = kibana_objects(settings)
    by_id = {o["id"]: o for o in objs}
    assert by_id["news-articles"]["attributes"]["title"] == "news-articles"
    assert by_id["news-alerts-sent"]["attributes"]["title"] == "news-alerts-sent"
    t = by_id["news-topic-missiles"]
    assert t["references"][0]["id"] == "news-articles"
    ssj = json.loads(t["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert ssj["query"] == {"query": 'topics:"missiles"', "language": "kuery"}
    present = {(o["type"], o["id"]) for o in objs}
    for o in objs:
        for ref in o.get("references", []):
            assert (ref["type"], ref["id"]) in present
    assert not any(o["id"].startswith("mediamon-") for o in objs)


def test_import_request(tmp_path, httpserver, monkeypatch):
    seen: list[dict] = []

    def handler(request: Request) -> Response:
        f = request.files["file"]
        lines = [json.loads(x) for x in f.read().decode().splitlines() if x.strip()]
        seen.append({"xsrf": request.headers.get("kbn-xsrf"), "auth": request.headers.get("Authorization"),
                     "overwrite": request.args.get("overwrite"), "n": len(lines)})
        if len(seen) == 1:
            return Response("Kibana server is not ready yet", status=503)
        return Response(json.dumps({"success": True, "successCount": len(lines)}),
                        content_type="application/json")

    httpserver.expect_request("/api/saved_objects/_import", method="POST").respond_with_handler(handler)
    settings = make_settings(tmp_path, kibana_url=httpserver.url_for("/"), elasticsearch_username="elastic",
                             elasticsearch_password="pw")
    write_topics(settings.config_dir)
    objs = kibana_objects(settings)
    import pipeline.kibana as setup_mod

    monkeypatch.setattr(setup_mod.time, "sleep", lambda s: None)  # the pause between tries
    assert import_kibana(settings, objs, wait=5) == len(objs)
    assert len(seen) == 2 and seen[-1]["xsrf"] and seen[-1]["overwrite"] == "true"
    assert seen[-1]["auth"].startswith("Basic ") and seen[-1]["n"] == len(objs)


def test_import_errors_are_reported(tmp_path, httpserver):
    from pipeline.errors import ConfigError

    httpserver.expect_request("/api/saved_objects/_import", method="POST").respond_with_json(
        {"success": False, "successCount": 0, "errors": [{"id": "x", "type": "lens", "error": {"type": "unknown"}}]})
    settings = make_settings(tmp_path, kibana_url=httpserver.url_for("/"))
    with pytest.raises(ConfigError, match="rejected 1"):
        import_kibana(settings, kibana_objects(settings), wait=0)
