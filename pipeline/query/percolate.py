"""Which of many queries can match an article: an inverted index over their prefilters (what a
percolator does), so that an article is tested only against the queries it could match.

Every compiled query (:meth:`Query.compile`) starts with a prefilter: up to four groups of
stems/lemmas and raw prefixes (:func:`pipeline.query.evaluate.prefilter_groups`), each of which
must have a hit in the article's whole text, else the query returns False without looking further.
:class:`QueryIndex` maps each of those words and prefixes to the queries whose group contains it,
one table per group rank (a query's smallest group, its second smallest, …), as bit masks over the
queries.  For an article, a query is a candidate when every one of its groups has a hit; a query
without a prefilter (NOT-only, ``*``, keyword fields only, an OR with such a branch) always is.

The index never drops a query that could match: it looks words up in ``keyset("all")`` (stems and
lemmas), a superset of the ``stemset("all")`` that a query without lemmas looks in, and its prefix
hits are the prefilter's own test (:class:`PrefixGroup`).  A candidate still runs its full matcher,
prefilter included, so the results are those of testing every query (tests/test_percolate.py).
"""

from __future__ import annotations

from typing import Sequence

from .evaluate import AnalyzedArticle, PrefixGroup, Query


class QueryIndex:
    """Candidate queries (their positions in the given sequence, ascending) for an article."""

    __slots__ = ("size", "_always", "_keys", "_key_masks", "_prefixes", "_prefix_masks", "_lemmas")

    def __init__(self, queries: Sequence[Query]):
        self.size = len(queries)
        prefilters = [q.prefilter() for q in queries]
        ranks = max((len(groups) for groups, _ in prefilters), default=0)
        # per rank: the queries with no group of that rank pass it whatever the article holds
        always = [0] * ranks
        key_masks: dict[str, list[int]] = {}
        prefix_masks: dict[str, list[int]] = {}
        for i, (groups, _) in enumerate(prefilters):
            bit = 1 << i
            for r in range(ranks):
                if r >= len(groups):
                    always[r] |= bit
                    continue
                stems, prefixes = groups[r]
                for k in stems:
                    key_masks.setdefault(k, [0] * ranks)[r] |= bit
                for p in prefixes:
                    prefix_masks.setdefault(p, [0] * ranks)[r] |= bit
        self._always = tuple(always)
        self._key_masks = {k: tuple(m) for k, m in key_masks.items()}
        self._keys = frozenset(key_masks)
        self._prefix_masks = {p: tuple(m) for p, m in prefix_masks.items()}
        self._prefixes = PrefixGroup(prefix_masks)
        # without any lemma in any query the stems alone are the prefilters' own lookup
        self._lemmas = any(lemmas for _, lemmas in prefilters)

    def mask(self, doc: AnalyzedArticle) -> int:
        """Bit i set: query i may match ``doc`` (every one of its prefilter groups has a hit)."""
        if not self._always:
            return (1 << self.size) - 1  # no query has a prefilter
        acc = list(self._always)
        have = doc.keyset("all") if self._lemmas else doc.stemset("all")
        masks = self._key_masks
        for k in self._keys & have:
            for r, m in enumerate(masks[k]):
                acc[r] |= m
        if self._prefixes:
            pmasks = self._prefix_masks
            for p in self._prefixes.hits(doc, "all"):
                for r, m in enumerate(pmasks[p]):
                    acc[r] |= m
        out = acc[0]
        for m in acc[1:]:
            out &= m
        return out

    def candidates(self, doc: AnalyzedArticle) -> list[int]:
        """Positions of the queries that may match ``doc``, ascending."""
        mask = self.mask(doc)
        out = []
        while mask:
            low = mask & -mask
            out.append(low.bit_length() - 1)
            mask ^= low
        return out
