"""Python evaluation: :class:`AnalyzedArticle` (an article analysed once), compiled matchers,
explanations and matched terms; :class:`Query` (a parsed query)."""

from __future__ import annotations

import bisect
from itertools import compress, repeat
from operator import itemgetter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..analysis import TOKEN_RE, analyse, analyse_lemmas, fold
from ..models import Article
from .tree import (_TEXT_SCOPES, TEXT_FIELDS, AllNode, AndNode, KeywordLeaf, Node, NotNode, OrNode, TextLeaf)


# --------------------------------------------------------------------------------------------------
# Python evaluation
# --------------------------------------------------------------------------------------------------

class _FieldData:
    __slots__ = ("text", "tokens", "stems", "_lemmas", "_positions", "_lemma_positions", "_raw_positions",
                 "_raw_sorted", "_spans")

    def __init__(self, text: str):
        self.text = text
        self.tokens, self.stems = analyse(text)
        self._lemmas: list[str] | None = None
        self._positions: dict[str, list[int]] | None = None
        self._lemma_positions: dict[str, list[int]] | None = None
        self._raw_positions: dict[str, list[int]] | None = None
        self._raw_sorted: list[str] | None = None
        self._spans: list[tuple[int, int]] | None = None

    @property
    def lemmas(self) -> list[str]:
        """The lemma channel (empty when the text has no Cyrillic letter)."""
        if self._lemmas is None:
            self._lemmas = analyse_lemmas(self.text)
        return self._lemmas

    def channel(self, lemma_channel: bool) -> list[str]:
        return self.lemmas if lemma_channel else self.stems

    def lemma_positions(self) -> dict[str, list[int]]:
        if self._lemma_positions is None:
            p: dict[str, list[int]] = {}
            for i, s in enumerate(self.lemmas):
                p.setdefault(s, []).append(i)
            self._lemma_positions = p
        return self._lemma_positions

    def channel_positions(self, lemma_channel: bool) -> dict[str, list[int]]:
        return self.lemma_positions() if lemma_channel else self.positions()

    def raw_positions(self) -> dict[str, list[int]]:
        if self._raw_positions is None:
            p: dict[str, list[int]] = {}
            for i, t in enumerate(self.tokens):
                p.setdefault(t, []).append(i)
            self._raw_positions = p
        return self._raw_positions

    def positions_with_prefix(self, prefix: str) -> list[int]:
        """Positions of the raw tokens that start with ``prefix`` (a binary search in the sorted
        distinct tokens)."""
        if self._raw_sorted is None:
            self._raw_sorted = sorted(self.raw_positions())
        srt, raw = self._raw_sorted, self.raw_positions()
        out: list[int] = []
        i = bisect.bisect_left(srt, prefix)
        while i < len(srt) and srt[i].startswith(prefix):
            out.extend(raw[srt[i]])
            i += 1
        return sorted(out)

    def cut(self, i: int, j: int) -> str:
        """Tokens i..j as written in the text."""
        if self._spans is None:
            # the spans of token_spans() without folding each token (only the offsets are used)
            spans = [m.span() for m in TOKEN_RE.finditer(self.text)]
            # NFC folding can change token boundaries in exotic text: fall back to folded tokens
            self._spans = spans if len(spans) == len(self.tokens) else []
        if not self._spans:
            return " ".join(self.tokens[i:j + 1])
        return self.text[self._spans[i][0]:self._spans[j][1]]

    def positions(self) -> dict[str, list[int]]:
        if self._positions is None:
            p: dict[str, list[int]] = {}
            for i, s in enumerate(self.stems):
                p.setdefault(s, []).append(i)
            self._positions = p
        return self._positions


