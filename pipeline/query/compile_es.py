"""Compilation to Elasticsearch query DSL for the mapping in config/elasticsearch/."""

from __future__ import annotations

from .evaluate import Query
from .parse import parse_query
from .tree import (_CYRILLIC_RE, _LETTER_RE, _TEXT_SCOPES, LEMMA_FIELD, AllNode, AndNode, KeywordLeaf, Node,
                   NotNode, TextLeaf)


# --------------------------------------------------------------------------------------------------
# Elasticsearch query DSL
# --------------------------------------------------------------------------------------------------

def _is_cyrillic(token: str) -> bool:
    return bool(_CYRILLIC_RE.search(token))


def _subfield(token: str) -> str:
    """The subfield whose analyzer stems this token as pipeline.analysis does."""
    return "ru" if _is_cyrillic(token) else "en"


def _phrase_subfield(tokens: tuple[str, ...]) -> str | None:
    """One subfield for the whole phrase, or None when it mixes Cyrillic and Latin words.
    Tokens without letters (numbers) stem identically in both."""
    scripts = {_subfield(t) for t in tokens if _LETTER_RE.search(t)}
    if len(scripts) > 1:
        return None
    return scripts.pop() if scripts else "en"


def _should(clauses: list[dict]) -> dict:
    if len(clauses) == 1:
        return clauses[0]
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def _span_near(base: str, leaf: TextLeaf, slop: int, in_order: bool) -> dict:
    # span queries must share one field: mask every clause as the first clause's subfield
    # (the subfields of one text field have the same token positions)
    subs = [_subfield(t) for t in leaf.tokens]
    single = _phrase_subfield(leaf.tokens)
    if single is not None:
        subs = [single] * len(subs)
    target = f"{base}.{subs[0]}"
    clauses = []
    for sub, st in zip(subs, leaf.stems):
        q: dict = {"span_term": {f"{base}.{sub}": st}}
        if f"{base}.{sub}" != target:
            q = {"field_masking_span": {"query": q, "field": target}}
        clauses.append(q)
    return {"span_near": {"clauses": clauses, "slop": slop, "in_order": in_order}}


def _es_lemma_leaf(leaf: TextLeaf) -> dict:
    """The lemma channel: ``lemmas.<field>`` holds the pipeline's lemmas (analysed by mm_folded)."""
    fields = [f"{LEMMA_FIELD}.{b}" for b in _TEXT_SCOPES[leaf.scope]]
    text = " ".join(leaf.lemmas)
    if leaf.kind == "term" or leaf.kind == "phrase":
        if len(fields) == 1:
            return {"match_phrase" if leaf.kind == "phrase" else "match": {fields[0]: {"query": text}}}
        q: dict = {"query": text, "fields": fields}
        if leaf.kind == "phrase":
            q["type"] = "phrase"
        return {"multi_match": q}
    slop = leaf.slop - (len(leaf.tokens) - 2)
    if slop < 0:
        return {"match_none": {}}
    return _should([{"span_near": {"clauses": [{"span_term": {f: lm}} for lm in leaf.lemmas],
                                   "slop": slop, "in_order": False}} for f in fields])


def _es_leaf(leaf: TextLeaf) -> dict:
    stem_q = _es_stem_leaf(leaf)
    if not leaf.lemmas:
        return stem_q
    return _should([stem_q, _es_lemma_leaf(leaf)])


def _es_stem_leaf(leaf: TextLeaf) -> dict:
    bases = _TEXT_SCOPES[leaf.scope]
    if leaf.kind == "exact":  # the base fields are analysed by mm_folded: unstemmed words
        if len(bases) == 1:
            return {"match": {bases[0]: {"query": leaf.tokens[0]}}}
        return {"multi_match": {"query": leaf.tokens[0], "fields": list(bases)}}
    if leaf.kind == "prefix":
        return _should([{"prefix": {b: {"value": leaf.tokens[0]}}} for b in bases])
    if leaf.kind == "term":
        sub = _subfield(leaf.tokens[0])
        fields = [f"{b}.{sub}" for b in bases]
        if len(fields) == 1:
            return {"match": {fields[0]: {"query": leaf.tokens[0]}}}
        return {"multi_match": {"query": leaf.tokens[0], "fields": fields}}
    if leaf.kind == "phrase":
        phrase_sub = _phrase_subfield(leaf.tokens)
        if phrase_sub is not None:
            text = " ".join(leaf.tokens)
            fields = [f"{b}.{phrase_sub}" for b in bases]
            if len(fields) == 1:
                return {"match_phrase": {fields[0]: {"query": text}}}
            return {"multi_match": {"query": text, "fields": fields, "type": "phrase"}}
        return _should([_span_near(b, leaf, 0, True) for b in bases])
    # near: FTS5 NEAR counts every token between the first and the last word; span_near's slop
    # counts the unmatched ones, i.e. k-2 fewer for k words.
    slop = leaf.slop - (len(leaf.tokens) - 2)
    if slop < 0:
        return {"match_none": {}}
    return _should([_span_near(b, leaf, slop, False) for b in bases])


_ES_KEYWORD = {"language": ("language",), "topic": ("topics",), "source": ("source", "feed_id")}


def _es(node: Node) -> dict:
    if isinstance(node, TextLeaf):
        return _es_leaf(node)
    if isinstance(node, KeywordLeaf):
        op = "prefix" if node.prefix else "term"
        return _should([{op: {f: {"value": node.value}}} for f in _ES_KEYWORD[node.field]])
    if isinstance(node, AllNode):
        return {"match_all": {}}
    if isinstance(node, NotNode):
        return {"bool": {"must_not": [_es(node.child)]}}
    if isinstance(node, AndNode):
        must = [_es(c) for c in node.children if not isinstance(c, NotNode)]
        must_not = [_es(c.child) for c in node.children if isinstance(c, NotNode)]
        b: dict = {}
        if must:
            b["must"] = must
        if must_not:
            b["must_not"] = must_not
        return {"bool": b}
    return {"bool": {"should": [_es(c) for c in node.children], "minimum_should_match": 1}}


def to_es(query: Query | str) -> dict:
    """Elasticsearch query DSL (a ``query`` clause body) for the mediamon index mapping."""
    if isinstance(query, str):
        query = parse_query(query)
    return _es(query.root)
