"""The translate stage: non-English Articles → ``title_en`` / ``summary_en`` / ``content_en`` with provenance.

Per call:

1. English items get their own text and ``status="skipped"``; with
   ``translation_backend="none"`` (or an unknown source language) other items get
   ``status="skipped"`` with the reason in ``error`` (not retried).
2. Items are grouped by model (``settings.translation_models[lang]`` or
   ``settings.translation_model``); each model is loaded once per process
   (:func:`get_translator`).  A model that cannot be loaded gives its items
   ``status="unavailable"`` and exactly one log line; the store hands those items
   back through ``articles_pending_translation()`` so a later run translates them.
3. ``title``, ``summary`` and (when present) ``content`` are split into chunks that fit
   the model (:mod:`pipeline.translate.chunking`) and translated into ``title_en``,
   ``summary_en``, ``content_en``.
4. Cache: key ``(translator.cache_id, source language, sha1(chunk text))`` — per
   chunk, so a long text that was seen before, or shares chunks with one that was,
   is not translated again.  ``cache_id`` names the weights *and* the decoding
   settings.  Entries are written after every batch, so an interrupted run keeps
   its work.
5. Chunks still missing are de-duplicated, sorted by token length and translated in
   batches of ``settings.translation_batch_size`` across all articles.  A failing
   batch is retried one chunk at a time, so one bad input fails only its article
   (``status="failed"``).
6. Outputs are checked for Marian's looping failure (:func:`looks_suspicious`):
   ``suspicious=True`` and the reason in ``error`` (the status stays ``ok``).
"""

from __future__ import annotations

import hashlib
import importlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import ModelUnavailable, StoreError
from ..logs import get_logger, log
from ..models import Article, Translation
from ..settings import Settings
from ..store.base import TranslationCache
from .base import Translator, looks_suspicious
from .chunking import Chunks, chunk_text

logger = get_logger("translate")

# backend name -> (module, class with a ``load(model, *, device, num_beams)`` classmethod)
BACKENDS: dict[str, tuple[str, str]] = {
    "transformers": ("pipeline.translate.marian", "MarianTranslator"),
    "ctranslate2": ("pipeline.translate.ctranslate2", "CT2Translator"),
}


def _backend_options(settings: Settings) -> dict:
    """Extra ``load`` keyword arguments a backend takes from the settings."""
    if settings.translation_backend == "ctranslate2":
        return {"compute_type": getattr(settings, "translation_compute_type", "int8"),
                "threads": getattr(settings, "translation_threads", 0)}
    return {}


FIX_HINT = ("set MEDIAMON_TRANSLATION_MODEL to a local model directory (save_pretrained of a MarianMT model) "
            "or allow network access to the Hugging Face Hub; the items are stored with "
            "translation.status=unavailable and translated on the next run "
            "(MEDIAMON_TRANSLATION_BACKEND=none turns translation off)")

# a failed load is remembered this long, so one process does not retry a slow hub lookup per call
FAILURE_TTL_S = 300.0

_lock = threading.Lock()
_loaded: dict[tuple, Translator] = {}
_failed: dict[tuple, tuple[float, ModelUnavailable]] = {}

CacheKey = tuple[str, str, str]

# Article fields translated into ``<name>_en`` (content only when the feed gave a full text)
FIELDS = ("title", "summary", "content")


def model_for(settings: Settings, language: str | None) -> str:
    """The model configured for a source language (per-language override, else the default)."""
    if language and language in settings.translation_models:
        return settings.translation_models[language]
    return settings.translation_model


def _translator_key(settings: Settings, model: str) -> tuple:
    return (settings.translation_backend, model, settings.translation_device,
            getattr(settings, "translation_num_beams", None), tuple(sorted(_backend_options(settings).items())))