class AnalyzedArticle:
    """An Article analysed once (token and stem sets per field) for evaluating many queries."""

    __slots__ = ("article", "fields", "_stemsets", "_lemmasets", "_keysets", "_rawsets", "_rawsorted",
                 "_prefixsets", "source_keys", "language", "topics", "surfaces")

    def __init__(self, article: Article):
        self.article = article
        self.fields: dict[str, _FieldData] = {}
        for f in TEXT_FIELDS:
            text = getattr(article, f) or ""
            if f.endswith("_en") and text == getattr(article, f[:-3]):
                text = ""  # an English original: the English field repeats it
            self.fields[f] = _FieldData(text)
        self._stemsets: dict[str, frozenset[str]] = {}
        self._lemmasets: dict[str, frozenset[str]] = {}
        self._keysets: dict[str, frozenset[str]] = {}
        self._rawsets: dict[str, frozenset[str]] = {}
        self._rawsorted: dict[str, list[str]] = {}
        self._prefixsets: dict[tuple[str, int], frozenset[str]] = {}
        self.source_keys = frozenset({fold(article.source or ""), fold(article.feed_id or "")})
        self.language = fold(article.language or "")
        self.topics = frozenset(fold(t) for t in article.topics)
        # matched words of a text leaf, by what they depend on (see Query.matched_terms): many
        # topics share words, and an article that matches several reports the same leaves again
        self.surfaces: dict[tuple, list[str]] = {}

    def stemset(self, scope: str) -> frozenset[str]:
        s = self._stemsets.get(scope)
        if s is None:
            s = frozenset().union(*(self.fields[f].stems for f in _TEXT_SCOPES[scope]))
            self._stemsets[scope] = s
        return s

    def lemmaset(self, scope: str) -> frozenset[str]:
        s = self._lemmasets.get(scope)
        if s is None:
            s = frozenset().union(*(self.fields[f].lemmas for f in _TEXT_SCOPES[scope]))
            self._lemmasets[scope] = s
        return s

    def keyset(self, scope: str) -> frozenset[str]:
        """Stems and lemmas together (a necessary-condition prefilter; the channels are told apart
        by the matchers)."""
        s = self._keysets.get(scope)
        if s is None:
            s = self.stemset(scope) | self.lemmaset(scope)
            self._keysets[scope] = s
        return s

    def rawset(self, scope: str) -> frozenset[str]:
        s = self._rawsets.get(scope)
        if s is None:
            s = frozenset().union(*(self.fields[f].tokens for f in _TEXT_SCOPES[scope]))
            self._rawsets[scope] = s
        return s

    def _sorted_raw(self, scope: str) -> list[str]:
        srt = self._rawsorted.get(scope)
        if srt is None:
            srt = sorted(self.rawset(scope))
            self._rawsorted[scope] = srt
        return srt

    def has_prefix(self, scope: str, prefix: str) -> bool:
        """Some raw token in scope starts with ``prefix``: a binary search in the sorted tokens
        (one sort per article and scope; cheaper than a set of every prefix of every token unless
        an article meets hundreds of wildcards)."""
        srt = self._sorted_raw(scope)
        i = bisect.bisect_left(srt, prefix)
        return i < len(srt) and srt[i].startswith(prefix)

    def prefixes(self, scope: str, length: int) -> frozenset[str]:
        """The first ``length`` characters of every raw token in scope (for finding which of many
        wildcard prefixes occur, with one set intersection).  A token shorter than ``length`` is in
        the set as it is: it equals no string of ``length`` characters, the only kind callers look
        up (PrefixGroup), and slicing every token at C speed (``map``) costs a third of a generator
        that filters by length (classify's largest single cost in bench/poll.py's cycle)."""
        s = self._prefixsets.get((scope, length))
        if s is None:
            s = frozenset(map(itemgetter(slice(None, length)), self.rawset(scope)))
            self._prefixsets[(scope, length)] = s
        return s



def analyze_article(article: Article) -> AnalyzedArticle:
    return AnalyzedArticle(article)


_HEAD = 3  # characters of a token's head (see PrefixGroup)


class PrefixGroup:
    """Many wildcard prefixes tested against one article at once.  A prefix of up to three
    characters is looked up in the set of the article's token heads of that length; a longer one
    only when its first three characters are among the article's token heads, and then by a
    binary search in the sorted tokens.  A topic rule has hundreds of prefixes and an article
    shares the heads of only a few: set intersections at C speed instead of a search per prefix."""

    __slots__ = ("short", "by_head", "heads")

    def __init__(self, prefixes: Iterable[str]):
        short: dict[int, set[str]] = {}
        by_head: dict[str, set[str]] = {}
        for p in prefixes:
            if len(p) <= _HEAD:
                short.setdefault(len(p), set()).add(p)
            else:
                by_head.setdefault(p[:_HEAD], set()).add(p)
        self.short = tuple((n, frozenset(ps)) for n, ps in sorted(short.items()))
        self.by_head = {h: tuple(sorted(ps)) for h, ps in by_head.items()}
        self.heads = frozenset(by_head)

    def __bool__(self) -> bool:
        return bool(self.short or self.heads)

    def any_in(self, d: AnalyzedArticle, scope: str) -> bool:
        for n, ps in self.short:
            if not ps.isdisjoint(d.prefixes(scope, n)):
                return True
        for h in self.heads & d.prefixes(scope, _HEAD):
            for p in self.by_head[h]:
                if d.has_prefix(scope, p):
                    return True
        return False

    def hits(self, d: AnalyzedArticle, scope: str) -> list[str]:
        """Every prefix of the group that some token in scope starts with."""
        out = [p for n, ps in self.short for p in ps & d.prefixes(scope, n)]
        for h in self.heads & d.prefixes(scope, _HEAD):
            out.extend(p for p in self.by_head[h] if d.has_prefix(scope, p))
        return out


