"""config/elasticsearch/*.json: valid, strict, in sync with the records, and every field the
query compiler and the store generate exists in the mapping (offline).  With
MEDIAMON_TEST_ES_URL set, the analyzers are also checked against the cluster's _analyze API."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.analysis import stems, tokenize
from pipeline.models import Article, FeedState, TopicMatch, Translation
from pipeline.query import TEXT_FIELDS, to_es
from pipeline.store.base import SearchRequest
from tests.query_cases import CASES, make_article

ROOT = Path(__file__).resolve().parent.parent
ES_DIR = ROOT / "config" / "elasticsearch"
TEMPLATE = json.loads((ES_DIR / "articles.index-template.json").read_text(encoding="utf-8"))
MAPPING = TEMPLATE["template"]["mappings"]
SETTINGS = TEMPLATE["template"]["settings"]
ANALYSIS = SETTINGS["analysis"]


def full_article() -> Article:
    """An Article with every optional part filled, so to_dict() shows every nested key."""
    return make_article("x", title="t", summary="s", content="c", title_en="t", summary_en="s",
                        translation=Translation(status="ok", model="m", truncated=True, error="e", suspicious=True),
                        topic_matches=(TopicMatch(topic="a", score=0.5, method="rule", terms=("x",)),),
                        authors=("a",), categories=("c",), topics=("a",))


def keys_of_doc(doc: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in doc.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= keys_of_doc(v, f"{prefix}{k}.")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            out |= keys_of_doc(v[0], f"{prefix}{k}.")
    return out


def keys_of_mapping(props: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in props.items():
        out.add(prefix + k)
        if "properties" in v:
            out |= keys_of_mapping(v["properties"], f"{prefix}{k}.")
    return out


def mapped_field(path: str) -> dict | None:
    """The mapping of a field path, following objects and multi-fields (``title.ru``)."""
    node: dict = {"properties": MAPPING["properties"]}
    for part in path.split("."):
        if "properties" in node and part in node["properties"]:
            node = node["properties"][part]
        elif "fields" in node and part in node["fields"]:
            node = node["fields"][part]
        else:
            return None
    return node


def fields_in_dsl(node) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("match", "match_phrase", "prefix", "term", "terms", "range", "span_term", "wildcard") \
                    and isinstance(v, dict):
                out |= set(v)
            elif k in ("multi_match",) and isinstance(v, dict):
                out |= set(v.get("fields", []))
            elif k == "field_masking_span":
                out.add(v["field"])
            out |= fields_in_dsl(v)
    elif isinstance(node, list):
        for x in node:
            out |= fields_in_dsl(x)
    return out


def test_template_is_strict_and_names_the_alias():
    assert MAPPING["dynamic"] == "strict"
    assert TEMPLATE["index_patterns"] == ["mediamon-articles-*"]
    assert TEMPLATE["template"]["aliases"] == {"mediamon-articles": {}}


def test_mapping_properties_equal_article_fields_recursively():
    from pipeline.store.elasticsearch import article_doc

    # lemmas.<field> exists for the fields with Cyrillic text: the mapping has all six
    doc_keys = keys_of_doc(article_doc(full_article())) | {f"lemmas.{f}" for f in TEXT_FIELDS}
    map_keys = keys_of_mapping(MAPPING["properties"])
    assert doc_keys == map_keys, (f"only in Article: {sorted(doc_keys - map_keys)}; "
                                  f"only in the template: {sorted(map_keys - doc_keys)}")


def test_dataclass_fields_all_reach_to_dict():
    # guards the test above: a new dataclass field that to_dict forgets would slip through it
    names = {f.name for f in dataclasses.fields(Article)}
    assert names == set(full_article().to_dict())


def test_analysis_contract():
    assert ANALYSIS["char_filter"]["mm_yo"] == {"type": "mapping", "mappings": ["ё=>е", "Ё=>Е"]}
    assert ANALYSIS["tokenizer"]["mm_tokens"] == {"type": "pattern", "pattern": r"[^\p{L}\p{N}]+"}
    an = ANALYSIS["analyzer"]
    for name in ("mm_folded", "mm_ru", "mm_en"):
        assert an[name]["tokenizer"] == "mm_tokens" and an[name]["char_filter"] == ["mm_yo"]
        assert an[name]["filter"][0] == "lowercase"
    assert an["mm_folded"]["filter"] == ["lowercase"]
    filt = ANALYSIS["filter"]
    assert filt[an["mm_ru"]["filter"][1]] == {"type": "snowball", "language": "Russian"}
    assert filt[an["mm_en"]["filter"][1]] == {"type": "snowball", "language": "English"}
    assert ANALYSIS["normalizer"]["mm_keyword"] == {"type": "custom", "char_filter": ["mm_yo"], "filter": ["lowercase"]}


def test_lemma_fields_are_filled_by_the_pipeline_and_folded_by_elasticsearch():
    """lemmas.<field>: the pipeline's dictionary forms of Cyrillic text (ES has no pymorphy3); the
    mm_folded analyzer only lowercases and folds ё, so a Kibana user's nominative form meets them,
    and Kibana's default fields include them."""
    from pipeline.store.elasticsearch import lemma_fields
    from tests.query_cases import make_article

    props = MAPPING["properties"]["lemmas"]["properties"]
    assert set(props) == set(TEXT_FIELDS)
    assert all(v == {"type": "text", "analyzer": "mm_folded"} for v in props.values())
    default = TEMPLATE["template"]["settings"]["index"]["query"]["default_field"]
    assert {f"lemmas.{f}" for f in TEXT_FIELDS} <= set(default)
    a = make_article("l1", title="Россия разместит «Орешник» в Беларуси", summary="Missile news",
                     title_en="Russia to deploy Oreshnik in Belarus")
    assert lemma_fields(a) == {"title": "россия разместить орешник в беларусь"}


