"""Language-aware text analysis shared by the query evaluator and the SQLite index.

One analyzer, used everywhere, so that the Python evaluator, the FTS5 index and
the query compiler agree on what a "term" is:

* tokens are maximal runs of letters and digits (``[^\\W_]+``), so ``S-400``
  is the two tokens ``s`` ``400`` (FTS5's ``unicode61`` tokenizer splits the
  same way);
* lowercase, ``ё`` → ``е``;
* stem: a token containing Cyrillic goes through the Russian Snowball stemmer,
  any other through the English one (PyStemmer).  ``Орешника`` → ``орешник``.

Raw (folded, unstemmed) tokens are kept too: trailing wildcards (``ракет*``)
apply to the unstemmed word.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer

TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)
_CYRILLIC_RE = re.compile(r"[\u0400-\u04ff]")

# Separates the original text from the English text inside one indexed column,
# so that a phrase cannot match across the boundary.
FIELD_GAP = "zzzmediamongapzzz"

_ru = Stemmer.Stemmer("russian")
_en = Stemmer.Stemmer("english")


def fold(text: str) -> str:
    """Lowercase, NFC, ё→е."""
    text = unicodedata.normalize("NFC", text).lower()
    return text.replace("ё", "е")


def tokenize(text: str | None) -> list[str]:
    """Folded, unstemmed tokens."""
    if not text:
        return []
    return TOKEN_RE.findall(fold(text))


@lru_cache(maxsize=200_000)
def stem(token: str) -> str:
    if _CYRILLIC_RE.search(token):
        return _ru.stemWord(token)
    return _en.stemWord(token)


# token -> stem for :func:`stems` (a plain dict lookup is ~4x cheaper than the lru_cache wrapper on
# the indexing and classification paths); cleared when it grows past the bound
_STEMS: dict[str, str] = {}
_STEMS_MAX = 200_000


def stems(tokens: list[str]) -> list[str]:
    out = list(map(_STEMS.get, tokens))
    if None in out:
        if len(_STEMS) > _STEMS_MAX:
            _STEMS.clear()
        for i, s in enumerate(out):
            if s is None:
                out[i] = _STEMS[tokens[i]] = stem(tokens[i])
    return out


# text -> (tokens, stems) of recently analysed texts.  A batch of articles is analysed three times
# in a row (topic rules, alert rules, the SQLite index), always the same str objects; the later
# passes then pay one dict lookup (the str caches its hash).  ~4.5 KB per text (the token strings):
# bounded by entries (two cycle batches of 1,000 articles x 6 text fields), cleared when full, and
# by run_cycle after each batch is stored (forget()).
_ANALYSED: dict[str, tuple[list[str], list[str]]] = {}
_ANALYSED_MAX = 12_000


def forget() -> None:
    """Drop the analyses kept for reuse (a batch was stored: nobody will ask for them again)."""
    _ANALYSED.clear()


def analyse(text: str | None) -> tuple[list[str], list[str]]:
    """(folded tokens, their stems) of ``text``; the lists are shared: do not modify them."""
    if not text:
        return [], []
    hit = _ANALYSED.get(text)
    if hit is None:
        tokens = tokenize(text)
        hit = (tokens, stems(tokens))
        if len(_ANALYSED) >= _ANALYSED_MAX:
            _ANALYSED.clear()
        _ANALYSED[text] = hit
    return hit


def token_spans(text: str | None) -> list[tuple[int, int, str]]:
    """(start, end, folded token) over the original string, for highlighting matched terms."""
    if not text:
        return []
    out = []
    for m in TOKEN_RE.finditer(text):
        out.append((m.start(), m.end(), fold(m.group())))
    return out