def _phrase_in(seq: list[str], stems_: tuple[str, ...]) -> list[int]:
    """Start offsets of the contiguous stem sequence in seq."""
    n = len(stems_)
    first = stems_[0]
    out = []
    for i, s in enumerate(seq):
        if s == first and tuple(seq[i:i + n]) == stems_:
            out.append(i)
    return out


def _near_windows(fd: _FieldData, stems_: tuple[str, ...], slop: int,
                  lemma_channel: bool = False) -> list[tuple[int, int]]:
    """(first, last) token windows containing every stem (or lemma) with at most ``slop`` other
    tokens between the first and the last (FTS5 NEAR semantics)."""
    pos = fd.channel_positions(lemma_channel)
    lists = []
    for s in stems_:
        p = pos.get(s)
        if not p:
            return []
        lists.append(p)
    events = sorted((p, k) for k, ps in enumerate(lists) for p in ps)
    k = len(stems_)
    counts = [0] * k
    have = 0
    lo = 0
    out = []
    for hi in range(len(events)):
        p_hi, k_hi = events[hi]
        if counts[k_hi] == 0:
            have += 1
        counts[k_hi] += 1
        while have == k:
            p_lo, k_lo = events[lo]
            # tokens strictly between the first and the last word (the other k-2 words included)
            if p_hi - p_lo - 1 <= slop:
                out.append((p_lo, p_hi))
            counts[k_lo] -= 1
            if counts[k_lo] == 0:
                have -= 1
            lo += 1
    return out


def _channels(leaf: TextLeaf) -> tuple[tuple[bool, tuple[str, ...]], ...]:
    """(lemma channel?, the leaf's words in it) for each channel the leaf is matched in."""
    if leaf.lemmas:
        return ((False, leaf.stems), (True, leaf.lemmas))
    return ((False, leaf.stems),)


def _seq_match(leaf: TextLeaf, doc: AnalyzedArticle, lemma_channel: bool, words: tuple[str, ...]) -> bool:
    """A phrase or proximity leaf in one channel: every word in the scope, then in one field."""
    have = doc.lemmaset(leaf.scope) if lemma_channel else doc.stemset(leaf.scope)
    if not have.issuperset(words):
        return False
    return _seq_in_fields(leaf, doc, lemma_channel, words)


def _seq_in_fields(leaf: TextLeaf, doc: AnalyzedArticle, lemma_channel: bool, words: tuple[str, ...]) -> bool:
    for f in leaf.fields:
        fd = doc.fields[f]
        if leaf.kind == "phrase":
            if _phrase_in(fd.channel(lemma_channel), words):
                return True
        elif _near_windows(fd, words, leaf.slop, lemma_channel):
            return True
    return False


def _leaf_channel_match(leaf: TextLeaf, doc: AnalyzedArticle) -> str | None:
    """Which channel made a text leaf match ("stem", "lemma", "prefix"), or None."""
    if leaf.kind == "term":
        if leaf.stems[0] in doc.stemset(leaf.scope):
            return "stem"
        if leaf.lemmas and leaf.lemmas[0] in doc.lemmaset(leaf.scope):
            return "lemma"
        return None
    if leaf.kind == "prefix":
        return "prefix" if doc.has_prefix(leaf.scope, leaf.tokens[0]) else None
    if leaf.kind == "exact":
        return "exact" if leaf.tokens[0] in doc.rawset(leaf.scope) else None
    for lemma_channel, words in _channels(leaf):
        if _seq_match(leaf, doc, lemma_channel, words):
            return "lemma" if lemma_channel else "stem"
    return None


def _leaf_text_match(leaf: TextLeaf, doc: AnalyzedArticle) -> bool:
    return _leaf_channel_match(leaf, doc) is not None


def _keyword_match(leaf: KeywordLeaf, doc: AnalyzedArticle) -> bool:
    if leaf.field == "source":
        values: Iterable[str] = doc.source_keys
    elif leaf.field == "language":
        values = (doc.language,)
    else:
        values = doc.topics
    if leaf.prefix:
        return any(v.startswith(leaf.value) for v in values)
    return leaf.value in values


