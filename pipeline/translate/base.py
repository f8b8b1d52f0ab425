"""The backend-neutral part of translation: the ``Translator`` protocol and output checks.

A backend (transformers/MarianMT in ``marian.py``, CTranslate2 in ``ctranslate2.py``) only has to count source
tokens and translate a batch of texts that already fit its input limit.  Sentence
splitting, chunk packing, the cache, batching across articles, provenance and error
handling live in :mod:`pipeline.translate.stage` and are shared by every backend.
"""

from __future__ import annotations

import re
from typing import Protocol, Sequence, runtime_checkable

# Preferred chunk size in source tokens.  Marian (opus-mt) models are trained on
# sentence pairs and start dropping content on long multi-sentence inputs, so we pack
# sentences up to this size even when the model would accept more (512 for opus-mt).
DEFAULT_CHUNK_TOKENS = 128


@runtime_checkable
class Translator(Protocol):
    """One loaded translation model.

    ``model_id``   provenance written to ``Article.translation.model``
                   (``hub-id@revision`` or a local path; a backend may prefix itself).
    ``cache_id``   the model part of translation-cache keys: changes whenever the
                   output for the same input could change (weights, decoding settings).
    ``max_input_tokens``  content tokens one input may have (end-of-sequence excluded).
    ``chunk_tokens``      preferred packing size, ``<= max_input_tokens``.
    """

    model_id: str
    cache_id: str
    max_input_tokens: int
    chunk_tokens: int

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Source tokens of each text, without special tokens."""
        ...

    def translate_batch(self, texts: Sequence[str]) -> list[str]:
        """Translate texts that each fit ``max_input_tokens``; same order, same length.
        Raises on failure (the stage retries the batch one text at a time)."""
        ...


class DecodingSettings:
    """The limits and decoding settings both backends keep, set once by :meth:`_init_decoding`."""

    def _init_decoding(self, *, model_id: str, cache_id: str, device: str, max_input_tokens: int,
                       chunk_tokens: int, num_beams: int | None, beams_in_effect: int,
                       no_repeat_ngram_size: int, length_ratio: float, length_slack: int) -> None:
        self.model_id = model_id
        self.device = device
        self.max_input_tokens = max_input_tokens
        self.chunk_tokens = max(1, min(chunk_tokens, max_input_tokens))
        self.num_beams = num_beams
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.length_ratio = length_ratio
        self.length_slack = length_slack
        # decoding settings are part of the cache identity: other settings, other output
        self.cache_id = f"{cache_id}|b{beams_in_effect}|nr{no_repeat_ngram_size}"
        self.stats = {"batches": 0, "inputs": 0}


_WORD = re.compile(r"\w+", re.UNICODE)


def looks_suspicious(source: str, output: str) -> str | None:
    """Why a translation looks like the known Marian failure modes (looping, runaway or
    empty output), or None.  Purely textual, so a cached translation gets the same verdict."""
    src_words = _WORD.findall(source)
    words = [w.lower() for w in _WORD.findall(output)]
    if src_words and not words:
        return "empty output"
    if len(words) > 3 * len(src_words) + 8:
        return f"output much longer than input ({len(words)} vs {len(src_words)} words)"
    # the same 1..6-word n-gram three (single words: four) or more times in a row
    for n in range(1, 7):
        need = 4 if n == 1 else 3
        for i in range(0, len(words) - need * n + 1):
            gram = words[i:i + n]
            reps, j = 1, i + n
            while words[j:j + n] == gram:
                reps += 1
                j += n
            if reps >= need:
                return f"repeated {n}-gram {' '.join(gram)!r} x{reps}"
    if len(words) >= 20 and len(set(words)) / len(words) < 0.3:
        return "low lexical variety"
    return None
