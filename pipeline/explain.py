"""Why an article is what it is: the rules that match it, the clauses that decided, the words found,
and how its language and date were decided.  Plain data for ``mediamon show``, ``topics explain``
and the article page of ``mediamon serve`` (pipeline/web/views.py); no rendering here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .models import Article
from .query import Explanation, parse_query

if TYPE_CHECKING:
    from .aliases import Aliases
    from .config import AlertConfig, TopicConfig

MAX_FAILED_ALTERNATIVES = 6  # a failed OR with more alternatives is one line in deciding_tree
_LEAF_KINDS = ("term", "phrase", "prefix", "near", "keyword", "alias", "all")


def deciding_clauses(e: Explanation) -> list[dict[str, Any]]:
    """The matched word clauses (and alias groups) under the matched branches of an explanation:
    what decided the match.  NOT branches are left out (they decide by absence)."""
    out: list[dict[str, Any]] = []

    def walk(node: Explanation) -> None:
        if not node.matched or node.kind == "not":
            return
        if node.kind in _LEAF_KINDS:
            if any(o["clause"] == node.clause for o in out):
                return
            out.append({"clause": node.clause, "kind": node.kind, "terms": node.terms, "where": node.where,
                        "via": node.via, "matched_by": node.matched_by or
                        next((c.matched_by for c in node.children if c.matched), "")})
            return
        for c in node.children:
            walk(c)

    walk(e)
    return out


def deciding_tree(e: Explanation) -> Explanation:
    """The explanation cut down to the clauses that decided its verdict: under a match, the
    matched branches of an OR (every branch of an AND matched); under a miss, the failed branches
    of an AND (every branch of an OR failed; more than MAX_FAILED_ALTERNATIVES of them are one
    line, kind ``none``).  A NOT is its clause alone (what it excludes is in
    the clause).  The full tree is ``e``."""
    if e.kind == "not":
        return replace(e, children=[])
    if e.kind == "or" and not e.matched and len(e.children) > MAX_FAILED_ALTERNATIVES:
        return replace(e, kind="none", children=[],
                       clause=f"OR: none of its {len(e.children)} alternatives matched (--all lists them)")
    if e.kind == "and":
        kids = [c for c in e.children if c.matched == e.matched]
    elif e.kind in ("or", "alias"):
        kids = [c for c in e.children if c.matched == e.matched] if e.matched else list(e.children)
    else:
        kids = list(e.children)
    return replace(e, children=[deciding_tree(c) for c in kids])


def language_decision(a: Article) -> str:
    """How ``a.language`` was decided, from what normalize recorded: the declared language (its
    tag as written, ``language_tag``) and the detected one (``language``)."""
    declared = a.feed_language
    tag = a.language_tag or declared
    if not a.language:
        return "unknown: the feed declared none and detection was not conclusive"
    if not declared:
        return "detected from the text (the feed declared no language)"
    if a.language == declared:
        return f"declared {tag} (feeds.yaml or the feed); detection did not overrule it"
    return f"detected from the text; the feed declared {tag}"


def article_rules(a: Article, topics: Sequence["TopicConfig"], alerts: Sequence["AlertConfig"],
                  aliases: "Aliases | None", *,
                  sent: Callable[[str, str], bool] | None = None) -> list[dict[str, Any]]:
    """Every topic that matches ``a`` now or was assigned to it, and every alert rule whose query
    matches it, with the clauses that decided (:func:`deciding_clauses`), the words found as written
    in the text (``terms``), and the full explanation tree (``explanation``: an
    :class:`Explanation`).  A topic whose query matches but which gave way to another (its
    ``yields_to``, decided by the title) has ``yielded_to`` set and is not ``matched_now``.
    ``sent(rule_id, article_id)`` says whether an alert was mailed."""
    from .classify import CompiledTopic, gives_way

    rules: list[dict[str, Any]] = []
    found = []
    for t in topics:
        q = parse_query(t.query, aliases)
        e = q.explain(a)
        lang_ok = not t.languages or (a.language in t.languages)
        found.append((t, q, e, e.matched and lang_ok))
    # a topic that yields to another matched one (topics.yaml yields_to) is not a match now
    matched = [t.id for t, _, _, ok in found if ok]
    compiled = [CompiledTopic(t, q) for t, q, _, _ in found]
    for c, (t, q, e, ok) in zip(compiled, found):
        if not (e.matched or t.id in a.topics):
            continue
        gave_way = gives_way(a, c, compiled, matched) if ok else None
        stored = next((m for m in a.topic_matches if m.topic == t.id), None)
        rules.append({"kind": "topic", "id": t.id, "name": t.name, "query": t.query,
                      "matched_now": ok and gave_way is None, "assigned": t.id in a.topics,
                      "yielded_to": gave_way,
                      "method": stored.method if stored else "", "score": stored.score if stored else None,
                      "languages": t.languages, "clauses": deciding_clauses(e),
                      "terms": q.matched_terms(a) if e.matched else [], "explanation": e})
    for r in alerts:
        q = parse_query(r.query, aliases)
        e = q.explain(a)
        if not e.matched:
            continue
        ok = (not r.topics or bool(set(r.topics) & set(a.topics))) and \
             (not r.languages or a.language in r.languages)
        rules.append({"kind": "alert", "id": r.id, "name": r.description or r.id, "query": r.query,
                      "matched_now": ok, "assigned": ok, "method": r.mode, "score": None,
                      "languages": r.languages, "topics": r.topics,
                      "sent": bool(sent(r.id, a.id)) if sent else None,
                      "clauses": deciding_clauses(e), "terms": q.matched_terms(a), "explanation": e})
    return rules