def _eval(node: Node, doc: AnalyzedArticle) -> bool:
    if isinstance(node, TextLeaf):
        return _leaf_text_match(node, doc)
    if isinstance(node, KeywordLeaf):
        return _keyword_match(node, doc)
    if isinstance(node, AllNode):
        return True
    if isinstance(node, AndNode):
        return all(_eval(c, doc) for c in node.children)
    if isinstance(node, OrNode):
        return any(_eval(c, doc) for c in node.children)
    if isinstance(node, NotNode):
        return not _eval(node.child, doc)
    raise TypeError(node)


Matcher = Callable[[AnalyzedArticle], bool]


def _compile(node: Node) -> Matcher:
    """Closures equivalent to :func:`_eval`, with runs of terms/prefixes grouped into set operations."""
    if isinstance(node, TextLeaf):
        if node.kind == "term":
            s, scope = node.stems[0], node.scope
            if node.lemmas:
                lm = node.lemmas[0]
                return lambda d: s in d.stemset(scope) or lm in d.lemmaset(scope)
            return lambda d: s in d.stemset(scope)
        if node.kind == "prefix":
            p, scope = node.tokens[0], node.scope
            return lambda d: d.has_prefix(scope, p)
        if node.kind == "exact":
            t, scope = node.tokens[0], node.scope
            return lambda d: t in d.rawset(scope)
        return _compile_sequence(node)
    if isinstance(node, KeywordLeaf):
        return lambda d: _keyword_match(node, d)
    if isinstance(node, AllNode):
        return lambda d: True
    if isinstance(node, NotNode):
        inner = _compile(node.child)
        return lambda d: not inner(d)
    if isinstance(node, OrNode):
        terms: dict[str, set[str]] = {}
        lemma_terms: dict[str, set[str]] = {}
        prefixes: dict[str, set[str]] = {}
        sequences: list[tuple[str, frozenset[str], frozenset[str], Matcher]] = []
        rest: list[Matcher] = []
        for c in node.children:
            if isinstance(c, TextLeaf) and c.kind == "term":
                terms.setdefault(c.scope, set()).add(c.stems[0])
                if c.lemmas:
                    lemma_terms.setdefault(c.scope, set()).add(c.lemmas[0])
            elif isinstance(c, TextLeaf) and c.kind == "prefix":
                prefixes.setdefault(c.scope, set()).add(c.tokens[0])
            elif isinstance(c, TextLeaf) and c.kind in ("phrase", "near"):
                sequences.append((c.scope, frozenset(c.stems), frozenset(c.lemmas), _compile(c)))
            else:
                rest.append(_compile(c))
        if sequences:
            rest.append(_any_sequence(tuple(sequences)))
        checks: list[Matcher] = []
        for scope, ss in terms.items():
            fs = frozenset(ss)
            checks.append(_any_of_set(fs, scope, AnalyzedArticle.stemset))
        for scope, ls in lemma_terms.items():
            fl = frozenset(ls)
            checks.append(_any_of_set(fl, scope, AnalyzedArticle.lemmaset))
        for scope, ps in prefixes.items():
            fp = tuple(sorted(ps))
            checks.append(_any_prefix(fp, scope))
        checks.extend(rest)
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:
            a, b = checks
            return lambda d: a(d) or b(d)
        cs = tuple(checks)

        def any_of(d: AnalyzedArticle) -> bool:
            for c in cs:
                if c(d):
                    return True
            return False
        return any_of
    if isinstance(node, AndNode):
        terms = {}
        rest = []
        for c in node.children:
            if isinstance(c, TextLeaf) and c.kind == "term" and not c.lemmas:
                terms.setdefault(c.scope, set()).add(c.stems[0])
            else:
                rest.append(_compile(c))
        checks = []
        for scope, ss in terms.items():
            fs = frozenset(ss)
            checks.append(_all_stems(fs, scope))
        checks.extend(rest)
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:
            a, b = checks
            return lambda d: a(d) and b(d)
        cs = tuple(checks)

        def all_of(d: AnalyzedArticle) -> bool:
            for c in cs:
                if not c(d):
                    return False
            return True
        return all_of
    raise TypeError(node)


def _any_of_set(words: frozenset[str], scope: str,
                channel: Callable[[AnalyzedArticle, str], frozenset[str]]) -> Matcher:
    return lambda d: not words.isdisjoint(channel(d, scope))


def _any_prefix(prefixes: tuple[str, ...], scope: str) -> Matcher:
    group = PrefixGroup(prefixes)
    return lambda d: group.any_in(d, scope)


