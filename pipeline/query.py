"""The query language: Lucene query-string syntax (as in Kibana's Lucene mode), parsed with luqum.

One parsed query, three executions that agree (tests/query_cases.py is the shared table):

* :meth:`Query.matches` / :meth:`Query.compile` evaluate in Python (topics, alerts);
* :func:`to_sqlite` compiles to an SQL boolean expression over the embedded store (FTS5);
* :func:`to_es` compiles to Elasticsearch query DSL (the mapping in config/elasticsearch/).

Syntax
------
``Орешник`` (a term), ``"Министерство обороны"`` (a phrase), ``ракет*`` (trailing wildcard),
``AND`` / ``OR`` / ``NOT`` (capitals), ``+must``, ``-must_not``, parentheses, field scopes::

    title:Орешник      title or its English translation
    summary:ракет*     summary or its English translation
    content:"..."      full text or its English translation
    source:tass        exact source name or feed id, case-insensitive (``source:"РИА Новости"``)
    language:ru        detected language
    topic:nuclear_weapons   a topic already assigned to the item
    "ракета Орешник"~3 proximity: the words within 3 other words of each other, any order

No field means title, summary, content and their English translations.  ``*`` alone matches everything.

Semantics (identical in the three executions)
---------------------------------------------
* Analysis is :mod:`pipeline.analysis`: tokens ``[^\\W_]+``, lowercase, ё→е, Snowball Russian for
  tokens containing Cyrillic, Snowball English for the others.  So ``Орешник`` matches ``Орешника``
  and ``Орешником``; ``missiles`` matches ``missile``.  A bare term that analyses to several tokens
  (``S-400``) is a phrase.
* A word with Cyrillic letters is also matched by its lemma (:func:`pipeline.analysis.lemma`) in the
  lemma channel of the text (FTS5 columns ``*_lem``, Elasticsearch ``lemmas.*``): ``Беларусь``
  matches ``Беларуси`` although their stems differ.  A phrase or proximity group matches when all
  its words line up in one channel (all stems, or all lemmas).
* Alias groups (:mod:`pipeline.aliases`, ``config/aliases.yaml``) are expanded at parse time: a
  term or phrase that is a name of a group becomes an :class:`OrNode` (``alias`` = the group id)
  of every name; ``=word`` / ``="a phrase"`` keeps the word alone.
* A trailing ``*`` applies to the folded, *unstemmed* word: ``ракет*`` matches ``ракетами``,
  ``ракетный``.  It must follow at least one letter or digit and cover one word.
* Each term is matched against the original text and the English text; an item matches when every
  required term is found in either (an AND may be satisfied by one term in Russian and one in English).
  Phrases never span the original and the English text.
* The implicit operator between terms is **OR**, as in Lucene and Kibana's default:
  ``Орешник Oreshnik`` = ``Орешник OR Oreshnik``.
* Inside an OR / implicit group, ``+x`` is required, and ``-x`` and ``NOT x`` exclude from the group
  (Lucene rules: ``a OR NOT b`` means "a, but not b"; ``+a b`` means "a").  ``AND`` binds tighter
  than ``OR`` (luqum), so ``a OR b AND c`` is ``a OR (b AND c)``; use parentheses when in doubt.
  A query made only of exclusions (``NOT a``) matches everything else.
* Boosts (``^2``) are accepted and ignored for matching.

Rejected with :class:`QuerySyntaxError` (position + hint): leading or inner wildcards, ``?``,
fuzzy ``word~2``, ranges, regular expressions, unknown fields, lowercase ``and``/``or``/``not``
between terms, ``&&``/``||``/``!``.

Known differences between executions (documented, not tested as equal)
---------------------------------------------------------------------
* Proximity in the embedded store may count the original and its translation as one text when the
  words sit at the end of one and the start of the other (they are one FTS5 column separated by
  one marker token).
* Elasticsearch's Snowball filters are Lucene's port of an older Snowball release; rare word forms
  may stem differently from PyStemmer.
* SQLite compares ``source:``/``language:`` case-insensitively for Latin and Cyrillic letters only.
"""