def test_field_types_follow_the_contract():
    props = MAPPING["properties"]
    for f in TEXT_FIELDS:
        assert props[f]["type"] == "text" and props[f]["analyzer"] == "mm_folded", f
        assert props[f]["fields"]["ru"]["analyzer"] == "mm_ru" and props[f]["fields"]["en"]["analyzer"] == "mm_en"
    for f in ("source", "feed_id", "language", "feed_language", "topics", "categories", "authors"):
        assert props[f]["type"] == "keyword" and props[f]["normalizer"] == "mm_keyword", f
    for f in ("id", "url", "canonical_url", "guid", "content_hash"):
        assert props[f]["type"] == "keyword" and "normalizer" not in props[f], f
    assert {k: v["type"] for k, v in props["topic_matches"]["properties"].items()} == \
        {"topic": "keyword", "score": "float", "method": "keyword", "terms": "keyword"}
    assert {k: v["type"] for k, v in props["translation"]["properties"].items()} == \
        {"status": "keyword", "model": "keyword", "truncated": "boolean", "error": "text", "suspicious": "boolean"}
    assert props["published_at"]["type"] == props["fetched_at"]["type"] == "date"
    assert props["date_inferred"]["type"] == "boolean"


def test_default_field_covers_every_text_field():
    default = SETTINGS["index"]["query"]["default_field"]
    for f in TEXT_FIELDS:
        assert f in default
        for sub in ("ru", "en"):
            if f"{f}.{sub}" in default:
                assert mapped_field(f"{f}.{sub}") is not None
    assert all(mapped_field(f) is not None for f in default)


def test_every_analyzer_and_normalizer_referenced_is_defined():
    defined_an = set(ANALYSIS["analyzer"])
    defined_norm = set(ANALYSIS["normalizer"])

    def walk(props):
        for v in props.values():
            if "analyzer" in v:
                assert v["analyzer"] in defined_an
            if "normalizer" in v:
                assert v["normalizer"] in defined_norm
            walk(v.get("properties", {}))
            walk(v.get("fields", {}))

    walk(MAPPING["properties"])