def _load(settings: Settings, model: str) -> Translator:
    key = _translator_key(settings, model)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        failed = _failed.get(key)
        if failed and time.monotonic() - failed[0] < FAILURE_TTL_S:
            raise failed[1]
        backend = settings.translation_backend
        try:
            if backend == "none":
                raise ModelUnavailable("translation is disabled (MEDIAMON_TRANSLATION_BACKEND=none)")
            if backend not in BACKENDS:
                raise ModelUnavailable(f"translation backend {backend!r} is not available in this version "
                                       f"(available: {', '.join(sorted(BACKENDS))})")
            module, cls = BACKENDS[backend]
            loader = getattr(importlib.import_module(module), cls)
            translator = loader.load(model, device=settings.translation_device,
                                     num_beams=getattr(settings, "translation_num_beams", None),
                                     **_backend_options(settings))
        except ModelUnavailable as exc:
            _failed[key] = (time.monotonic(), exc)
            raise
        _failed.pop(key, None)
        _loaded[key] = translator
        return translator


def get_translator(settings: Settings, language: str | None = None) -> Translator:
    """The process-wide translator for ``language`` (default model when None), loaded on first use.
    Raises ModelUnavailable (remembered for FAILURE_TTL_S) when it cannot be loaded."""
    return _load(settings, model_for(settings, language))


def clear_translator_cache() -> None:
    """Forget loaded models and remembered failures (tests; freeing memory)."""
    with _lock:
        _loaded.clear()
        _failed.clear()


def source_language(a: Article) -> str | None:
    lang = (a.language or a.feed_language or "").strip().lower()
    return lang.split("-")[0].split("_")[0] or None


def text_key(cache_id: str, language: str, text: str) -> CacheKey:
    return (cache_id, language, hashlib.sha1(text.encode("utf-8")).hexdigest())


@dataclass
class _Item:
    index: int
    article: Article
    language: str
    fields: dict[str, Chunks] = field(default_factory=dict)
    keys: dict[str, list[CacheKey]] = field(default_factory=dict)
    error: str | None = None


def _translate_group(items: list[_Item], tr: Translator, store, batch_size: int, counts: Counter,
                     ) -> dict[int, Article]:
    sources: dict[CacheKey, str] = {}
    for it in items:
        try:
            for name in FIELDS:
                ch = chunk_text(getattr(it.article, name) or "", tr.count_tokens, tr.chunk_tokens)
                it.fields[name] = ch
                it.keys[name] = [text_key(tr.cache_id, it.language, t) for t in ch.texts]
                sources.update(zip(it.keys[name], ch.texts))
        except Exception as exc:  # noqa: BLE001 - one bad item never fails the batch
            it.error = f"could not split text: {exc.__class__.__name__}: {exc}"

    results: dict[CacheKey, str] = {}
    try:
        results.update(store.get_translations(list(sources)))
    except StoreError as exc:
        log(logger, 30, "translation_cache_read_failed", error=str(exc))
    from_cache = set(results)
    todo = [k for k in sources if k not in results]
    errors: dict[CacheKey, str] = {}
    cache_ok = True

    if todo:
        lengths = dict(zip(todo, tr.count_tokens([sources[k] for k in todo])))
        todo.sort(key=lambda k: (lengths[k], k[2]))
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            done: dict[CacheKey, str] = {}
            try:
                outs = tr.translate_batch([sources[k] for k in batch])
                if len(outs) != len(batch):
                    raise RuntimeError(f"backend returned {len(outs)} outputs for {len(batch)} inputs")
                done.update(zip(batch, outs))
                counts["translation_batches"] += 1
            except Exception as exc:  # noqa: BLE001 - isolate the bad input
                log(logger, 30, "translation_batch_failed", size=len(batch), error=str(exc))
                for k in batch:
                    try:
                        done[k] = tr.translate_batch([sources[k]])[0]
                        counts["translation_batches"] += 1
                    except Exception as exc1:  # noqa: BLE001
                        errors[k] = f"{exc1.__class__.__name__}: {exc1}"[:500]
            results.update(done)
            counts["translation_chunks"] += len(done)
            if done and cache_ok:
                try:
                    store.put_translations(done.items())
                except StoreError as exc:
                    cache_ok = False
                    log(logger, 30, "translation_cache_write_failed", error=str(exc))
    counts["translation_chunks_cached"] += len(from_cache)

    out: dict[int, Article] = {}
    for it in items:
        a = it.article
        keys = [k for name in FIELDS for k in it.keys.get(name, [])]
        failed = it.error or next((errors[k] for k in keys if k in errors), None)
        if failed:
            counts["translation_failed"] += 1
            log(logger, 30, "translation_failed", feed_id=a.feed_id, article_id=a.id, error=failed)
            out[it.index] = a.replace(title_en=None, summary_en=None, content_en=None,
                                      translation=Translation(status="failed", model=tr.model_id, error=failed))
            continue
        texts = {name: " ".join(results[k] for k in it.keys[name]).strip() for name in FIELDS}
        reason = next((r for k in keys if (r := looks_suspicious(sources[k], results[k]))), None)
        truncated = any(ch.truncated for ch in it.fields.values())
        counts["translation_cached" if keys and all(k in from_cache for k in keys) else "translated"] += 1
        if reason:
            counts["translation_suspicious"] += 1
        out[it.index] = a.replace(
            title_en=texts["title"], summary_en=texts["summary"],
            content_en=texts["content"] if a.content else a.content,
            translation=Translation(status="ok", model=tr.model_id, truncated=truncated,
                                    error=f"suspicious output: {reason}" if reason else None,
                                    suspicious=bool(reason)))
    return out