from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Union

from luqum import tree as lt
from luqum.exceptions import ParseError
from luqum.parser import parser as _luqum_parser

from .aliases import NO_ALIASES, AliasGroup, Aliases
from .analysis import analyse, analyse_lemmas, fold, lemma, stem, token_spans, tokenize
from .errors import MediamonError
from .models import Article

__all__ = [
    "QuerySyntaxError", "Query", "parse_query", "to_sqlite", "to_es", "AnalyzedArticle", "analyze_article",
    "Explanation", "TEXT_FIELDS", "FIELDS",
]

TEXT_FIELDS = ("title", "summary", "content", "title_en", "summary_en", "content_en")

# scope name -> Python article fields, FTS5 columns, Elasticsearch base fields
_TEXT_SCOPES: dict[str, tuple[str, ...]] = {
    "all": TEXT_FIELDS,
    "title": ("title", "title_en"),
    "summary": ("summary", "summary_en"),
    "content": ("content", "content_en"),
}
_FTS_COLUMNS: dict[str, tuple[str, ...]] = {
    "all": ("title", "summary", "content"),
    "title": ("title",),
    "summary": ("summary",),
    "content": ("content",),
}
# Elasticsearch: the lemma channel of each text field (filled by the pipeline, see
# pipeline.store.elasticsearch.lemma_fields); one object field ``lemmas`` with a subfield per field
LEMMA_FIELD = "lemmas"
_KEYWORD_FIELDS = ("source", "language", "topic")
FIELDS = ("title", "summary", "content") + _KEYWORD_FIELDS

_CYRILLIC_RE = re.compile(r"[\u0400-\u04ff]")
_LETTER_RE = re.compile(r"[^\W\d_]")


class QuerySyntaxError(MediamonError):
    """A query that cannot be parsed or uses unsupported syntax.

    ``position`` is the 0-based character offset in the query text, ``hint`` says how to fix it.
    """

    def __init__(self, message: str, position: int, hint: str, query: str = ""):
        self.message = message
        self.position = position
        self.hint = hint
        self.query = query
        super().__init__(f"{message} at position {position}: {hint}")


# --------------------------------------------------------------------------------------------------
# The normalised tree (what all three executions work from)
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TextLeaf:
    """A term, phrase, trailing-wildcard prefix or proximity group over text fields."""

    kind: str  # "term" | "exact" (an acronym: the unstemmed word) | "phrase" | "prefix" | "near"
    scope: str  # key of _TEXT_SCOPES
    tokens: tuple[str, ...]  # folded, unstemmed
    stems: tuple[str, ...]
    slop: int = 0  # for "near": max number of other words between first and last
    text: str = ""  # as typed
    pos: int = 0
    # the lemma channel (pipeline.analysis.lemma per token) when a token has Cyrillic letters:
    # the leaf then also matches text whose lemmas are these; () = stems only
    lemmas: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return _TEXT_SCOPES[self.scope]


@dataclass(frozen=True, slots=True)
class KeywordLeaf:
    field: str  # source | language | topic
    value: str  # folded
    prefix: bool = False
    text: str = ""
    pos: int = 0


@dataclass(frozen=True, slots=True)
class AllNode:
    text: str = "*"
    pos: int = 0


@dataclass(frozen=True, slots=True)
class AndNode:
    children: tuple["Node", ...]
    text: str = ""
    pos: int = 0


@dataclass(frozen=True, slots=True)
class OrNode:
    children: tuple["Node", ...]
    text: str = ""
    pos: int = 0
    alias: str = ""  # the alias group id when this OR is the expansion of one query word


@dataclass(frozen=True, slots=True)
class NotNode:
    child: "Node"
    text: str = ""
    pos: int = 0