def test_query_compiler_targets_only_mapped_fields():
    """Every field in the DSL generated for the shared query table exists in the template."""
    seen: set[str] = set()
    for case in CASES:
        dsl = to_es(case.query)
        for f in fields_in_dsl(dsl):
            assert mapped_field(f) is not None, f"{case.query!r} targets unmapped field {f!r}"
            seen.add(f)
    assert {"title.ru", "title_en.en"} <= seen


def test_store_search_body_uses_mapped_fields_and_paging():
    from pipeline.store.elasticsearch import ElasticsearchStore, _encode_cursor

    store = ElasticsearchStore(client=None)
    req = SearchRequest(query="Орешник", topics=("missiles",), languages=("ru",), sources=("TASS",),
                        feed_ids=("tass",), since=datetime(2026, 11, 1, tzinfo=timezone.utc),
                        until=datetime(2026, 12, 1, tzinfo=timezone.utc), limit=5)
    body = store.build_search(req)
    assert body["size"] == 5 and body["track_total_hits"] is True
    undated_last = {"date_inferred": {"order": "asc", "missing": "_first"}}
    assert body["sort"] == [undated_last, {"published_at": "desc"}, {"id": "desc"}]
    q = body["query"]["bool"]
    assert q["must"] == [to_es("Орешник")]
    assert {"range": {"published_at": {"gte": "2026-11-01T00:00:00Z", "lt": "2026-12-01T00:00:00Z"}}} in q["filter"]
    for f in fields_in_dsl(body["query"]) | {list(s)[0] for s in body["sort"]}:
        assert mapped_field(f) is not None, f
    cursor = _encode_cursor(["2026-11-20T12:00:00.000Z", "abc"])
    paged = store.build_search(SearchRequest(cursor=cursor, offset=40, sort="oldest"))
    assert paged["search_after"] == ["2026-11-20T12:00:00.000Z", "abc"] and "from_" not in paged
    assert paged["sort"] == [undated_last, {"published_at": "asc"}, {"id": "asc"}]
    assert store.build_search(SearchRequest(offset=40))["from_"] == 40
    with pytest.raises(ValueError):
        store.build_search(SearchRequest(cursor="not-a-cursor"))


def test_search_body_sorts_undated_last_pages_by_offset_and_keeps_them_out_of_windows():
    """Issue 18: items with an inferred date sort after the dated ones (the mapped boolean
    ``date_inferred``), relevance is ``_score``, --offset is ``from``, and a window without
    --include-undated leaves them out."""
    from pipeline.store.elasticsearch import ElasticsearchStore

    store = ElasticsearchStore(client=None)
    assert mapped_field("date_inferred")["type"] == "boolean"
    newest = store.build_search(SearchRequest(limit=10, offset=30))
    assert newest["sort"][0] == {"date_inferred": {"order": "asc", "missing": "_first"}}
    assert newest["from_"] == 30 and newest["size"] == 10
    rel = store.build_search(SearchRequest(query="Oreshnik", sort="relevance", offset=20))
    assert rel["sort"][0] == {"_score": "desc"} and rel["from_"] == 20
    windowed = store.build_search(SearchRequest(since=datetime(2026, 11, 1, tzinfo=timezone.utc),
                                                include_undated=False))
    assert {"bool": {"must_not": [{"term": {"date_inferred": True}}]}} in windowed["query"]["bool"]["filter"]
    kept = store.build_search(SearchRequest(since=datetime(2026, 11, 1, tzinfo=timezone.utc)))
    assert "must_not" not in json.dumps(kept["query"])
    assert store.build_stats(SearchRequest(include_undated=False))["query"]["bool"]["filter"] == [
        {"bool": {"must_not": [{"term": {"date_inferred": True}}]}}]


def test_stats_aggregations_use_mapped_keyword_fields():
    from pipeline.store.elasticsearch import ElasticsearchStore

    aggs = ElasticsearchStore(client=None).build_stats(SearchRequest())["aggs"]
    for agg in aggs.values():
        (kind, spec), = agg.items()
        m = mapped_field(spec["field"])
        assert m is not None and m["type"] in ("keyword", "date"), spec["field"]
        assert "normalizer" not in m, "facets show the original spelling, not the normalised one"


