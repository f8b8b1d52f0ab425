"""Parsing: luqum's Lucene tree → the normalised tree (:mod:`.tree`), with alias expansion,
abbreviations, and the limits every engine shares."""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Iterator

from luqum import tree as lt
from luqum.exceptions import ParseError
from luqum.parser import parser as _luqum_parser

from ..aliases import NO_ALIASES, Aliases
from ..analysis import fold, lemma, stem, tokenize
from .evaluate import Query
from .tree import (_CYRILLIC_RE, _KEYWORD_FIELDS, FIELDS, AllNode, AndNode, KeywordLeaf, Node, NotNode, OrNode,
                   QuerySyntaxError, TextLeaf)


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_parse_lock = threading.Lock()  # the ply parser is not thread-safe

MAX_DEPTH = 20
MAX_PARENS = 32
MAX_CLAUSES = 1024
MAX_FILTERS = 200
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unescaped(text: str) -> Iterator[tuple[int, str]]:
    """(offset, character) of each character that a backslash does not escape."""
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        yield i, text[i]
        i += 1


def _outside_quotes(text: str) -> Iterator[tuple[int, str]]:
    """(offset, character) of each unescaped character outside "phrases"."""
    in_quote = False
    for i, c in _unescaped(text):
        if c == '"':
            in_quote = not in_quote
        elif not in_quote:
            yield i, c


def _paren_overflow(text: str) -> int | None:
    """Position of the first '(' nested deeper than MAX_PARENS (outside quotes), else None."""
    depth = 0
    for i, c in _outside_quotes(text):
        if c == "(":
            depth += 1
            if depth > MAX_PARENS:
                return i
        elif c == ")":
            depth = max(0, depth - 1)
    return None


def _check_limits(root: "Node", text: str) -> None:
    clauses = filters = 0
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (AndNode, OrNode, NotNode)):
            if depth + 1 > MAX_DEPTH:
                raise QuerySyntaxError("query nested too deeply", node.pos,
                                       f"at most {MAX_DEPTH} levels of AND/OR/NOT; flatten the groups", text)
            kids = (node.child,) if isinstance(node, NotNode) else node.children
            stack.extend((c, depth + 1) for c in kids)
        elif isinstance(node, (TextLeaf, KeywordLeaf)):
            clauses += 1
            filters += isinstance(node, KeywordLeaf)
    if clauses > MAX_CLAUSES:
        raise QuerySyntaxError("query too large", 0,
                               f"{clauses} words, phrases and filters (after alias expansion); at most "
                               f"{MAX_CLAUSES}: split it into several topics or queries", text)
    if filters > MAX_FILTERS:
        raise QuerySyntaxError("too many filters", 0,
                               f"{filters} source:/language:/topic: filters; at most {MAX_FILTERS}", text)
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
    return [(i, c) for i, c in _unescaped(value) if c in "*?"]


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
    for i, c in _outside_quotes(text):
        if (c == "=" and (i == 0 or text[i - 1] in " \t\r\n(:+-")
                and i + 1 < len(text) and (text[i + 1] == '"' or text[i + 1].isalnum())):
            out[i] = " "
            marks.append(i + 1)
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
    bad = _SURROGATE.search(text)
    if bad is not None:  # a terminal's undecodable bytes (surrogateescape): SQLite and ES cannot take them
        raise QuerySyntaxError("the query is not valid UTF-8 text", bad.start(),
                               f"it holds a byte that is not UTF-8 ({ascii(bad.group())}); "
                               "check the terminal's encoding and type it again", text)
    plain, no_alias = _strip_noalias(text)
    deep = _paren_overflow(plain)
    if deep is not None:
        raise QuerySyntaxError("query nested too deeply", deep,
                               f"at most {MAX_PARENS} nested parentheses", text)
    try:
        with _parse_lock:
            luq = _luqum_parser.parse(plain)
    except ParseError as exc:
        raise _syntax_error_from_luqum(text, exc) from exc
    except Exception as exc:  # noqa: BLE001 - luqum raises odd things on odd input; never a traceback
        raise QuerySyntaxError("cannot parse query", 0, str(exc) or type(exc).__name__, text) from exc
    try:
        root = _Converter(text, aliases, no_alias).convert(luq)
    except RecursionError as exc:  # a very long chain of operators
        raise QuerySyntaxError("query nested too deeply", 0, "flatten the groups or split the query",
                               text) from exc
    _check_limits(root, text)
    return Query(text, root)


@lru_cache(maxsize=4096)
def parse_query(text: str, aliases: Aliases | None = None) -> "Query":
    """Parse a query (cached per text and alias table).  ``aliases`` expands the words that are
    names of an alias group (``config/aliases.yaml``); None expands nothing.  Raises
    :class:`QuerySyntaxError` with position and hint."""
    return _parse_uncached(text, aliases or NO_ALIASES)