Node = Union[TextLeaf, KeywordLeaf, AllNode, AndNode, OrNode, NotNode]


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_parse_lock = threading.Lock()  # the ply parser is not thread-safe
_POS_RE = re.compile(r"unexpected\s+'(.*)' at position (\d+)", re.S)
_ILLEGAL_RE = re.compile(r"Illegal character '(.*)' at position (\d+)", re.S)


def _syntax_error_from_luqum(text: str, exc: ParseError) -> QuerySyntaxError:
    msg = str(exc)
    m = _POS_RE.search(msg)
    if m:
        tok, pos = m.group(1), int(m.group(2))
        if tok == ")":
            hint = "unbalanced parenthesis: remove it or add the matching '('"
        elif tok in ("AND", "OR"):
            hint = f"'{tok}' needs a term on both sides"
        elif tok == "(":
            hint = "a '(' cannot follow a term directly here; add an operator before it"
        elif tok.isdigit():
            hint = "'~' takes one number (proximity) after a phrase"
        else:
            hint = "check the operators and quotes around this point"
        return QuerySyntaxError(f"unexpected '{tok}'", pos, hint, text)
    m = _ILLEGAL_RE.search(msg)
    if m:
        tok, pos = m.group(1), int(m.group(2))
        if tok.startswith('"'):
            return QuerySyntaxError("unclosed quote", pos, 'add the closing \'"\' to end the phrase', text)
        return QuerySyntaxError(f"illegal character {tok[:1]!r}", pos,
                                "escape it with a backslash or put the word in quotes", text)
    if "end" in msg:
        return QuerySyntaxError("unexpected end of query", len(text),
                                "something is missing: a term after an operator or 'field:', "
                                "a closing ')' or a closing '\"'", text)
    return QuerySyntaxError("cannot parse query", 0, msg, text)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _wildcard_positions(value: str) -> list[tuple[int, str]]:
    """Unescaped '*' and '?' in a word, with their offsets."""
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            i += 2
            continue
        if c in "*?":
            out.append((i, c))
        i += 1
    return out


def _is_acronym(surface: str) -> bool:
    """A Cyrillic abbreviation as written (ДНЯО, ПВО, МБР): 2-6 letters, all capitals.  Snowball
    would stem it into an unrelated word (ДНЯО → "дня", the genitive of "day")."""
    letters = [c for c in surface if c.isalpha()]
    return 2 <= len(letters) <= 6 and all(c.isupper() for c in letters) and bool(_CYRILLIC_RE.search(surface))


def _make_leaf(kind: str, scope: str, tokens: tuple[str, ...], *, text: str, pos: int, slop: int = 0) -> TextLeaf:
    if kind == "term" and _is_acronym(text):
        return TextLeaf("exact", scope, tokens, tokens, text=text, pos=pos)
    stems_ = tuple(stem(t) for t in tokens)
    lemmas_: tuple[str, ...] = ()
    if kind != "prefix" and any(_CYRILLIC_RE.search(t) for t in tokens):
        lemmas_ = tuple(lemma(t) for t in tokens)
    return TextLeaf(kind, scope, tokens, stems_, slop=slop, text=text, pos=pos, lemmas=lemmas_)


def _strip_noalias(text: str) -> tuple[str, frozenset[int]]:
    """Replace each ``=`` that turns alias expansion off (at the start of a word or a phrase,
    outside quotes: ``=Беларусь``, ``title:="Республика Беларусь"``) by a space, so positions stay
    valid; return the positions of the words it marked."""
    marks: list[int] = []
    out = list(text)
    in_quote = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif (c == "=" and not in_quote and (i == 0 or text[i - 1] in " \t\r\n(:+-")
              and i + 1 < len(text) and (text[i + 1] == '"' or text[i + 1].isalnum())):
            out[i] = " "
            marks.append(i + 1)
        i += 1
    return "".join(out), frozenset(marks)