def test_prefix_rewrites_patterns_and_alias():
    from pipeline.store.elasticsearch import articles_template, month_index

    tpl = articles_template("news", ES_DIR)
    assert tpl["index_patterns"] == ["news-articles-*"] and tpl["template"]["aliases"] == {"news-articles": {}}
    assert tpl["_meta"]["content_sha1"] != articles_template("mediamon", ES_DIR)["_meta"]["content_sha1"]
    assert month_index("news", datetime(2026, 1, 31, 23, 30, tzinfo=timezone.utc)) == "news-articles-2026.01"


def test_state_indices_are_strict_and_match_their_records():
    from pipeline.store.elasticsearch import STATE_INDEX_FILES

    for fname in STATE_INDEX_FILES.values():
        body = json.loads((ES_DIR / fname).read_text(encoding="utf-8"))
        assert body["mappings"]["dynamic"] == "strict", fname
    fs = json.loads((ES_DIR / "feed-state.index.json").read_text(encoding="utf-8"))
    assert set(fs["mappings"]["properties"]) == set(FeedState(feed_id="f", url="u").to_dict())
    from pipeline.models import AlertEntry

    q = json.loads((ES_DIR / "alerts-queue.index.json").read_text(encoding="utf-8"))
    assert set(q["mappings"]["properties"]) == {f.name for f in dataclasses.fields(AlertEntry)}


def test_every_json_file_in_config_elasticsearch_is_used():
    from pipeline.store.elasticsearch import STATE_INDEX_FILES, TEMPLATE_FILE

    assert {p.name for p in ES_DIR.glob("*.json")} == set(STATE_INDEX_FILES.values()) | {TEMPLATE_FILE}


# --- live: the cluster's analyzers agree with pipeline.analysis ------------------------------------

LIVE = os.environ.get("MEDIAMON_TEST_ES_URL")


@pytest.mark.es
@pytest.mark.skipif(not LIVE, reason="MEDIAMON_TEST_ES_URL not set: no Elasticsearch to run _analyze on")
def test_live_analyzers_agree_with_python_analysis():
    from elasticsearch import Elasticsearch

    es = Elasticsearch(LIVE, verify_certs=os.environ.get("MEDIAMON_TEST_ES_VERIFY", "1") != "0")
    texts = {"mm_ru": "Удар «Орешником» по Днепру; объём РАКЕТАМИ 2024", "mm_en": "Missiles deployed: S-400 Oreshnik"}
    for analyzer, text in texts.items():
        resp = es.indices.analyze(tokenizer=ANALYSIS["tokenizer"]["mm_tokens"],
                                  char_filter=[ANALYSIS["char_filter"]["mm_yo"]],
                                  filter=["lowercase", ANALYSIS["filter"][ANALYSIS["analyzer"][analyzer]["filter"][1]]],
                                  text=text)
        got = [t["token"] for t in resp["tokens"]]
        assert got == stems(tokenize(text)), analyzer


def test_elasticsearch_is_not_imported_with_the_package():
    import subprocess
    import sys

    code = ("import sys, pipeline.cli, pipeline.store, pipeline.cycle; "
            "assert 'elasticsearch' not in sys.modules, 'imported at package import time'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_from_settings_builds_an_authenticated_client(tmp_path):
    from pipeline.store.elasticsearch import ElasticsearchStore
    from tests.conftest import make_settings

    s = make_settings(tmp_path, elasticsearch_url="https://es.example:9200", elasticsearch_username="u",
                      elasticsearch_password="p", index_prefix="news")
    store = ElasticsearchStore.from_settings(s)
    try:
        assert store.prefix == "news" and store.articles_alias == "news-articles"
        assert store.state_index("alerts-sent") == "news-alerts-sent"
        assert store.client.transport.node_pool.get().config.scheme == "https"
        assert (store.es_dir / "articles.index-template.json").is_file()
    finally:
        store.close()
