"""The shared query × text table: every execution of the query language must agree with it.

``CASES``: (query, article fields, expected).  The Python evaluator and the SQLite FTS5 compiler
are both run on every case (tests/test_query.py); ``ES_EXPECTED`` pins the Elasticsearch DSL for
a representative subset.  ``SYNTAX_ERRORS``: (query, position, words in the message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipeline.models import Article


@dataclass(frozen=True)
class Case:
    query: str
    doc: dict = field(default_factory=dict)
    expected: bool = True
    note: str = ""


def make_article(id: str, **fields) -> Article:
    base = dict(
        id=id, feed_id=fields.pop("feed_id", "test"), url=None, canonical_url=None, guid=None,
        source=fields.pop("source", "Test"), feed_language=None, language=fields.pop("language", None),
        title=fields.pop("title", ""), summary=fields.pop("summary", ""),
        published_at=datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc),
        fetched_at=datetime(2026, 11, 20, 12, 5, tzinfo=timezone.utc), content_hash="x",
    )
    topics = tuple(fields.pop("topics", ()))
    return Article(**base, topics=topics, **fields)


D = dict  # brevity

CASES: list[Case] = [
    # --- Russian morphology (Snowball Russian) ---------------------------------------------------
    Case("Орешник", D(title="Удар «Орешником» по Днепру"), True, "instrumental"),
    Case("Орешника", D(title="Россия разместила Орешник в Белоруссии"), True, "genitive query"),
    Case("Орешник", D(summary="Поставки ракетного комплекса «Орешника» начались"), True),
    Case("ракета", D(summary="запуск ракетами средней дальности"), True, "plural instrumental"),
    Case("ракеты", D(title="Ракет не было"), True, "genitive plural"),
    Case("ракета", D(title="ракетный удар"), False, "adjective has another stem"),
    Case("ракет*", D(title="ракетный удар"), True, "trailing wildcard on the unstemmed word"),
    Case("ракет*", D(title="РАКЕТАМИ"), True),
    Case("удар*", D(summary="после ударов по городу"), True),
    Case("Белоруссия", D(title="Учения в Белоруссии"), True),
    Case("Беларусь", D(title="Учения в Белоруссии"), False, "different stems: list both"),
    Case("Беларусь OR Белоруссия", D(title="Учения в Белоруссии"), True),
    Case("Искандер", D(title="Дивизион «Искандеров» прибыл"), True),
    # --- ё / е -----------------------------------------------------------------------------------
    Case("объём", D(summary="объем поставок вырос"), True, "ё in the query"),
    Case("объем", D(summary="Объём поставок вырос"), True, "ё in the text"),
    Case("объё*", D(summary="объемы поставок"), True, "ё in a wildcard"),
    # --- English ---------------------------------------------------------------------------------
    Case("missiles", D(title="Missile deployed near the border"), True),
    Case("deployment", D(title="Missile deployed near the border"), True, "deploy"),
    Case("strikes", D(title="Missile struck the port"), False, "irregular forms do not stem"),
    Case("ORESHNIK", D(title="Oreshnik test"), True, "case"),
    Case("missil*", D(title="Missiles fired"), True),
    Case("Iskander*", D(title="Iskander-M brigade"), True),
    Case("2024", D(title="В 2024 году"), True, "numbers"),
    # --- original + English text -----------------------------------------------------------------
    Case("Oreshnik", D(title="Орешник в Белоруссии", title_en="Oreshnik in Belarus"), True,
         "found in the translation"),
    Case("Орешник AND deployed", D(title="Орешник развернут", title_en="Oreshnik deployed"), True,
         "AND satisfied across languages"),
    Case('"обороны ministry"', D(title="Министерство обороны", title_en="Ministry of Defence"), False,
         "a phrase never spans the original and the translation"),
    Case("Belarus", D(summary="Учения", summary_en="Drills in Belarus"), True),
    # --- phrases ---------------------------------------------------------------------------------
    Case('"Министерство обороны"', D(title="Заявление Министерства обороны России"), True),
    Case('"Министерство обороны"', D(title="обороны Министерство"), False, "order matters"),
    Case('"Министерство обороны"', D(title="Министерство иностранных дел и обороны"), False),
    Case("S-400", D(title="Turkey took delivery of S-400 systems"), True, "a term with two tokens is a phrase"),
    Case("S-400", D(title="S 400 delivered"), True),
    Case("S-400", D(title="400 S"), False),
    Case("S-400", D(title="поставка С-400"), False, "Cyrillic С is another letter"),
    Case('"ракета Patriot"', D(title="ракеты Patriots уничтожены"), True, "mixed-script phrase"),
    # --- proximity -------------------------------------------------------------------------------
    Case('"ракета Орешник"~2', D(title="Орешник — новая баллистическая ракета"), True, "any order, 2 between"),
    Case('"ракета Орешник"~1', D(title="Орешник — новая баллистическая ракета"), False),
    Case('"missile Belarus nuclear"~3', D(summary="nuclear missile deployed to Belarus"), True),
    Case('"missile Belarus nuclear"~2', D(summary="nuclear missile deployed to Belarus"), False),
    # --- boolean ---------------------------------------------------------------------------------
    Case("Орешник Oreshnik", D(title="Oreshnik launch"), True, "implicit OR"),
    Case("ракета NOT удар", D(title="ракета и удар"), False),
    Case("ракета NOT удар", D(title="ракета на параде"), True),
    Case("ракета -удар", D(title="ракетный удар, ракета"), False),
    Case("+ракета удар", D(title="ракета на параде"), True, "+ required, others optional"),
    Case("+ракета удар", D(title="удар по городу"), False),
    Case("ракета OR NOT удар", D(title="удар"), False, "Lucene: NOT excludes from the OR group"),
    Case("ракета OR NOT удар", D(title="тишина"), False),
    Case("ракета OR NOT удар", D(title="ракета"), True),
    Case("NOT удар", D(title="тишина"), True, "pure negative matches everything else"),
    Case("NOT (ракета OR удар)", D(title="ракета"), False),
    Case("(Орешник OR Искандер) AND Белоруссия", D(title="Искандеры в Белоруссии"), True),
    Case("(Орешник OR Искандер) AND Белоруссия", D(title="Искандеры в Калининграде"), False),
    Case("ракета AND удар OR Орешник", D(title="Орешник"), True, "AND binds tighter than OR"),
    Case("*", D(title="что угодно"), True),
    Case("ракета^2", D(title="ракета"), True, "boost ignored"),
    # --- field scopes ----------------------------------------------------------------------------
    Case("title:ракета", D(title="новости", summary="ракета"), False),
    Case("title:ракета", D(title="ракеты"), True),
    Case("title:missile", D(title="ракета", title_en="Missile launched"), True, "title: includes title_en"),
    Case("summary:missile", D(summary="ракета", summary_en="a missile"), True),
    Case("summary:missile", D(title="missile"), False),
    Case("content:Искандер", D(title="новость", content="полный текст про Искандер"), True),
    Case("title:Искандер", D(title="новость", content="полный текст про Искандер"), False),
    Case("Искандер", D(title="новость", content="полный текст про Искандер"), True, "no field includes content"),
    Case("content:missile", D(content="ракета", content_en="Missile launched"), True, "content: includes content_en"),
    Case("Iskander", D(title="новость", content="про Искандер", content_en="about Iskander"), True,
         "no field includes content_en"),
    Case("title:Iskander", D(title="новость", content="про Искандер", content_en="about Iskander"), False),
    Case('title:"Министерство обороны"', D(title="Министерство обороны сообщило"), True),
    Case("title:(Орешник OR Искандер)", D(title="Искандер"), True),
    Case("title:(Орешник OR Искандер)", D(summary="Искандер"), False),
    Case("title:ракет*", D(summary="ракетный"), False),
    Case("ракета AND NOT content:удар", D(title="ракета", content="удар"), False),
    # --- keyword scopes --------------------------------------------------------------------------
    Case("source:tass", D(title="x", feed_id="tass", source="ТАСС"), True, "feed id"),
    Case("source:ТАСС", D(title="x", feed_id="tass", source="ТАСС"), True, "source name"),
    Case('source:"РИА Новости"', D(title="x", feed_id="ria", source="РИА Новости"), True),
    Case('source:"риа новости"', D(title="x", feed_id="ria", source="РИА Новости"), True, "Cyrillic case"),
    Case("source:reuters", D(title="x", feed_id="r1", source="REUTERS"), True),
    Case("source:reuters", D(title="x", feed_id="r1", source="Reuters World"), False, "exact value"),
    Case("source:reu*", D(title="x", feed_id="r1", source="Reuters World"), True),
    Case("ракета -source:tass", D(title="ракета", feed_id="tass", source="ТАСС"), False),
    Case("language:ru", D(title="x", language="ru"), True),
    Case("language:EN", D(title="x", language="en"), True),
    Case("language:en", D(title="x", language="ru"), False),
    Case("NOT language:ru", D(title="x", language=None), True, "unknown language is not ru"),
    Case("topic:nuclear_weapons", D(title="x", topics=["nuclear_weapons"]), True),
    Case("topic:nuclear*", D(title="x", topics=["nuclear_weapons"]), True),
    Case("topic:nato_posture", D(title="x", topics=["nuclear_weapons"]), False),
    Case("Орешник AND topic:missile_deployment", D(title="Орешник", topics=["missile_deployment"]), True),
    # --- escaping --------------------------------------------------------------------------------
    Case(r"C\:400", D(title="C 400"), True, "escaped colon: a two-token phrase"),
    Case('"AND"', D(title="this AND that"), True, "a quoted operator is a word"),
]

# Elasticsearch DSL expected for a representative subset (query -> DSL).
_RU = ["title.ru", "summary.ru", "content.ru", "title_en.ru", "summary_en.ru", "content_en.ru"]
_EN = ["title.en", "summary.en", "content.en", "title_en.en", "summary_en.en", "content_en.en"]


def _content_span(terms: list[tuple[str, str]], slop: int, in_order: bool, base: str) -> dict:
    """span_near over one content field (``content`` or ``content_en``); terms: (subfield, stem)."""
    target = f"{base}.{terms[0][0]}"
    clauses = []
    for sub, st in terms:
        q: dict = {"span_term": {f"{base}.{sub}": st}}
        if f"{base}.{sub}" != target:
            q = {"field_masking_span": {"query": q, "field": target}}
        clauses.append(q)
    return {"span_near": {"clauses": clauses, "slop": slop, "in_order": in_order}}


def _content_either(terms: list[tuple[str, str]], slop: int, in_order: bool) -> dict:
    return {"bool": {"should": [_content_span(terms, slop, in_order, b) for b in ("content", "content_en")],
                     "minimum_should_match": 1}}
_LEM = ["lemmas.title", "lemmas.summary", "lemmas.content", "lemmas.title_en", "lemmas.summary_en",
        "lemmas.content_en"]


def _cyr(stem_clause: dict, lemmas: str, phrase: bool = False, fields: list[str] = _LEM) -> dict:
    """A Cyrillic word or phrase: its stem clause OR its lemmas in lemmas.<field> (filled by the pipeline)."""
    lq: dict = {"query": lemmas, "fields": fields}
    if phrase:
        lq["type"] = "phrase"
    return {"bool": {"should": [stem_clause, {"multi_match": lq}], "minimum_should_match": 1}}


ES_EXPECTED: dict[str, dict] = {
    "Орешника": _cyr({"multi_match": {"query": "орешника", "fields": _RU}}, "орешник"),
    "missiles": {"multi_match": {"query": "missiles", "fields": _EN}},
    "Орешник Oreshnik": {"bool": {"should": [
        _cyr({"multi_match": {"query": "орешник", "fields": _RU}}, "орешник"),
        {"multi_match": {"query": "oreshnik", "fields": _EN}}], "minimum_should_match": 1}},
    "title:ракет*": {"bool": {"should": [
        {"prefix": {"title": {"value": "ракет"}}},
        {"prefix": {"title_en": {"value": "ракет"}}}], "minimum_should_match": 1}},
    "объё*": {"bool": {"should": [{"prefix": {f: {"value": "объе"}}} for f in
                                  ("title", "summary", "content", "title_en", "summary_en", "content_en")],
                       "minimum_should_match": 1}},
    '"Министерство обороны"': _cyr({"multi_match": {"query": "министерство обороны", "fields": _RU, "type": "phrase"}},
                                   "министерство оборона", phrase=True),
    "S-400": {"multi_match": {"query": "s 400", "fields": _EN, "type": "phrase"}},
    "content:Искандер": _cyr({"multi_match": {"query": "искандер", "fields": ["content.ru", "content_en.ru"]}},
                             "искандер", fields=["lemmas.content", "lemmas.content_en"]),
    'content:"ракета Patriot"': _cyr(_content_either([("ru", "ракет"), ("en", "patriot")], 0, True), "ракета patriot",
                                     phrase=True, fields=["lemmas.content", "lemmas.content_en"]),
    'content:"missile Belarus nuclear"~3': _content_either(
        [("en", "missil"), ("en", "belarus"), ("en", "nuclear")], 2, False),
    "ракета NOT удар": {"bool": {
        "must": [_cyr({"multi_match": {"query": "ракета", "fields": _RU}}, "ракета")],
        "must_not": [_cyr({"multi_match": {"query": "удар", "fields": _RU}}, "удар")]}},
    "+ракета удар": _cyr({"multi_match": {"query": "ракета", "fields": _RU}}, "ракета"),
    "NOT удар": {"bool": {"must_not": [_cyr({"multi_match": {"query": "удар", "fields": _RU}}, "удар")]}},
    "source:ТАСС": {"bool": {"should": [{"term": {"source": {"value": "тасс"}}},
                                        {"term": {"feed_id": {"value": "тасс"}}}], "minimum_should_match": 1}},
    "language:EN AND topic:nuclear*": {"bool": {"must": [
        {"term": {"language": {"value": "en"}}}, {"prefix": {"topics": {"value": "nuclear"}}}]}},
    "*": {"match_all": {}},
}

# (query, expected position, words expected in the message)
SYNTAX_ERRORS: list[tuple[str, int, str]] = [
    ("ракета AND )", 11, "unexpected ')'"),
    ("(ракета", 7, "end of query"),
    ("*ракета", 0, "leading wildcard"),
    ("ра*кета", 2, "end of a word"),
    ("ракета?", 6, "'?'"),
    ("ракета~2", 0, "fuzzy"),
    ("[a TO b]", 0, "ranges"),
    ("/ракет.*/", 0, "regular expressions"),
    ("foo:bar", 0, "unknown field 'foo'"),
    ("ракета AND foo:bar", 11, "unknown field"),
    ('"abc', 0, "unclosed quote"),
    ("ракета and удар", 7, "lowercase operator"),
    ("a && b", 2, "unsupported operator"),
    ("title:", 6, "end of query"),
    ("AND a", 0, "unexpected 'AND'"),
    ("S-4*", 0, "one word"),
    ('title:""', 6, "empty phrase"),
    ("   ", 0, "empty query"),
]
