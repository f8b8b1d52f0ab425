"""Compilation to SQLite: an SQL boolean expression over ``articles a`` with FTS5 sub-selects
(the columns of pipeline.store.sqlite: stems, ``*_lem`` lemmas, ``*_raw`` words)."""

from __future__ import annotations

from ..analysis import fold
from .evaluate import Query
from .parse import parse_query
from .tree import _FTS_COLUMNS, AllNode, AndNode, KeywordLeaf, Node, NotNode, OrNode, TextLeaf


# --------------------------------------------------------------------------------------------------
# SQLite FTS5
# --------------------------------------------------------------------------------------------------

def _fts_quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _fts_channel(leaf: TextLeaf, suffix: str, words: tuple[str, ...]) -> str:
    colspec = "{" + " ".join(c + suffix for c in _FTS_COLUMNS[leaf.scope]) + "}"
    if leaf.kind in ("term", "exact"):
        body = _fts_quote(words[0])
    elif leaf.kind == "prefix":
        body = _fts_quote(words[0]) + " *"
    elif leaf.kind == "phrase":
        body = _fts_quote(" ".join(words))
    else:
        body = "NEAR(" + " ".join(_fts_quote(s) for s in words) + f", {leaf.slop})"
    return f"{colspec} : {body}"


def _fts_leaf(leaf: TextLeaf) -> str:
    """FTS5 columns: stems in title/summary/content, lemmas in *_lem, distinct raw tokens in *_raw
    (pipeline.store.sqlite._fts_values)."""
    if leaf.kind in ("prefix", "exact"):
        return _fts_channel(leaf, "_raw", leaf.tokens)
    stem_part = _fts_channel(leaf, "", leaf.stems)
    if not leaf.lemmas:
        return stem_part
    return f"({stem_part}) OR ({_fts_channel(leaf, '_lem', leaf.lemmas)})"


_FTS_IN = "a.rowid IN (SELECT rowid FROM articles_fts WHERE articles_fts MATCH ?)"
_FTS_NOT_IN = "a.rowid NOT IN (SELECT rowid FROM articles_fts WHERE articles_fts MATCH ?)"

# SQLite's lower() folds ASCII only; for non-ASCII values fold Cyrillic capitals (and ё) explicitly.
_CYR_UPPER = [chr(c) for c in range(0x0400, 0x0430)] + ["\u0490", "ё"]


def _sql_fold(expr: str, value: str) -> str:
    """SQL that folds ``expr`` well enough to compare it with the folded ``value``: ASCII by
    lower(), and the capitals of the Cyrillic letters that occur in ``value`` (a stored capital
    of any other letter cannot equal ``value`` anyway)."""
    out = expr
    for ch in _CYR_UPPER:
        if fold(ch) in value and ch != fold(ch):
            out = f"replace({out}, '{ch}', '{fold(ch)}')"
    return f"lower({out})"


def _sql_keyword(leaf: KeywordLeaf) -> tuple[str, list]:
    v = leaf.value

    def cmp(expr: str) -> tuple[str, list]:
        folded = _sql_fold(expr, v)
        if leaf.prefix:
            return f"substr({folded}, 1, ?) = ?", [len(v), v]
        return f"{folded} = ?", [v]

    if leaf.field == "source":
        s1, p1 = cmp("a.source")
        s2, p2 = cmp("a.feed_id")
        return f"({s1} OR {s2})", p1 + p2
    if leaf.field == "language":
        return cmp("coalesce(a.language, '')")
    if leaf.prefix:
        return ("a.rowid IN (SELECT article_rowid FROM article_topics WHERE substr(lower(topic), 1, ?) = ?)",
                [len(v), v])
    return "a.rowid IN (SELECT article_rowid FROM article_topics WHERE lower(topic) = ?)", [v]


# compile result: ("fts", match) | ("notfts", match) | ("sql", sql, params)
_Part = tuple


def _sql_part(node: Node) -> _Part:
    if isinstance(node, TextLeaf):
        return ("fts", _fts_leaf(node))
    if isinstance(node, KeywordLeaf):
        s, p = _sql_keyword(node)
        return ("sql", s, p)
    if isinstance(node, AllNode):
        return ("sql", "1", [])
    if isinstance(node, NotNode):
        inner = _sql_part(node.child)
        if inner[0] == "fts":
            return ("notfts", inner[1])
        if inner[0] == "notfts":
            return ("fts", inner[1])
        return ("sql", f"NOT ({inner[1]})", inner[2])
    parts = [_sql_part(c) for c in node.children]
    if isinstance(node, AndNode):
        pos = [p[1] for p in parts if p[0] == "fts"]
        neg = [p[1] for p in parts if p[0] == "notfts"]
        sqls = [p for p in parts if p[0] == "sql"]
        if pos:
            m = " AND ".join(f"({x})" for x in pos)
            if neg:
                m = f"({m}) NOT ({' OR '.join(f'({x})' for x in neg)})"
            if not sqls:
                return ("fts", m)
            clauses, params = [_FTS_IN], [m]
        else:
            clauses, params = [], []
            if neg:
                clauses.append(_FTS_NOT_IN)
                params.append(" OR ".join(f"({x})" for x in neg))
        for part in sqls:
            clauses.append(f"({part[1]})")
            params.extend(part[2])
        return ("sql", " AND ".join(clauses), params)
    # OrNode
    pos = [p[1] for p in parts if p[0] == "fts"]
    others = [_as_sql(p) for p in parts if p[0] != "fts"]
    if not others:
        return ("fts", " OR ".join(f"({x})" for x in pos))
    clauses, params = [], []
    if pos:
        clauses.append(_FTS_IN)
        params.append(" OR ".join(f"({x})" for x in pos))
    for s, p in others:
        clauses.append(f"({s})")
        params.extend(p)
    return ("sql", " OR ".join(clauses), params)


def _as_sql(part: _Part) -> tuple[str, list]:
    if part[0] == "fts":
        return _FTS_IN, [part[1]]
    if part[0] == "notfts":
        return _FTS_NOT_IN, [part[1]]
    return part[1], list(part[2])


def to_sqlite(query: Query | str) -> tuple[str, list]:
    """An SQL boolean expression over ``articles a`` (+ FTS5 sub-selects) and its parameters."""
    if isinstance(query, str):
        query = parse_query(query)
    return _as_sql(_sql_part(query.root))


def to_fts_rank(query: Query | str) -> str | None:
    """An FTS5 MATCH expression (OR) of the query's positive text leaves, for BM25 ordering
    (``SearchRequest(sort="relevance")`` in the embedded store); None when there is none."""
    if isinstance(query, str):
        query = parse_query(query)
    leaves: list[TextLeaf] = []

    def walk(node: Node, negated: bool) -> None:
        if isinstance(node, TextLeaf):
            if not negated:
                leaves.append(node)
        elif isinstance(node, NotNode):
            walk(node.child, not negated)
        elif isinstance(node, (AndNode, OrNode)):
            for c in node.children:
                walk(c, negated)

    walk(query.root, False)
    parts = list(dict.fromkeys(_fts_leaf(leaf) for leaf in leaves))
    return " OR ".join(f"({p})" for p in parts) if parts else None
