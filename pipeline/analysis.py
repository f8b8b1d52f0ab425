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

Lemmas (dictionary forms) are a second channel for Cyrillic text, next to the stems: Snowball
stems Russian proper names inconsistently (``Беларусь`` → ``белар``, ``Беларуси`` → ``беларус``),
a morphological dictionary does not (both → ``беларусь``).  :func:`lemma` is a pure function of
one folded token, so a query word and a text word meet whatever the article's language:

* a token with a Ukrainian-only letter (і ї є ґ) goes to pymorphy3's Ukrainian dictionary, any
  other Cyrillic token to the Russian one; the most probable parse's normal form is the lemma;
  a word the dictionary does not know is its own lemma (no guessing from endings: slow, and often
  wrong for names; its Snowball stem still matches its forms);
* a token without Cyrillic letters has no lemma channel (the English stem serves it).

A text field gets a lemma channel only when it contains a Cyrillic letter
(:func:`analyse_lemmas`): one lemma per token, aligned with the tokens, Latin tokens and numbers
kept as they are, so phrases and proximity work on lemmas as on stems.  Lemmas are cached per
word form; a batch of Russian news meets a few thousand distinct forms.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

import Stemmer

TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)
_CYRILLIC_RE = re.compile(r"[\u0400-\u04ff]")

# Separates the original text from the English text inside one indexed column,
# so that a phrase cannot match across the boundary.
FIELD_GAP = "zzzmediamongapzzz"

_UK_ONLY_RE = re.compile(r"[іїєґ]")

_ru = Stemmer.Stemmer("russian")
_en = Stemmer.Stemmer("english")


def has_cyrillic(text: str | None) -> bool:
    return bool(text) and _CYRILLIC_RE.search(text) is not None  # type: ignore[arg-type]


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
    out: list[str | None] = list(map(_STEMS.get, tokens))
    if None in out:
        if len(_STEMS) > _STEMS_MAX:
            _STEMS.clear()
        for i, s in enumerate(out):
            if s is None:
                out[i] = _STEMS[tokens[i]] = stem(tokens[i])
    return out  # type: ignore[return-value]  # no None left


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
    _LEMMATISED.clear()


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


# --- lemmas ---------------------------------------------------------------------------------------

_MORPH: dict[str, object] = {}
_morph_lock = threading.Lock()


def _morph(lang: str):
    """The pymorphy3 analyzer for ``ru`` or ``uk``, loaded once per process (~15 MB, 0.1 s)."""
    m = _MORPH.get(lang)
    if m is None:
        with _morph_lock:
            m = _MORPH.get(lang)
            if m is None:
                import pymorphy3
                from pymorphy3 import units

                # dictionary words only: no guessing from endings (slow, and wrong for names;
                # the stems serve unknown words)
                m = _MORPH[lang] = pymorphy3.MorphAnalyzer(lang=lang, units=[units.DictionaryAnalyzer()])
    return m


# folded token -> lemma; a plain dict (the hot path is a lookup), cleared when it outgrows the bound
_LEMMAS: dict[str, str] = {}
_LEMMAS_MAX = 300_000


def lemma(token: str) -> str:
    """Dictionary form of one folded token (lowercase, ё→е); the token itself when it has no
    Cyrillic letter."""
    out = _LEMMAS.get(token)
    if out is None:
        if _CYRILLIC_RE.search(token) is None:
            return token
        morph = _morph("uk" if _UK_ONLY_RE.search(token) else "ru")
        parses = morph.parse(token)
        out = fold(parses[0].normal_form) if parses else token
        if len(_LEMMAS) >= _LEMMAS_MAX:
            _LEMMAS.clear()
        _LEMMAS[token] = out
    return out


def lemmas(tokens: list[str] | tuple[str, ...]) -> list[str]:
    get = _LEMMAS.get
    out = list(map(get, tokens))
    if None in out:
        for i, v in enumerate(out):
            if v is None:
                out[i] = lemma(tokens[i])
    return out  # type: ignore[return-value]


# text -> its lemma channel, reused like _ANALYSED (emptied by forget())
_LEMMATISED: dict[str, list[str]] = {}


def analyse_lemmas(text: str | None) -> list[str]:
    """The lemma channel of ``text``: one lemma per token of :func:`analyse`, or ``[]`` when the
    text has no Cyrillic letter (then the stems are its only channel).  Shared: do not modify."""
    if not text:
        return []
    hit = _LEMMATISED.get(text)
    if hit is None:
        hit = lemmas(analyse(text)[0]) if _CYRILLIC_RE.search(text) else []
        if len(_LEMMATISED) >= _ANALYSED_MAX:
            _LEMMATISED.clear()
        _LEMMATISED[text] = hit
    return hit


def token_spans(text: str | None) -> list[tuple[int, int, str]]:
    """(start, end, folded token) over the original string, for highlighting matched terms."""
    if not text:
        return []
    f = _fold_token
    return [(m.start(), m.end(), f(m.group())) for m in TOKEN_RE.finditer(text)]


# fold() of one token, cached: highlighting a page of results meets the same few thousand words
_fold_token = lru_cache(maxsize=100_000)(fold)
