"""Translation of non-English items to English (docs/DESIGN.md, "Data flow": translate).

Importing this package is cheap: torch and transformers load only when a model is
first needed (:func:`get_translator`).  Layout::

    base.py      Translator protocol (what a backend implements), output checks
    chunking.py  sentence packing into model-sized chunks, never dropping text
    marian.py    transformers backend (MarianMT / opus-mt, tokenizer + generate)
    stage.py     translate_stage: cache, batching, provenance, unavailable/failed handling

A second backend (CTranslate2) is a class with ``load(model, *, device, num_beams)``
returning a :class:`Translator`, registered in :data:`stage.BACKENDS`.
"""

from .base import DEFAULT_CHUNK_TOKENS, Translator, looks_suspicious
from .chunking import Chunks, chunk_text
from .stage import BACKENDS, clear_translator_cache, get_translator, model_for, text_key, translate_stage

__all__ = ["BACKENDS", "DEFAULT_CHUNK_TOKENS", "Chunks", "Translator", "chunk_text", "clear_translator_cache",
           "get_translator", "looks_suspicious", "model_for", "text_key", "translate_stage"]