class _Converter:
    def __init__(self, text: str, aliases: Aliases = NO_ALIASES, no_alias: frozenset[int] = frozenset()):
        self.text = text
        self.aliases = aliases
        self.no_alias = no_alias

    def expand(self, leaf: TextLeaf) -> Node:
        """The alias expansion of a term or phrase: an OR of every name of its group."""
        if not self.aliases or leaf.pos in self.no_alias:
            return leaf
        group = self.aliases.group_for(leaf.tokens)
        if group is None:
            return leaf
        children: list[Node] = [leaf]
        seen = {(leaf.stems, leaf.lemmas)}
        for name in group.names:
            tokens = tuple(tokenize(name))
            alt = _make_leaf("term" if len(tokens) == 1 else "phrase", leaf.scope, tokens,
                             text=name if len(tokens) == 1 else f'"{name}"', pos=leaf.pos)
            if (alt.stems, alt.lemmas) not in seen:
                seen.add((alt.stems, alt.lemmas))
                children.append(alt)
        if len(children) == 1:
            return leaf
        return OrNode(tuple(children), text=leaf.text, pos=leaf.pos, alias=group.id)

    def err(self, message: str, pos: int | None, hint: str) -> QuerySyntaxError:
        return QuerySyntaxError(message, pos or 0, hint, self.text)

    def span(self, item: lt.Item) -> str:
        pos = getattr(item, "pos", None)
        size = getattr(item, "size", None)
        if pos is None or size is None:
            return str(item).strip()
        return self.text[pos:pos + size].strip()

    # -- leaves -----------------------------------------------------------------------------------
    def word(self, item: lt.Word, scope: str) -> Node:
        raw = item.value
        pos = item.pos or 0
        if raw == "*":
            return AllNode(pos=pos)
        if raw in ("&&", "||") or raw.startswith("!"):
            raise self.err(f"unsupported operator {raw[:2]!r}", pos, "write AND, OR, NOT (capitals)")
        wild = _wildcard_positions(raw)
        prefix = False
        if wild:
            first_off, ch = wild[0]
            if ch == "?":
                raise self.err("'?' wildcards are not supported", pos + first_off,
                               "use a trailing '*' on the word stem, e.g. ракет*")
            if first_off == 0:
                raise self.err("leading wildcards are not supported", pos,
                               "put the '*' at the end of the word stem, e.g. ракет*")
            if len(wild) > 1 or first_off != len(raw) - 1:
                raise self.err("wildcards are only supported at the end of a word", pos + first_off,
                               "use a trailing '*', e.g. ракет*")
            prefix = True
            raw = raw[:-1]
        value = _unescape(raw)
        if scope in _KEYWORD_FIELDS:
            folded = fold(value)
            if not folded:
                raise self.err("empty value", pos, f"give a value after '{scope}:'")
            return KeywordLeaf(scope, folded, prefix=prefix, text=item.value, pos=pos)
        tokens = tuple(tokenize(value))
        if not tokens:
            raise self.err(f"{item.value!r} has no letters or digits", pos,
                           "search for words; operators are AND, OR, NOT (capitals)")
        if prefix:
            if len(tokens) > 1:
                raise self.err("a trailing wildcard applies to one word", pos,
                               'write the other words as a separate term or phrase, e.g. "С 400" AND ракет*')
            return TextLeaf("prefix", scope, tokens, tokens, text=item.value, pos=pos)
        kind = "term" if len(tokens) == 1 else "phrase"
        return self.expand(_make_leaf(kind, scope, tokens, text=item.value, pos=pos))

    def phrase(self, item: lt.Phrase, scope: str, slop: int | None = None) -> Node:
        pos = item.pos or 0
        wild = _wildcard_positions(item.value[1:-1])
        if wild:
            raise self.err("wildcards do not work inside a phrase", pos + 1 + wild[0][0],
                           'stemming already matches word forms ("боевое дежурство" matches "боевом '
                           'дежурстве"); or combine words with AND: боев* AND дежурств*')
        inner = _unescape(item.value[1:-1])
        if scope in _KEYWORD_FIELDS:
            if slop is not None:
                raise self.err("proximity is not supported on " + scope, pos, f'use {scope}:"exact value"')
            folded = fold(inner).strip()
            if not folded:
                raise self.err("empty value", pos, f"give a value after '{scope}:'")
            return KeywordLeaf(scope, folded, text=item.value, pos=pos)
        tokens = tuple(tokenize(inner))
        if not tokens:
            raise self.err("empty phrase", pos, "put at least one word between the quotes")
        if len(tokens) == 1:
            return self.expand(_make_leaf("term", scope, tokens, text=item.value, pos=pos))
        if slop is not None:
            leaf = _make_leaf("near", scope, tokens, slop=slop, text=f"{item.value}~{slop}", pos=pos)
            if len(set(leaf.stems)) != len(leaf.stems) or len(set(leaf.lemmas)) != len(leaf.lemmas):
                raise self.err("a word is repeated in a proximity search", pos,
                               "list each word once, or use an exact phrase without '~'")
            return leaf
        return self.expand(_make_leaf("phrase", scope, tokens, text=item.value, pos=pos))

    # -- structure --------------------------------------------------------------------------------
    def convert(self, item: lt.Item, scope: str = "all") -> Node:
        pos = getattr(item, "pos", None)
        if isinstance(item, lt.Word):
            return self.word(item, scope)
        if isinstance(item, lt.Phrase):
            return self.phrase(item, scope)
        if isinstance(item, lt.Proximity):
            if not isinstance(item.term, lt.Phrase):
                raise self.err("'~' is only supported after a phrase", pos, 'e.g. "ракета Орешник"~3')
            degree = item.degree
            try:
                slop = int(float(degree if degree is not None else 1))
            except (TypeError, ValueError):
                raise self.err("bad proximity", pos, 'use a whole number, e.g. "a b"~3') from None
            if slop < 0 or slop > 100:
                raise self.err("bad proximity", pos, "use a number between 0 and 100")
            return self.phrase(item.term, scope, slop=slop)
        if isinstance(item, lt.Fuzzy):
            raise self.err("fuzzy search ('~' after a word) is not supported", pos,
                           "use a trailing wildcard (ракет*) or list the word forms; stemming already "
                           "matches inflected forms")
        if isinstance(item, (lt.Range, lt.From, lt.To)):
            raise self.err("ranges are not supported", pos, "use --since/--until for dates")
        if isinstance(item, lt.Regex):
            raise self.err("regular expressions are not supported", pos, "use terms, phrases or ракет*")
        if isinstance(item, lt.SearchField):
            name = item.name
            if name == "*" and isinstance(item.expr, lt.Word) and item.expr.value == "*":
                return AllNode(pos=pos or 0)
            key = name.lower()
            if key in ("title", "summary", "content"):
                return self.convert(item.expr, key)
            if key in _KEYWORD_FIELDS:
                return self.convert(item.expr, key)
            raise self.err(f"unknown field '{name}'", pos,
                           "fields are " + ", ".join(f"{f}:" for f in FIELDS)
                           + r"; to search for a ':' escape it as \:")
        if isinstance(item, (lt.Group, lt.FieldGroup)):
            return self.convert(item.expr, scope)
        if isinstance(item, lt.Boost):
            return self.convert(item.expr, scope)
        if isinstance(item, lt.Plus):
            return self.convert(item.a, scope)
        if isinstance(item, (lt.Not, lt.Prohibit)):
            return NotNode(self.convert(item.a, scope), text=self.span(item), pos=pos or 0)
        if isinstance(item, lt.AndOperation):
            children = []
            for c in item.children:
                children.append(self.convert(c, scope))
            return AndNode(tuple(children), text=self.span(item), pos=pos or 0)
        if isinstance(item, (lt.OrOperation, lt.UnknownOperation)):
            return self.group(item, scope)
        raise self.err(f"unsupported syntax {type(item).__name__}", pos,
                       "use terms, phrases, AND/OR/NOT, parentheses and field:value")

    def group(self, item: lt.BaseOperation, scope: str) -> Node:
        must: list[Node] = []
        should: list[Node] = []
        must_not: list[Node] = []
        implicit = isinstance(item, lt.UnknownOperation)
        for c in item.children:
            if implicit and scope == "all" and isinstance(c, lt.Word) and c.value in ("and", "or", "not"):
                raise self.err(f"lowercase operator '{c.value}'", c.pos,
                               f"write '{c.value.upper()}' to combine terms, or quote it (\"{c.value}\") to "
                               "search for the word")
            if isinstance(c, lt.Plus):
                must.append(self.convert(c.a, scope))
            elif isinstance(c, (lt.Prohibit, lt.Not)):
                must_not.append(self.convert(c.a, scope))
            else:
                should.append(self.convert(c, scope))
        text = self.span(item)
        pos = item.pos or 0
        if must:
            base: Node | None = must[0] if len(must) == 1 else AndNode(tuple(must), text=text, pos=pos)
        elif should:
            base = should[0] if len(should) == 1 else OrNode(tuple(should), text=text, pos=pos)
        else:
            base = None
        if not must_not:
            return base if base is not None else AllNode(pos=pos)
        parts = ([base] if base is not None else []) + [NotNode(n, text=getattr(n, "text", ""), pos=getattr(n, "pos", 0))
                                                         for n in must_not]
        return AndNode(tuple(parts), text=text, pos=pos)


