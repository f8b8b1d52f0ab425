"""The query language: one table (tests/query_cases.py), three executions that must agree."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import MediamonError
from pipeline.query import QuerySyntaxError, analyze_article, parse_query, to_es, to_sqlite
from pipeline.store.base import SearchRequest
from pipeline.store.sqlite import SQLiteStore

from .query_cases import CASES, ES_EXPECTED, SYNTAX_ERRORS, make_article

ARTICLES = [make_article(f"case{i:03d}", **c.doc) for i, c in enumerate(CASES)]


def test_table_is_big_enough():
    assert len(CASES) >= 40
    assert sum(c.expected for c in CASES) > 10 and sum(not c.expected for c in CASES) > 10


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{i}:{c.query}" for i, c in enumerate(CASES)])
def test_python_evaluator(i):
    case = CASES[i]
    q = parse_query(case.query)
    assert q.matches(ARTICLES[i]) is case.expected, case.note
    # the explanation tree agrees with the compiled closures
    assert q.explain(ARTICLES[i]).matched is case.expected


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = SQLiteStore(tmp_path_factory.mktemp("q") / "store.sqlite3")
    s.index(ARTICLES)
    yield s
    s.close()


def _fts_ids(store, query: str) -> set[str]:
    res = store.search(SearchRequest(query=query, limit=10_000))
    assert res.total == len(res.hits)
    return {a.id for a in res.hits}


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{i}:{c.query}" for i, c in enumerate(CASES)])
def test_sqlite_fts_agrees(store, i):
    """The case itself, and the query against every other article of the table: SQLite == Python."""
    case = CASES[i]
    hits = _fts_ids(store, case.query)
    assert (ARTICLES[i].id in hits) is case.expected, case.note
    q = parse_query(case.query)
    python_hits = {a.id for a in ARTICLES if q.matches(a)}
    assert hits == python_hits


@pytest.mark.parametrize("query", sorted(ES_EXPECTED))
def test_es_dsl(query):
    assert to_es(parse_query(query)) == ES_EXPECTED[query]
    json.dumps(to_es(query))  # serialisable


def test_es_dsl_for_every_case_is_json():
    for c in CASES:
        body = to_es(c.query)
        assert isinstance(body, dict) and len(body) == 1
        json.dumps(body, ensure_ascii=False)


@pytest.mark.parametrize("query,position,words", SYNTAX_ERRORS)
def test_syntax_errors(query, position, words):
    with pytest.raises(QuerySyntaxError) as ei:
        parse_query(query)
    err = ei.value
    assert isinstance(err, MediamonError)
    assert err.position == position
    assert words in str(err)
    assert err.hint and str(err).endswith(err.hint)
    assert f"at position {position}: " in str(err)


def test_syntax_error_in_search_is_not_a_traceback(store):
    with pytest.raises(QuerySyntaxError):
        store.search(SearchRequest(query="title:(ракета"))


def test_parse_is_cached():
    assert parse_query("Орешник OR Oreshnik") is parse_query("Орешник OR Oreshnik")


def test_matched_terms_are_surface_forms():
    a = make_article("m1", title="Россия разместила «Орешника» в Белоруссии",
                     title_en="Russia deployed Oreshnik missiles in Belarus")
    q = parse_query("(Орешник OR Oreshnik) AND (Беларусь OR Белоруссия OR Belarus*) NOT Калининград")
    assert q.matches(a)
    assert q.matched_terms(a) == ["Орешника", "Oreshnik", "Белоруссии", "Belarus"]
    assert parse_query("Калининград").matched_terms(a) == []
    # words under NOT are never reported
    assert parse_query("Орешник NOT Калининград").matched_terms(a) == ["Орешника"]
    # phrases and proximity report the words as written
    assert parse_query('"deployed Oreshnik"').matched_terms(a) == ["deployed Oreshnik"]
    assert parse_query('"Russia missiles"~3').matched_terms(a) == ["Russia", "missiles"]


def test_compiled_matched_terms_equal_the_reference_walk_on_real_items():
    """Query.matched_terms (compiled collectors: set intersections per OR) lists the same words in
    the same order as the plain tree walk it replaced, for the shipped topics over real news."""
    from pathlib import Path

    from pipeline.config import load_topics
    from pipeline.query.evaluate import _dedupe, _matched_leaves, _surface

    root = Path(__file__).resolve().parent.parent
    rows = [json.loads(line) for line in open(root.parent / "shared" / "eval" / "news_dev.jsonl", encoding="utf-8")]
    topics = [parse_query(t.query, t.aliases) for t in load_topics(root / "config")]
    checked = 0
    for n, r in enumerate(rows[:800]):
        doc = analyze_article(make_article(f"r{n}", title=r["title"], summary=r.get("summary") or ""))
        for q in topics:
            leaves: list = []
            expected: list[str] = []
            if _matched_leaves(q.root, doc, leaves):
                for leaf in dict.fromkeys(leaves):
                    expected.extend(_surface(leaf, doc)[0])
                expected = _dedupe(expected)
                checked += 1
            assert q.matched_terms(doc) == expected, (r["id"], q.text[:40])
    assert checked > 50  # real matches were compared, not only misses


def test_explain_tree():
    a = make_article("e1", title="Искандеры в Белоруссии")
    e = parse_query("(Орешник OR Искандер) AND Белоруссия").explain(a)
    assert e.matched and e.kind == "and"
    first, second = e.children
    assert first.kind == "or" and [c.matched for c in first.children] == [False, True]
    assert first.children[1].terms == ["Искандеры"] and first.children[1].where == ["title"]
    assert second.terms == ["Белоруссии"]
    assert e.to_dict()["children"][1]["clause"] == "Белоруссия"


def test_to_sqlite_groups_text_into_one_match():
    sql, params = to_sqlite(parse_query("(Орешник OR Oreshnik) AND (ракет* OR missile) NOT удар"))
    assert sql.count("MATCH ?") == 1 and len(params) == 1
    # Орешник and удар are looked up in two channels (stems, lemmas): 2 + 1 + 1 + 1 + 2 column filters
    assert params[0].count("{") == 7
    sql, params = to_sqlite(parse_query("Орешник AND language:ru"))
    assert sql.count("MATCH ?") == 1 and params[1:] == ["ru"]


def test_fts_terms_are_quoted_safely(store):
    # FTS5 syntax characters in user input cannot break out of the quoted strings
    for q in ['"a"" OR b"', r'title:\"x\"', 'NEAR', '"NOT" AND "OR"', "a\\*"]:
        try:
            parse_query(q)
        except QuerySyntaxError:
            continue
        _fts_ids(store, q)  # no sqlite error


def test_compiled_closures_agree_with_tree_walk():
    """The grouped set operations in Query.compile equal the plain recursive evaluation."""
    from pipeline.query.evaluate import _eval

    queries = {c.query for c in CASES}
    docs = [analyze_article(a) for a in ARTICLES]
    for text in queries:
        q = parse_query(text)
        m = q.compile()
        for d in docs:
            assert m(d) == _eval(q.root, d), (text, d.article.id)


# --- limits (the same for every engine: checked by the parser) -----------------------------------

def _nested(levels: int) -> str:
    """``levels`` nested AND/OR pairs: (b0 OR (… AND c0))."""
    q = "a"
    for i in range(levels):
        q = f"(b{i} OR ({q} AND c{i}))"
    return q


def test_deepest_allowed_query_runs_in_every_engine(store):
    from pipeline.query import MAX_DEPTH

    q = _nested(MAX_DEPTH // 2)
    parsed = parse_query(q)
    assert _fts_ids(store, q) == {a.id for a in ARTICLES if parsed.matches(a)}
    json.dumps(to_es(parsed))


@pytest.mark.parametrize("query,message", [
    (_nested(11), "nested too deeply"),                      # 22 AND/OR levels (FTS5 overflowed at ~24 pairs)
    ("(" * 1000 + "a" + ")" * 1000, "nested too deeply"),    # was a RecursionError
    (" OR ".join(f"source:s{i}" for i in range(500)), "too many filters"),  # was 'Expression tree is too large'
    (" OR ".join(f"w{i}" for i in range(1100)), "too large"),
])
def test_queries_past_the_limits_are_syntax_errors(query, message):
    with pytest.raises(QuerySyntaxError) as ei:
        parse_query(query)
    assert message in str(ei.value)


def test_alias_expansion_counts_against_the_clause_limit():
    from pipeline.aliases import AliasGroup, Aliases
    from pipeline.query import MAX_CLAUSES

    group = Aliases((AliasGroup("g", tuple(f"name{i}" for i in range(20))),))
    q = " OR ".join(["name0"] * (MAX_CLAUSES // 20 + 1))
    parse_query(q)  # without aliases: small enough
    with pytest.raises(QuerySyntaxError, match="after alias expansion"):
        parse_query(q, group)


def test_a_too_deep_topic_query_is_a_config_error_naming_file_and_entry(tmp_path):
    import yaml

    from pipeline.config import load_topics
    from pipeline.errors import ConfigError

    (tmp_path / "topics.yaml").write_text(yaml.safe_dump({"topics": [
        {"id": "ok", "name": "ok", "query": "a"},
        {"id": "deep", "name": "deep", "query": "(" * 1000 + "a" + ")" * 1000}]}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"topics.yaml: entry 2 \(id 'deep'\): field 'query': query nested too deeply"):
        load_topics(tmp_path)