def _any_sequence(seqs: tuple[tuple[str, frozenset[str], frozenset[str], Matcher], ...]) -> Matcher:
    """The phrase and proximity children of an OR, each (scope, stems, lemmas, matcher): a
    matcher runs only when every word of one channel is in the scope (its own first test, inline)."""
    def any_sequence(d: AnalyzedArticle) -> bool:
        for scope, st, lm, match in seqs:
            if (st <= d.stemset(scope) or (lm and lm <= d.lemmaset(scope))) and match(d):
                return True
        return False
    return any_sequence


def _all_stems(words: frozenset[str], scope: str) -> Matcher:
    return lambda d: words.issubset(d.stemset(scope))


def _compile_sequence(leaf: TextLeaf) -> Matcher:
    """A phrase or proximity leaf: set checks per channel first (C level), positions only when
    every word is in the scope."""
    scope, stems_, lemmas_ = leaf.scope, leaf.stems, leaf.lemmas
    st, lm = frozenset(stems_), frozenset(lemmas_)

    def stem_only(d: AnalyzedArticle) -> bool:
        return st <= d.stemset(scope) and _seq_in_fields(leaf, d, False, stems_)

    if not lemmas_:
        return stem_only

    def either(d: AnalyzedArticle) -> bool:
        if st <= d.stemset(scope) and _seq_in_fields(leaf, d, False, stems_):
            return True
        return lm <= d.lemmaset(scope) and _seq_in_fields(leaf, d, True, lemmas_)
    return either


# A necessary condition for a match, checked with C-level set operations before the closures run:
# a list of (stems, prefixes) groups, each of which must have a hit in the article's whole text.
_Group = tuple[frozenset, frozenset]


def _triggers(node: Node) -> list[_Group] | None:
    if isinstance(node, TextLeaf):
        if node.kind in ("prefix", "exact"):  # the raw word itself is a (necessary) prefix
            return [(frozenset(), frozenset(node.tokens))]
        if node.lemmas:  # each word: its stem or its lemma (the prefilter looks at both channels)
            return [(frozenset({s, lm}), frozenset()) for s, lm in dict.fromkeys(zip(node.stems, node.lemmas))]
        return [(frozenset({s}), frozenset()) for s in dict.fromkeys(node.stems)]
    if isinstance(node, AndNode):
        groups: list[_Group] = []
        for c in node.children:
            g = _triggers(c)
            if g:
                groups.extend(g)
        return groups or None
    if isinstance(node, OrNode):
        stems_: set = set()
        prefixes: set = set()
        for c in node.children:
            g = _triggers(c)
            if not g:
                return None
            stems_ |= g[0][0]
            prefixes |= g[0][1]
        return [(frozenset(stems_), frozenset(prefixes))]
    return None  # NOT, keyword fields and * can match without any word


def _has_lemmas(node: Node) -> bool:
    if isinstance(node, TextLeaf):
        return bool(node.lemmas)
    if isinstance(node, NotNode):
        return _has_lemmas(node.child)
    if isinstance(node, (AndNode, OrNode)):
        return any(_has_lemmas(c) for c in node.children)
    return False


def prefilter_groups(node: Node) -> list[_Group]:
    """The (stems/lemmas, raw prefixes) groups the prefilter of :func:`_with_prefilter` checks:
    each must have a hit in the article's whole text (stems in ``keyset("all")`` or, for a query
    without lemmas, ``stemset("all")``; prefixes among the raw tokens) or the query cannot match.
    Empty when the query has no such necessary condition (NOT-only, ``*``, keyword fields)."""
    groups = _triggers(node)
    if not groups:
        return []
    return sorted(groups, key=lambda g: len(g[0]) + len(g[1]))[:4]


def _with_prefilter(node: Node, matcher: Matcher) -> Matcher:
    groups = prefilter_groups(node)
    if not groups:
        return matcher
    chosen = [(st, PrefixGroup(px)) for st, px in groups]
    keys = AnalyzedArticle.keyset if _has_lemmas(node) else AnalyzedArticle.stemset

    def prefiltered(d: AnalyzedArticle) -> bool:
        stems_ = keys(d, "all")
        for st, px in chosen:
            if st.isdisjoint(stems_) and (not px or not px.any_in(d, "all")):
                return False
        return matcher(d)
    return prefiltered


# -- explanation ---------------------------------------------------------------------------------