def _parse_uncached(text: str, aliases: Aliases = NO_ALIASES) -> "Query":
    if not isinstance(text, str):
        raise TypeError("query must be a string")
    if not text.strip():
        raise QuerySyntaxError("empty query", 0, "type at least one word", text)
    plain, no_alias = _strip_noalias(text)
    try:
        with _parse_lock:
            luq = _luqum_parser.parse(plain)
    except ParseError as exc:
        raise _syntax_error_from_luqum(text, exc) from exc
    except Exception as exc:  # noqa: BLE001 - luqum raises odd things on odd input; never a traceback
        raise QuerySyntaxError("cannot parse query", 0, str(exc) or type(exc).__name__, text) from exc
    root = _Converter(text, aliases, no_alias).convert(luq)
    return Query(text, root)


@lru_cache(maxsize=4096)
def parse_query(text: str, aliases: Aliases | None = None) -> "Query":
    """Parse a query (cached per text and alias table).  ``aliases`` expands the words that are
    names of an alias group (``config/aliases.yaml``); None expands nothing.  Raises
    :class:`QuerySyntaxError` with position and hint."""
    return _parse_uncached(text, aliases or NO_ALIASES)


# --------------------------------------------------------------------------------------------------
# Python evaluation
# --------------------------------------------------------------------------------------------------

