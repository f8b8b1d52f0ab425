"""Split a text into translation chunks that fit a model's input limit.

Sentences (:func:`pipeline.sentences.split_sentences`) are packed greedily, in order,
into chunks of at most ``limit`` source tokens as measured by the model's own
tokenizer.  Nothing is dropped: a sentence longer than the limit is cut into pieces
(at clause punctuation, else between words, else inside a word) that are all
translated, and the result says ``truncated=True`` so the provenance records that a
sentence was translated in pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from ..sentences import split_sentences

CountTokens = Callable[[Sequence[str]], list[int]]

_CLAUSE = re.compile(r"(?<=[,;:])\s+|\s+(?=[—–]\s)")


@dataclass(frozen=True, slots=True)
class Chunks:
    texts: tuple[str, ...]
    truncated: bool  # some sentence exceeded the limit and was cut into pieces


def _cut(text: str, count: CountTokens, limit: int) -> list[tuple[str, int]]:
    """Pieces of one over-long text, each within ``limit``; in order, nothing lost."""
    for splitter in (_CLAUSE.split, str.split):
        parts = [p for p in splitter(text) if p]
        if len(parts) > 1:
            return _pack_pieces(parts, count, limit)[0]
    # one "word" longer than the limit (a URL, a run of digits): cut by characters
    out: list[tuple[str, int]] = []
    rest = text
    while rest:
        lo, hi = 1, len(rest)
        while lo < hi:  # longest prefix within the limit
            mid = (lo + hi + 1) // 2
            if count([rest[:mid]])[0] <= limit:
                lo = mid
            else:
                hi = mid - 1
        out.append((rest[:lo], count([rest[:lo]])[0]))
        rest = rest[lo:]
    return out


def _pack_pieces(parts: Sequence[str], count: CountTokens, limit: int) -> tuple[list[tuple[str, int]], bool]:
    """Greedy packing of ``parts`` (joined by spaces) into pieces within ``limit``."""
    counts = count(parts)
    pieces: list[tuple[str, int]] = []
    truncated = False
    for part, n in zip(parts, counts):
        if n <= limit:
            pieces.append((part, n))
        else:
            truncated = True
            pieces.extend(_cut(part, count, limit))
    packed: list[tuple[str, int]] = []
    cur: list[str] = []
    cur_n = 0
    for text, n in pieces:
        if cur and cur_n + n > limit:
            packed.append((" ".join(cur), cur_n))
            cur, cur_n = [], 0
        cur.append(text)
        cur_n += n
    if cur:
        packed.append((" ".join(cur), cur_n))
    return packed, truncated


def chunk_text(text: str, count: CountTokens, limit: int) -> Chunks:
    """Chunks of ``text`` for a model taking at most ``limit`` source tokens per input."""
    if limit < 1:
        raise ValueError("limit must be positive")
    sentences = split_sentences(text)
    if not sentences:
        return Chunks((), False)
    packed, truncated = _pack_pieces(sentences, count, limit)
    # Token counts of joined text can differ slightly from the sum of the parts
    # (tokenizer merges at the join): measure the real chunks and re-split any over.
    texts = [t for t, _ in packed]
    out: list[str] = []
    for t, n in zip(texts, count(texts)):
        if n <= limit:
            out.append(t)
        else:
            sub, _ = _pack_pieces(split_sentences(t) if len(split_sentences(t)) > 1 else t.split(),
                                  count, max(1, limit - 2))
            out.extend(s for s, _ in sub)
    return Chunks(tuple(out), truncated)