@dataclass
class Explanation:
    """Why a query (sub-)clause matched or not: a tree mirroring the query."""

    clause: str
    matched: bool
    kind: str  # and | or | alias | not | term | phrase | prefix | near | keyword | all
    terms: list[str] = field(default_factory=list)  # surface forms found in the text
    where: list[str] = field(default_factory=list)  # fields the terms were found in
    children: list["Explanation"] = field(default_factory=list)
    # how a word leaf is looked up: "stem белар", "lemma беларусь" (a term), or for kind "alias"
    # the group: "alias belarus: Беларусь | Белоруссия | Belarus"
    via: list[str] = field(default_factory=list)
    matched_by: str = ""  # for a matched word leaf: "stem" | "lemma" | "prefix"

    def to_dict(self) -> dict[str, Any]:
        return {"clause": self.clause, "matched": self.matched, "kind": self.kind, "terms": self.terms,
                "where": self.where, "via": self.via, "matched_by": self.matched_by,
                "children": [c.to_dict() for c in self.children]}


def _surface(leaf: TextLeaf, doc: AnalyzedArticle) -> tuple[list[str], list[str]]:
    """Matched words as written in the text, and the fields they were found in."""
    terms: list[str] = []
    where: list[str] = []
    for f in leaf.fields:
        fd = doc.fields[f]
        if not fd.tokens:
            continue
        found: list[str] = []
        if leaf.kind == "exact":
            found.extend(fd.cut(i, i) for i in _occurrences(fd.tokens, leaf.tokens[0]))
        if leaf.kind == "prefix":
            tokens = fd.tokens  # the positions of the tokens starting with the prefix, at C speed
            found.extend(fd.cut(i, i) for i in compress(range(len(tokens)),
                                                         map(str.startswith, tokens, repeat(leaf.tokens[0]))))
        for lemma_channel, words in (() if leaf.kind in ("prefix", "exact") else _channels(leaf)):
            if lemma_channel and not fd.lemmas:
                continue
            seq = fd.channel(lemma_channel)
            if leaf.kind == "term":
                found.extend(fd.cut(i, i) for i in _occurrences(seq, words[0]))
            elif leaf.kind == "phrase":
                n = len(words)
                for i in _occurrences(seq, words[0]):
                    if tuple(seq[i:i + n]) == words:
                        found.append(fd.cut(i, i + n - 1))
            else:
                for lo, hi in _near_windows(fd, words, leaf.slop, lemma_channel):
                    found.extend(fd.cut(i, i) for i in range(lo, hi + 1) if seq[i] in words)
        if found:
            where.append(f)
            terms.extend(found)
    return _dedupe(terms), where


def _occurrences(seq: list[str], word: str) -> list[int]:
    """The positions of ``word`` in ``seq``, ascending (``list.index`` scans at C speed: cheaper
    than a position table for the few words looked up in each field)."""
    out: list[int] = []
    if word in seq:
        i = seq.index(word)
        while True:
            out.append(i)
            try:
                i = seq.index(word, i + 1)
            except ValueError:
                return out
    return out


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for t in items:
        k = fold(t)
        if k not in seen:
            seen.add(k)
            out.append(t)
    return out


def _leaf_label(leaf: Node) -> str:
    if isinstance(leaf, TextLeaf):
        prefix = "" if leaf.scope == "all" else f"{leaf.scope}:"
        return prefix + leaf.text
    if isinstance(leaf, KeywordLeaf):
        return f"{leaf.field}:{leaf.text}"
    return getattr(leaf, "text", "") or "*"


def _leaf_via(leaf: TextLeaf) -> list[str]:
    if leaf.kind == "prefix":
        return [f"prefix {leaf.tokens[0]}"]
    if leaf.kind == "exact":
        return [f"exact {leaf.tokens[0]} (an abbreviation is not stemmed)"]
    via = ["stem " + " ".join(leaf.stems)]
    if leaf.lemmas:
        via.append("lemma " + " ".join(leaf.lemmas))
    return via