class _FieldData:
    __slots__ = ("text", "tokens", "stems", "_lemmas", "_positions", "_lemma_positions", "_raw_positions",
                 "_spans")

    def __init__(self, text: str):
        self.text = text
        self.tokens, self.stems = analyse(text)
        self._lemmas: list[str] | None = None
        self._positions: dict[str, list[int]] | None = None
        self._lemma_positions: dict[str, list[int]] | None = None
        self._raw_positions: dict[str, list[int]] | None = None
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

    def cut(self, i: int, j: int) -> str:
        """Tokens i..j as written in the text."""
        if self._spans is None:
            spans = [(s, e) for s, e, _ in token_spans(self.text)]
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
                 "source_keys", "language", "topics")

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
        self.source_keys = frozenset({fold(article.source or ""), fold(article.feed_id or "")})
        self.language = fold(article.language or "")
        self.topics = frozenset(fold(t) for t in article.topics)

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

    def has_any_prefix(self, scope: str, prefixes: Iterable[str]) -> bool:
        srt = self._sorted_raw(scope)
        n = len(srt)
        for p in prefixes:
            i = bisect.bisect_left(srt, p)
            if i < n and srt[i].startswith(p):
                return True
        return False


def analyze_article(article: Article) -> AnalyzedArticle:
    return AnalyzedArticle(article)


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
        return lambda d: _leaf_text_match(node, d)
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
        rest: list[Matcher] = []
        for c in node.children:
            if isinstance(c, TextLeaf) and c.kind == "term":
                terms.setdefault(c.scope, set()).add(c.stems[0])
                if c.lemmas:
                    lemma_terms.setdefault(c.scope, set()).add(c.lemmas[0])
            elif isinstance(c, TextLeaf) and c.kind == "prefix":
                prefixes.setdefault(c.scope, set()).add(c.tokens[0])
            else:
                rest.append(_compile(c))
        checks: list[Matcher] = []
        for scope, ss in terms.items():
            fs = frozenset(ss)
            checks.append(lambda d, fs=fs, scope=scope: not fs.isdisjoint(d.stemset(scope)))
        for scope, ls in lemma_terms.items():
            fl = frozenset(ls)
            checks.append(lambda d, fl=fl, scope=scope: not fl.isdisjoint(d.lemmaset(scope)))
        for scope, ps in prefixes.items():
            fp = tuple(sorted(ps))
            checks.append(lambda d, fp=fp, scope=scope: d.has_any_prefix(scope, fp))
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
            checks.append(lambda d, fs=fs, scope=scope: fs.issubset(d.stemset(scope)))
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