def translate_stage(articles: Sequence[Article], *, settings: Settings, store: TranslationCache,
                    translator: Translator | None = None) -> tuple[list[Article], dict[str, int]]:
    """Translate every non-English Article; see the module docstring.  Never raises for
    model or item problems: they end up in each Article's ``translation``."""
    counts: Counter = Counter()
    out: list[Article] = list(articles)
    groups: dict[str, list[_Item]] = {}
    for i, a in enumerate(articles):
        lang = source_language(a)
        if lang == "en":
            out[i] = a.replace(title_en=a.title, summary_en=a.summary, content_en=a.content,
                               translation=Translation(status="skipped"))
            counts["translation_skipped"] += 1
        elif lang is None:
            out[i] = a.replace(title_en=None, summary_en=None, content_en=None,
                               translation=Translation(status="skipped", error="source language unknown"))
            counts["translation_skipped"] += 1
        elif translator is None and settings.translation_backend == "none":
            out[i] = a.replace(title_en=None, summary_en=None, content_en=None,
                               translation=Translation(status="skipped", error="translation disabled"))
            counts["translation_skipped"] += 1
        else:
            spec = "" if translator is not None else model_for(settings, lang)
            groups.setdefault(spec, []).append(_Item(i, a, lang))

    for spec, items in groups.items():
        tr = translator
        if tr is None:
            try:
                tr = _load(settings, spec)
            except ModelUnavailable as exc:
                # one error line per failed load: the failure is remembered (FAILURE_TTL_S) and
                # raised again for the next batches of the cycle, which log it at debug only
                again = getattr(exc, "mediamon_logged", False)
                log(logger, 10 if again else 40, "translation_unavailable", model=spec,
                    backend=settings.translation_backend, items=len(items), reason=str(exc),
                    **({"remembered": True} if again else {"fix": FIX_HINT}))
                exc.mediamon_logged = True  # type: ignore[attr-defined]
                for it in items:
                    out[it.index] = it.article.replace(
                        title_en=None, summary_en=None, content_en=None,
                        translation=Translation(status="unavailable", model=spec, error=str(exc)))
                counts["translation_unavailable"] += len(items)
                continue
        for idx, art in _translate_group(items, tr, store, settings.translation_batch_size, counts).items():
            out[idx] = art
    return out, dict(counts)