def _explain(node: Node, doc: AnalyzedArticle) -> Explanation:
    if isinstance(node, TextLeaf):
        how = _leaf_channel_match(node, doc)
        terms, where = _surface(node, doc) if how else ([], [])
        return Explanation(_leaf_label(node), how is not None, node.kind, terms, where, via=_leaf_via(node),
                           matched_by=how or "")
    if isinstance(node, KeywordLeaf):
        return Explanation(_leaf_label(node), _keyword_match(node, doc), "keyword")
    if isinstance(node, AllNode):
        return Explanation("*", True, "all")
    if isinstance(node, NotNode):
        inner = _explain(node.child, doc)
        return Explanation("NOT " + inner.clause, not inner.matched, "not", children=[inner])
    kids = [_explain(c, doc) for c in node.children]
    if isinstance(node, OrNode) and node.alias:
        ok = any(k.matched for k in kids)
        names = " | ".join(k.clause for k in kids)
        prefix = node.children[0].scope if isinstance(node.children[0], TextLeaf) else "all"
        label = (f"{prefix}:" if prefix != "all" else "") + node.text
        return Explanation(label, ok, "alias", _dedupe(t for k in kids for t in k.terms),
                           list(dict.fromkeys(w for k in kids for w in k.where)), kids,
                           via=[f"alias {node.alias}: {names}"])
    if isinstance(node, AndNode):
        ok = all(k.matched for k in kids)
        label = " AND ".join(k.clause if k.kind not in ("and", "or") else f"({k.clause})" for k in kids)
        return Explanation(label, ok, "and", children=kids)
    ok = any(k.matched for k in kids)
    label = " OR ".join(k.clause if k.kind not in ("and", "or") else f"({k.clause})" for k in kids)
    return Explanation(label, ok, "or", children=kids)


def _matched_leaves(node: Node, doc: AnalyzedArticle, out: list[TextLeaf]) -> bool:
    """Evaluate like _eval, collecting the text leaves that contributed to a match (the reference
    implementation of :func:`_compile_collect`, kept for the equivalence tests)."""
    if isinstance(node, TextLeaf):
        if _leaf_text_match(node, doc):
            out.append(node)
            return True
        return False
    if isinstance(node, (KeywordLeaf, AllNode, NotNode)):
        return _eval(node, doc)
    if isinstance(node, AndNode):
        tmp: list[TextLeaf] = []
        for c in node.children:
            if not _matched_leaves(c, doc, tmp):
                return False
        out.extend(tmp)
        return True
    ok = False
    for c in node.children:
        if _matched_leaves(c, doc, out):
            ok = True
    return ok


def _reference_matched_terms(node: Node, doc: AnalyzedArticle) -> list[str]:
    """:meth:`Query.matched_terms` by the plain tree walk, with neither the compiled collectors
    nor the article's cache of matched words (the reference of the equivalence tests)."""
    leaves: list[TextLeaf] = []
    if not _matched_leaves(node, doc, leaves):
        return []
    out: list[str] = []
    for leaf in dict.fromkeys(leaves):
        out.extend(_surface(leaf, doc)[0])
    return _dedupe(out)


Collector = Callable[[AnalyzedArticle, list[TextLeaf]], bool]


def _compile_collect(node: Node) -> Collector:
    """Closures equivalent to :func:`_matched_leaves` (the same truth value and the same leaves,
    possibly in another order: :meth:`Query.matched_terms` puts them back in query order).  The
    term children of an OR are looked up with one set intersection per scope and channel instead
    of one test per term: a topic rule has hundreds of them."""
    if isinstance(node, TextLeaf):
        match = _compile(node)

        def leaf(d: AnalyzedArticle, out: list[TextLeaf]) -> bool:
            if match(d):
                out.append(node)
                return True
            return False
        return leaf
    if isinstance(node, (KeywordLeaf, AllNode, NotNode)):
        m = _compile(node)
        return lambda d, out: m(d)
    if isinstance(node, AndNode):
        parts = tuple(_compile_collect(c) for c in node.children)

        def all_of(d: AnalyzedArticle, out: list[TextLeaf]) -> bool:
            tmp: list[TextLeaf] = []
            for c in parts:
                if not c(d, tmp):
                    return False
            out.extend(tmp)
            return True
        return all_of
    by_stem: dict[str, dict[str, list[TextLeaf]]] = {}
    by_lemma: dict[str, dict[str, list[TextLeaf]]] = {}
    by_prefix: dict[str, dict[str, list[TextLeaf]]] = {}
    # phrase and proximity children: (leaf, scope, its stems, its lemmas, its matcher); the matcher
    # runs only when every word of one channel is in the scope (its own first test, without a call)
    sequences: list[tuple[TextLeaf, str, frozenset[str], frozenset[str], Matcher]] = []
    rest: list[Collector] = []
    for c in node.children:
        if isinstance(c, TextLeaf) and c.kind == "term":
            by_stem.setdefault(c.scope, {}).setdefault(c.stems[0], []).append(c)
            if c.lemmas:
                by_lemma.setdefault(c.scope, {}).setdefault(c.lemmas[0], []).append(c)
        elif isinstance(c, TextLeaf) and c.kind == "prefix":
            by_prefix.setdefault(c.scope, {}).setdefault(c.tokens[0], []).append(c)
        elif isinstance(c, TextLeaf) and c.kind in ("phrase", "near"):
            sequences.append((c, c.scope, frozenset(c.stems), frozenset(c.lemmas), _compile(c)))
        else:
            rest.append(_compile_collect(c))
    seqs = tuple(sequences)
    # (frozenset & frozenset walks the smaller set; dict.keys() & x would copy every key first)
    tables = tuple((scope, frozenset(t), t, AnalyzedArticle.stemset) for scope, t in by_stem.items()) + tuple(
        (scope, frozenset(t), t, AnalyzedArticle.lemmaset) for scope, t in by_lemma.items())
    prefix_tables = tuple((scope, PrefixGroup(t), t) for scope, t in by_prefix.items())
    others = tuple(rest)

    def any_of(d: AnalyzedArticle, out: list[TextLeaf]) -> bool:
        ok = False
        for scope, keys, table, channel in tables:
            for hit in keys & channel(d, scope):
                out.extend(table[hit])
                ok = True
        for scope, group, ptable in prefix_tables:
            for hit in group.hits(d, scope):
                out.extend(ptable[hit])
                ok = True
        for leaf, scope, st, lm, match in seqs:
            if (st <= d.stemset(scope) or (lm and lm <= d.lemmaset(scope))) and match(d):
                out.append(leaf)
                ok = True
        for c in others:
            if c(d, out):
                ok = True
        return ok
    return any_of