def _with_prefilter(node: Node, matcher: Matcher) -> Matcher:
    groups = _triggers(node)
    if not groups:
        return matcher
    groups = sorted(groups, key=lambda g: len(g[0]) + len(g[1]))[:4]
    keys = AnalyzedArticle.keyset if _has_lemmas(node) else AnalyzedArticle.stemset

    def prefiltered(d: AnalyzedArticle) -> bool:
        stems_ = keys(d, "all")
        for st, px in groups:
            if st.isdisjoint(stems_) and (not px or not d.has_any_prefix("all", px)):
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
            found.extend(fd.cut(i, i) for i in fd.raw_positions().get(leaf.tokens[0], ()))
        if leaf.kind == "prefix":
            p = leaf.tokens[0]
            for t, idx in fd.raw_positions().items():
                if t.startswith(p):
                    found.extend(fd.cut(i, i) for i in idx)
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
    """Evaluate like _eval, collecting the text leaves that contributed to a match."""
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
        if isinstance(c, TextLeaf) and c.kind == "term":  # the common case, inlined
            if c.stems[0] in doc.stemset(c.scope) or (c.lemmas and c.lemmas[0] in doc.lemmaset(c.scope)):
                out.append(c)
                ok = True
        elif _matched_leaves(c, doc, out):
            ok = True
    return ok


class Query:
    """A parsed query.  Immutable; :func:`parse_query` caches instances by text."""

    def __init__(self, text: str, root: Node):
        self.text = text
        self.root = root
        self._matcher: Matcher | None = None

    def __repr__(self) -> str:
        return f"Query({self.text!r})"

    def compile(self) -> Matcher:
        """A fast predicate over :class:`AnalyzedArticle` (analyse once, test many queries)."""
        if self._matcher is None:
            self._matcher = _with_prefilter(self.root, _compile(self.root))
        return self._matcher

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
        leaves: list[TextLeaf] = []
        if not _matched_leaves(self.root, doc, leaves):
            return []
        out: list[str] = []
        for leaf in dict.fromkeys(leaves):
            out.extend(_surface(leaf, doc)[0])
        return _dedupe(out)


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
        for p in sqls:
            clauses.append(f"({p[1]})")
            params.extend(p[2])
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
        sub = _phrase_subfield(leaf.tokens)
        if sub is not None:
            text = " ".join(leaf.tokens)
            fields = [f"{b}.{sub}" for b in bases]
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
