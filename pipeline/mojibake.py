"""Mojibake: text that was UTF-8 read as cp1252/latin-1 (``Ð¯Ð½Ð´ÐµÐºÑ`` for ``Яндекс``,
``Putinâ€™s`` for ``Putin’s``), detected and repaired with ``ftfy`` (issue 18).

``ftfy.badness.is_bad`` spots the character sequences that mis-decoding produces and ordinary text
does not; only such text goes through ``ftfy.fix_encoding``, which undoes the mis-decoding and
touches nothing else (no quote or HTML-entity changes).  When bytes were lost on the way (cp1252
has no characters for 0x81, 0x8D, 0x8F, 0x90, 0x9D; a non-breaking space turned into a space), the
repair is partial and the text is still garbled: it is kept as repaired as it could be, and the
feed is flagged (a warning ``feeds check`` prints and the poll logs with the feed id).
"""

from __future__ import annotations

import re
from typing import Literal

import ftfy
from ftfy.badness import is_bad

Outcome = Literal["clean", "repaired", "garbled"]

# Text whose every character is ASCII, basic Russian Cyrillic (А-я, Ё, ё) or common typographic
# punctuation cannot be mojibake of the kinds ftfy repairs: UTF-8 read as cp1252/latin-1 leaves
# Latin-1 letters (Ã, Ð, â), read as cp1251 it leaves °, µ, ѕ, Ђ, џ ... for the vowels and most
# letters.  Such text (most Russian and English news) skips ftfy's badness search, a tenth of a
# millisecond per text; on the 11,089 non-ASCII texts of ../shared (feeds, news, eval) and generated
# mojibake in nine encodings, the skip never passed over a text that ftfy.badness.is_bad flags.
_NOT_PLAIN = re.compile("[^\x00-\x7f\u0410-\u044f\u0401\u0451\u00ab\u00bb\u00a0\u2013\u2014\u2026\u2116"
                        "\u2018\u2019\u201c-\u201e]")


def repair(text: str) -> tuple[str, Outcome]:
    """(text, outcome): ``clean`` text is returned unchanged; ``repaired`` text was mojibake and
    is now clean; ``garbled`` text was mojibake that could not be fully repaired."""
    if not text or text.isascii() or not _NOT_PLAIN.search(text) or not is_bad(text):
        return text, "clean"
    # a lone C1 control is not turned into the cp1252 character it would be (0x9B -> '›'): it is
    # an invisible character that normalize removes (strip_invisible), not mojibake to "repair"
    fixed = ftfy.fix_encoding(text, fix_c1_controls=False)
    if fixed == text:
        return text, "garbled"
    return fixed, "garbled" if is_bad(fixed) else "repaired"


def worst(outcomes: list[Outcome]) -> Outcome:
    if "garbled" in outcomes:
        return "garbled"
    return "repaired" if "repaired" in outcomes else "clean"
