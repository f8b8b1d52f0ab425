"""The candidate index over compiled topics (pipeline/query/percolate.py) changes no result:
``rule_matches`` with it equals the plain loop over every topic (``_reference_rule_matches``):
the same topics, matched terms and order, on real items and on bench/classify.py's articles."""

from __future__ import annotations

import json
import random

import pytest

from pipeline.classify import CompiledTopics, _reference_rule_matches, compile_topics, rule_matches
from pipeline.config import TopicConfig, load_topics
from pipeline.models import Article
from pipeline.query import analyze_article, parse_query
from pipeline.query.percolate import QueryIndex

from .conftest import ROOT, load_bench
from .query_cases import make_article

SHARED_EVAL = ROOT.parent / "shared" / "eval"


def _special_topics() -> list[TopicConfig]:
    """Topics of every shape the index must handle (appended after the shipped/generated ones)."""
    aliases = load_topics(ROOT / "config")[0].aliases
    specs = [
        # a topic: query that refers to a later topic (sees nothing yet), then the ones it names
        ("early_ref", "topic:late_nato OR (topic:missile_strike AND NOT Путин)", None),
        ("ru_missiles", "ракет* OR missile* OR Искандер", ("ru",)),
        ("en_any", "*", ("en",)),
        ("not_only", "NOT (погода OR weather OR сегодня OR today)", None),
        ("not_and", "-Путин -Putin", None),
        ("source_kw", "source:bench AND (Москва OR Moscow)", None),
        ("language_kw", "language:ru AND (президент OR министр)", None),
        ("source_or_text", "source:tes* OR Лукашенко", None),
        ("alias_and", "Беларусь AND (учения OR drills OR войска OR troops)", None),
        ("alias_exact", "=Беларусь OR Kyiv", None),
        ("phrase_near", '"ракета Орешник"~3 OR "nuclear weapons" OR "ядерное оружие"', None),
        ("exact_abbr", "НАТО AND (саммит OR summit OR альянс)", ("ru", "en")),
        ("scoped", "title:(удар* OR strike*) AND summary:(беспилотник* OR drone*)", None),
        ("unscoped", "удар* OR strike* OR беспилотник* OR drone*", None),
        ("depends", "topic:missile_deployment AND (Путин OR Putin OR Лукашенко OR Lukashenko)", None),
        ("depends_gen", "topic:gen7 OR topic:gen12 OR topic:nuclear_weapons", None),
        ("depends_not", "(ракет* OR missile*) AND NOT topic:ru_missiles", None),
        ("late_nato", "NATO OR НАТО OR альянс*", None),
        ("uk_only", "ракет*", ("uk",)),
    ]
    return [TopicConfig(id=i, name=i, query=q, languages=langs).with_aliases(aliases) for i, q, langs in specs]


def _assert_same(articles: list[Article], topics: list[TopicConfig]) -> tuple[int, dict[str, int], int]:
    compiled = compile_topics(topics)
    assert isinstance(compiled, CompiledTopics)
    plain = list(compiled)
    matches = 0
    per_topic: dict[str, int] = {}
    candidates = 0
    for a in articles:
        got = rule_matches(a, compiled)
        want = _reference_rule_matches(a, plain)
        assert got == want, a.id
        matches += len(got)
        for m in got:
            per_topic[m.topic] = per_topic.get(m.topic, 0) + 1
        candidates += len(compiled.query_index.candidates(analyze_article(a)))
    return matches, per_topic, candidates


def _real_articles() -> list[Article]:
    out = []
    for name in ("dev.jsonl", "news_dev.jsonl"):
        with open(SHARED_EVAL / name, encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                r = json.loads(line)
                # some items of unknown language (classified against every topic), some from "bench"
                lang = r.get("language") if n % 7 else None
                out.append(make_article(f"{name}:{n}", title=r.get("title") or "", summary=r.get("summary") or "",
                                        language=lang, source="Bench" if n % 5 == 0 else "Test"))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_EVAL.is_dir(), reason="../shared/eval is absent")
def test_index_changes_no_result_on_real_items():
    topics = load_topics(ROOT / "config") + load_bench("classify").make_queries(100, random.Random(3))[5:40] + _special_topics()
    articles = _real_articles()
    matches, per_topic, candidates = _assert_same(articles, topics)
    # the comparison covered real matches of every special shape, and the index did prune
    for tid in ("ru_missiles", "en_any", "not_only", "not_and", "language_kw", "source_or_text", "alias_and",
                "phrase_near", "exact_abbr", "depends", "depends_not", "late_nato", "missile_deployment"):
        assert per_topic.get(tid, 0) > 0, tid
    assert matches > 1000
    assert candidates < 0.5 * len(articles) * len(topics)


def test_index_changes_no_result_on_bench_articles():
    bench = load_bench("classify")
    rng = random.Random(1)
    articles = bench.make_articles(300, rng, topical=0.1)
    topics = bench.make_queries(100, rng) + _special_topics()
    matches, per_topic, candidates = _assert_same(articles, topics)
    for tid in ("ru_missiles", "en_any", "not_only", "source_kw", "language_kw", "alias_and", "exact_abbr",
                "scoped", "depends_gen", "depends_not", "late_nato"):
        assert per_topic.get(tid, 0) > 0, tid
    assert sum(per_topic.get(t.id, 0) for t in topics if t.id.startswith("gen")) > 100
    assert candidates < 0.5 * len(articles) * len(topics)


