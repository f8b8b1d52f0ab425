"""Highlighted text and result snippets for pages (``mediamon serve``).

The words marked are exactly the words that made a query match an article:
:meth:`pipeline.query.Query.matched_terms` lists them as written in the text (a lemma match such as
``Беларусь`` → ``Белоруссии``, an alias match such as ``Belarus`` → ``Беларуси``, a prefix match, a
phrase as a whole), and they are found again here as whole words (case-insensitive, ``е`` = ``ё``, the folding of
:func:`pipeline.analysis.tokenize`), a phrase only where its words stand together.  Nothing is
marked by stem similarity alone, so a word is never marked that the query did not match.

Feed text is hostile: every piece is escaped on its own before ``<mark>`` is put around marked
tokens, and bidirectional control characters (U+202A–U+202E, U+2066–U+2069, LRM/RLM/ALM) and other
control characters are removed first (:func:`clean`), so a title cannot reorder the page around
it.  The result is a :class:`markupsafe.Markup` that templates insert as it is.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable, Sequence

from markupsafe import Markup, escape

from .analysis import tokenize

if TYPE_CHECKING:
    from .models import Article
    from .query import Query

# bidi embeddings/overrides/isolates, LRM/RLM/ALM, and C0/C1 controls other than tab and newline
_UNSAFE_RE = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str | None) -> str:
    """``text`` without bidirectional and other control characters ('' for None)."""
    if not text:
        return ""
    return _UNSAFE_RE.sub("", text)


def term_sequences(terms: Iterable[str]) -> set[tuple[str, ...]]:
    """The folded token sequences of matched terms (a phrase is one sequence)."""
    return {tuple(toks) for toks in (tokenize(t) for t in terms) if toks}


_WORD = r"[^\W_]"


def _token_pattern(token: str) -> str:
    return "".join("[её]" if ch in "её" else re.escape(ch) for ch in token)


@lru_cache(maxsize=4096)
def _matcher(seqs: frozenset[tuple[str, ...]]) -> re.Pattern[str]:
    """One regex for all sequences: each a run of whole words (any case, е = ё) separated by
    non-word characters, longest first; never part of a longer word."""
    alts = sorted(seqs, key=lambda s: (-len(s), -sum(map(len, s))))
    body = "|".join(r"[\W_]+".join(_token_pattern(t) for t in seq) for seq in alts)
    return re.compile(rf"(?<!{_WORD})(?:{body})(?!{_WORD})", re.IGNORECASE)


def _marked(text: str, seqs: set[tuple[str, ...]]) -> list[tuple[int, int]]:
    if not seqs or not text:
        return []
    return [m.span() for m in _matcher(frozenset(seqs)).finditer(text)]


def _render(text: str, marks: Sequence[tuple[int, int]], lo: int = 0, hi: int | None = None) -> Markup:
    hi = len(text) if hi is None else hi
    out: list[str] = []
    pos = lo
    for start, end in marks:
        if end <= lo or start >= hi:
            continue
        out.append(str(escape(text[pos:start])))
        out.append("<mark>" + str(escape(text[start:end])) + "</mark>")
        pos = end
    out.append(str(escape(text[pos:hi])))
    return Markup("".join(out))


def highlight(text: str | None, terms: Iterable[str]) -> Markup:
    """``text`` cleaned and escaped, with the matched ``terms`` wrapped in ``<mark>``."""
    text = clean(text)
    return _render(text, _marked(text, term_sequences(terms)))


def _window(text: str, marks: Sequence[tuple[int, int]], width: int) -> tuple[int, int]:
    """The ``[lo, hi)`` cut of about ``width`` characters around the first mark, at word boundaries."""
    if len(text) <= width:
        return 0, len(text)
    first = marks[0][0] if marks else 0
    lo = max(0, first - width // 4)
    if lo:
        space = text.rfind(" ", 0, lo + 1)
        lo = space + 1 if space >= 0 and lo - space < 30 else lo
    hi = min(len(text), lo + width)
    if hi < len(text):
        space = text.rfind(" ", lo + width // 2, hi)
        hi = space if space > 0 else hi
    return lo, hi


def snippet(text: str | None, terms: Iterable[str], width: int = 260) -> Markup:
    """About ``width`` characters of ``text`` around its first matched term (or its start), cut at
    word boundaries, with ``…`` where text was left out, highlighted like :func:`highlight`."""
    text = clean(text)
    marks = _marked(text, term_sequences(terms))
    if len(text) <= width:
        return _render(text, marks)
    lo, hi = _window(text, marks, width)
    body = _render(text, marks, lo, hi)
    return Markup(("…" if lo else "") + str(body) + ("…" if hi < len(text) else ""))


def plain_snippet(text: str | None, terms: Iterable[str], width: int = 260) -> tuple[str, list[tuple[int, int]]]:
    """:func:`snippet` as plain text for a terminal or JSON: the cut text (``…`` where text was
    left out, control characters removed, nothing escaped) and the ``(start, end)`` offsets of the
    matched terms in it."""
    text = clean(text)
    marks = _marked(text, term_sequences(terms))
    lo, hi = _window(text, marks, width)
    lead = "…" if lo else ""
    out = lead + text[lo:hi] + ("…" if hi < len(text) else "")
    shift = len(lead) - lo
    return out, [(s + shift, e + shift) for s, e in marks if s >= lo and e <= hi]


def plain_marks(text: str | None, terms: Iterable[str]) -> tuple[str, list[tuple[int, int]]]:
    """``text`` cleaned, and the ``(start, end)`` offsets of the matched ``terms`` in it."""
    text = clean(text)
    return text, _marked(text, term_sequences(terms))


def matched_terms(query: "Query | None", article: "Article") -> list[str]:
    """The words that made ``query`` match ``article`` ([] without a query or a match)."""
    if query is None:
        return []
    return query.matched_terms(article)
