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

Limits (checked by the parser, so every engine has the same): at most ``MAX_DEPTH`` (20) nested
AND/OR/NOT levels and ``MAX_PARENS`` (32) nested parentheses; at most ``MAX_CLAUSES`` (1,024) words,
phrases and filters after alias expansion, of which at most ``MAX_FILTERS`` (200) ``source:`` /
``language:`` / ``topic:`` filters (as Lucene's maxClauseCount; SQLite's FTS5 parser overflows near
40 levels, and its SQL expressions at 1,000 OR-ed filters).  A query past a limit is a
:class:`QuerySyntaxError`, like any other bad query.

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

from .compile_es import to_es
from .compile_fts import to_fts_rank, to_sqlite
from .evaluate import AnalyzedArticle, Explanation, Query, analyze_article
from .parse import MAX_CLAUSES, MAX_DEPTH, MAX_FILTERS, MAX_PARENS, parse_query
from .tree import FIELDS, LEMMA_FIELD, TEXT_FIELDS, QuerySyntaxError

__all__ = [
    "QuerySyntaxError", "Query", "parse_query", "to_sqlite", "to_fts_rank", "to_es", "AnalyzedArticle", "analyze_article",
    "Explanation", "TEXT_FIELDS", "FIELDS", "LEMMA_FIELD", "MAX_DEPTH", "MAX_PARENS", "MAX_CLAUSES", "MAX_FILTERS",
]