def test_candidates_are_the_queries_whose_prefilter_groups_all_hit():
    queries = [parse_query(q) for q in (
        "(ракета OR missile) AND (Белоруссия OR Belarus)",  # two groups: both must hit
        "ракет* AND Минск",  # a prefix group and a word group
        "NOT погода",  # no prefilter: always a candidate
        "source:tass OR Oreshnik",  # an OR with a keyword branch: no prefilter
        "Орешник",
    )]
    index = QueryIndex(queries)
    doc = analyze_article(make_article("c", title="Missile launched", summary="ракетами над Минском"))
    assert index.candidates(doc) == [1, 2, 3]
    doc = analyze_article(make_article("d", title="Missiles stationed in Belarus"))
    assert index.candidates(doc) == [0, 2, 3]
    doc = analyze_article(make_article("e", title="Орешника нет"))
    assert index.candidates(doc) == [2, 3, 4]  # another form of the word
    assert QueryIndex([]).candidates(doc) == []
    assert QueryIndex([parse_query("*"), parse_query("NOT x")]).candidates(doc) == [0, 1]


def test_rule_matches_accepts_any_sequence_of_compiled_topics():
    topics = [TopicConfig(id="a", name="a", query="Oreshnik"), TopicConfig(id="b", name="b", query="topic:a")]
    compiled = compile_topics(topics)
    a = make_article("x", title="Oreshnik again")
    assert [m.topic for m in rule_matches(a, list(compiled))] == ["a", "b"]
    assert rule_matches(a, compiled) == rule_matches(a, list(compiled))
    assert compiled[1].id == "b" and len(compiled) == 2 and [t.id for t in compiled[:1]] == ["a"]


def _surface_by_position_tables(leaf, doc):
    """The matched words of a text leaf as _surface found them before it scanned the token lists
    (per-field position tables; kept here as the reference)."""
    from pipeline.query.evaluate import _channels, _dedupe, _near_windows

    terms: list[str] = []
    where: list[str] = []
    for f in leaf.fields:
        fd = doc.fields[f]
        if not fd.tokens:
            continue
        found: list[str] = []
        if leaf.kind == "exact":
            found.extend(fd.cut(i, i) for i in fd.raw_positions().get(leaf.tokens[0], ()))
        if leaf.kind == "prefix":
            found.extend(fd.cut(i, i) for i in fd.positions_with_prefix(leaf.tokens[0]))
        for lemma_channel, words in (() if leaf.kind in ("prefix", "exact") else _channels(leaf)):
            if lemma_channel and not fd.lemmas:
                continue
            seq = fd.channel(lemma_channel)
            positions = fd.channel_positions(lemma_channel)
            if leaf.kind == "term":
                found.extend(fd.cut(i, i) for i in positions.get(words[0], ()))
            elif leaf.kind == "phrase":
                n = len(words)
                for i in positions.get(words[0], ()):
                    if tuple(seq[i:i + n]) == words:
                        found.append(fd.cut(i, i + n - 1))
            else:
                for lo, hi in _near_windows(fd, words, leaf.slop, lemma_channel):
                    found.extend(fd.cut(i, i) for i in range(lo, hi + 1) if seq[i] in words)
        if found:
            where.append(f)
            terms.extend(found)
    return _dedupe(terms), where


def _text_leaves(node, out):
    from pipeline.query.tree import AndNode, NotNode, OrNode, TextLeaf

    if isinstance(node, TextLeaf):
        out.append(node)
    elif isinstance(node, NotNode):
        _text_leaves(node.child, out)
    elif isinstance(node, (AndNode, OrNode)):
        for c in node.children:
            _text_leaves(c, out)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_EVAL.is_dir(), reason="../shared/eval is absent")
def test_surface_by_scanning_equals_the_position_tables():
    """_surface finds word positions by scanning each field's tokens (list.index, str.startswith
    at C speed): the same words and fields as the position tables it used before, for every text
    leaf of the shipped, generated and special topics (terms, exact, prefixes, phrases, proximity,
    both channels), on real items and bench articles."""
    from pipeline.query.evaluate import _leaf_text_match, _surface

    bench = load_bench("classify")
    topics = load_topics(ROOT / "config") + bench.make_queries(60, random.Random(5))[5:] + _special_topics()
    leaves = list({(leaf.kind, leaf.scope, leaf.tokens, leaf.stems, leaf.lemmas, leaf.slop): leaf for t in topics
                   for leaf in _text_leaves(parse_query(t.query, t.aliases).root, [])}.values())
    leaves += [parse_query('"ракета Орешник"~5').root, parse_query('"Russia missiles"~3').root,
               parse_query('"ядерного оружия"').root]
    articles = _real_articles()[::3] + bench.make_articles(200, random.Random(2), topical=0.2)
    found = 0
    for a in articles:
        doc = analyze_article(a)
        for leaf in leaves:
            if not _leaf_text_match(leaf, doc):  # (_surface is only asked about matched leaves)
                continue
            got = _surface(leaf, doc)
            assert got == _surface_by_position_tables(leaf, doc), (a.id, leaf.text)
            found += bool(got[0])
    assert found > 2000
