"""Search hits as rows: the CLI's ``search --format json|jsonl|csv`` and the search page's export
(pipeline/web) write the same fields the same way.  Plain data, no rendering."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any, Sequence

from .highlight import plain_snippet
from .models import Article, to_iso

if TYPE_CHECKING:
    from .query import Query

SNIPPET_WIDTH = 160

# the columns of ``mediamon search --format csv`` (and, with ``snippet`` / ``matched_terms``, JSON)
HIT_COLUMNS = ("id", "published_at", "date_inferred", "source", "feed_id", "language", "title", "title_en",
               "url", "topics", "snippet", "matched_terms")


def snippet_of(a: Article, terms: Sequence[str], width: int = SNIPPET_WIDTH) -> tuple[str, list[tuple[int, int]]]:
    """A plain-text snippet of the item's text around the first matched term: the first of summary,
    content, English summary, English content that holds one (else the summary or content), and the
    ``(start, end)`` offsets of the matched terms in it."""
    candidates = [t for t in (a.summary, a.content, a.summary_en, a.content_en) if t]
    first: tuple[str, list[tuple[int, int]]] | None = None
    for text in candidates:
        cut = plain_snippet(text, terms, width)
        if cut[1]:
            return cut
        first = first or cut
    return first or ("", [])


def hit_record(a: Article, query: "Query | None", width: int = SNIPPET_WIDTH) -> dict[str, Any]:
    """One hit: the item's identity, dates (``date_inferred``: the feed gave no date, this is the time
    it was first seen), the snippet and the words that made ``query`` match (``matched_terms``,
    as written in the text; ``snippet_marks``: their offsets in ``snippet``)."""
    terms = query.matched_terms(a) if query is not None else []
    snip, marks = snippet_of(a, terms, width)
    return {"id": a.id, "title": a.title, "title_en": a.title_en, "source": a.source, "feed_id": a.feed_id,
            "language": a.language, "published_at": to_iso(a.published_at), "date_inferred": a.date_inferred,
            "topics": list(a.topics), "url": a.url, "snippet": snip, "snippet_marks": [list(m) for m in marks],
            "matched_terms": terms}


def csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        v = " ".join(str(x) for x in v)
    s = str(v)
    # a spreadsheet would run a cell that starts like a formula: keep it text
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([csv_cell(r[c]) for c in columns])
    return buf.getvalue()


def to_jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
