"""The normalised query tree that all three executions work from, and the query's fields."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from ..errors import MediamonError


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
