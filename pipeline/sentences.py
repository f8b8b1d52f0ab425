"""Sentence splitting for news text, Russian-aware, dependency free.

``split_sentences(text)`` cuts after ``.``, ``!``, ``?``, ``…`` (and closing quotes
or brackets after them) when whitespace and a sentence start follow, and always at
line breaks.  It does *not* cut:

* after abbreviations: ``т.е.``, ``т. е.``, ``и т.д.``, ``г.``/``гг.``, ``ул.``,
  ``млн.``, ``руб.``, ``Mr.``, ``U.S.`` …;
* after initials: ``В. В. Путин``, ``Путин В.В. заявил``, ``J. R. R. Tolkien``;
* inside numbers and dates (``3.5``, ``12.03.2026``: no whitespace follows);
* when the next word starts with a lower-case letter (``и т. д. и т. п. в …``).

The splitter only decides where translation chunks *may* end; a wrong decision
costs a little translation quality, never text (every character of the input
ends up in exactly one sentence, up to whitespace).
"""

from __future__ import annotations

import re

# Lower-case abbreviations without their final period.  Multi-part ones are written
# without spaces; "т. е." is normalised to "т.е" before the lookup.
ABBREVIATIONS = frozenset("""
т.е т.д т.п т.к т.н т.ч т.о и.о в.о н.э до.н.э
г гг ул д им руб коп млн млрд трлн тыс см ст ч рис англ рус нем франц лат др пр проф акад
ген полк подполк генерал-лейт лейт кап мл ст.лейт обл р-н пос с стр кв пер пл просп наб напр
мин сек долл ок нач зам зав гос св корр ред изд вып прим прил табл гл п пп ср сб вс пн вт чт пт
янв фев февр мар апр авг сент сен окт нояб дек тел доц канд мр ж.д
mr mrs ms dr prof st jr sr inc ltd co corp vs gen col lt sgt rep sen gov jan feb mar apr jun jul
aug sep sept oct nov dec no fig approx dept est e.g i.e u.s u.k u.n a.m p.m
""".split())

# A candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace.
# Abbreviations that usually end a sentence when a capitalised word follows ("и т. д. Затем").
FINAL_ABBREVIATIONS = frozenset({"т.д", "т.п", "др", "пр", "etc"})

_BOUNDARY = re.compile(r"[.!?…]+[»\"”’')\]]*\s+")
# Sentence start: upper-case letter, digit, or an opening quote/bracket.
_STARTS = re.compile(r"[\"«„“'(\[\d]|[^\W\d_]", re.UNICODE)
_WORD_BEFORE = re.compile(r"(\S+)$")


def _abbreviation(prefix: str) -> str | None:
    """The abbreviation ``prefix`` (text up to, not including, the final period) ends in, if any."""
    m = _WORD_BEFORE.search(prefix)
    if not m:
        return None
    word = m.group(1).lstrip("«\"„“'([").lower()
    if not word:
        return None
    # "т. е." / "и т. д." written with spaces: look one word further back
    tail = prefix[: m.start()].rstrip()
    if len(word) == 1 and tail.endswith("."):
        m2 = _WORD_BEFORE.search(tail[:-1])
        if m2 and f"{m2.group(1).lower()}.{word}" in ABBREVIATIONS:
            return f"{m2.group(1).lower()}.{word}"
    if word in ABBREVIATIONS:
        return word
    parts = [p for p in word.split(".") if p]
    # initials and single-letter abbreviations: "В", "В.В", "J.R.R"
    if parts and all(len(p) == 1 and p.isalpha() for p in parts):
        return word
    return None


def _split_line(line: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(line):
        end = m.end()
        if end >= len(line):
            break
        nxt = line[end]
        if not _STARTS.match(nxt) or (nxt.isalpha() and not nxt.isupper()):
            continue
        punct = m.group(0).rstrip()
        if punct.startswith(".") and set(punct.rstrip("»\"”’')]")) == {"."} and len(punct.rstrip("»\"”’')]")) == 1:
            # a single period: abbreviation or initial?
            abbr = _abbreviation(line[start: m.start()])
            if abbr is not None and not (abbr in FINAL_ABBREVIATIONS and nxt.isupper()):
                continue
        sentence = line[start: m.start() + len(punct)].strip()
        if sentence:
            out.append(sentence)
        start = end
    rest = line[start:].strip()
    if rest:
        out.append(rest)
    return out


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, whitespace-trimmed; empty input gives []."""
    out: list[str] = []
    for line in re.split(r"\s*[\r\n]+\s*", text or ""):
        line = re.sub(r"[ \t\f\v\u00a0]+", " ", line).strip()
        if line:
            out.extend(_split_line(line))
    return out