def _leaf_order(node: Node, order: dict[int, int]) -> None:
    """Position of every text leaf in the query (depth first), by object identity."""
    if isinstance(node, TextLeaf):
        order.setdefault(id(node), len(order))
    elif isinstance(node, NotNode):
        _leaf_order(node.child, order)
    elif isinstance(node, (AndNode, OrNode)):
        for c in node.children:
            _leaf_order(c, order)


class Query:
    """A parsed query.  Immutable; :func:`parse_query` caches instances by text."""

    def __init__(self, text: str, root: Node):
        self.text = text
        self.root = root
        self._matcher: Matcher | None = None
        self._collector: tuple[Collector, dict[int, int]] | None = None

    def __repr__(self) -> str:
        return f"Query({self.text!r})"

    def compile(self) -> Matcher:
        """A fast predicate over :class:`AnalyzedArticle` (analyse once, test many queries)."""
        if self._matcher is None:
            self._matcher = _with_prefilter(self.root, _compile(self.root))
        return self._matcher

    def prefilter(self) -> tuple[list[_Group], bool]:
        """The prefilter's groups (:func:`prefilter_groups`) and whether it looks them up in the
        stems and lemmas (True) or the stems only (for :class:`pipeline.query.percolate.QueryIndex`)."""
        return prefilter_groups(self.root), _has_lemmas(self.root)

    def matches(self, article: Article | AnalyzedArticle) -> bool:
        doc = article if isinstance(article, AnalyzedArticle) else AnalyzedArticle(article)
        return self.compile()(doc)

    def explain(self, article: Article | AnalyzedArticle) -> Explanation:
        doc = article if isinstance(article, AnalyzedArticle) else AnalyzedArticle(article)
        return _explain(self.root, doc)

    def matched_terms(self, article: Article | AnalyzedArticle) -> list[str]:
        """Words (as written in the original or English text) that made the query match;
        empty when it does not match.  Words under NOT, and words of a branch that did not
        match as a whole, are never listed."""
        doc = article if isinstance(article, AnalyzedArticle) else AnalyzedArticle(article)
        if self._collector is None:
            order: dict[int, int] = {}
            _leaf_order(self.root, order)
            self._collector = (_compile_collect(self.root), order)
        collect, order = self._collector
        leaves: list[TextLeaf] = []
        if not collect(doc, leaves):
            return []
        leaves.sort(key=lambda leaf: order[id(leaf)])
        out: list[str] = []
        surfaces = doc.surfaces
        prev = None
        for leaf in leaves:
            # a leaf collected twice is adjacent after the sort; an equal leaf elsewhere in the
            # query adds the words already listed, which _dedupe drops (so no hashing of leaves)
            if leaf is prev:
                continue
            prev = leaf
            # everything _surface reads of the leaf (not its text or position in the query)
            key = (leaf.kind, leaf.scope, leaf.tokens, leaf.stems, leaf.lemmas, leaf.slop)
            terms = surfaces.get(key)
            if terms is None:
                terms = surfaces[key] = _surface(leaf, doc)[0]
            out.extend(terms)
        return _dedupe(out)
