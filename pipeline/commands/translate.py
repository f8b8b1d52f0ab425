"""``mediamon translate``: JSONL in, English JSONL out, through the real translate stage."""

from __future__ import annotations

import contextlib
import json
from itertools import islice
from typing import Iterator, Optional

import typer

from ._common import build_settings, cli_errors, read_jsonl, setup_logging

BLOCK = 256  # input lines per translate_stage call (bounded memory, streaming output)


def _articles(objs: Iterator[dict], default_language: str, offset: int):
    from ..models import Article, utcnow

    now = utcnow()
    for n, obj in enumerate(objs, start=offset + 1):
        text_mode = "text" in obj and "title" not in obj and "summary" not in obj
        title = "" if text_mode else str(obj.get("title") or "")
        summary = str(obj.get("text") or "") if text_mode else str(obj.get("summary") or "")
        lang = str(obj.get("language") or default_language).lower()
        yield obj, text_mode, Article(
            id=str(obj.get("id", n)), feed_id="cli", url=None, canonical_url=None, guid=None, source="cli",
            feed_language=lang, language=lang, title=title, summary=summary, published_at=now, fetched_at=now,
            content_hash="")


def translate(
    file: str = typer.Argument("-", metavar="[FILE|-]", help="JSONL input file, or - for stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Hub id or local model directory (default: $MEDIAMON_TRANSLATION_MODEL)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1, max=512,
                                             help="Texts per generate call (default: $MEDIAMON_TRANSLATION_BATCH_SIZE)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: $MEDIAMON_TRANSLATION_DEVICE)."),
    language: str = typer.Option("ru", "--language", "-l", help="Source language of lines without a 'language'."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the store's translation cache."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
) -> None:
    """Translate JSONL to English with the configured model (quick checks, benchmarks).

    Input lines: {"id", "text"} or {"id", "title", "summary"}, optional "language" (default --language).

    Output lines: the same id, "text_en" (or "title_en" and "summary_en") and the provenance
    "translation" {status, model, truncated, suspicious, error}.

    Texts translated before come from the store's cache unless --no-cache. Exit status 1 when the model cannot be loaded.

    Example: echo '{"id": 1, "text": "Россия провела испытания ракеты."}' | mediamon translate -m ./opus-mt-ru-en -
    """
    from ..errors import ModelUnavailable
    from ..store import open_store
    from ..store.base import NullTranslationCache, TranslationCache
    from ..translate import get_translator, translate_stage

    setup_logging(verbose)
    with cli_errors():
        settings = build_settings(translation_model=model, translation_batch_size=batch_size,
                                  translation_device=device)
        if settings.translation_backend == "none":
            settings = settings.model_copy(update={"translation_backend": "transformers"})
        try:
            get_translator(settings, language)  # load once, fail fast: exit 1 with the reason
        except ModelUnavailable as exc:
            raise ModelUnavailable(f"{exc}; pass --model with a local model directory or a hub id "
                                   "reachable from here (network access to the Hugging Face Hub)") from exc
        # --no-cache: a cache that keeps nothing; else the store's cache (opened, and closed, here)
        with contextlib.ExitStack() as stack:
            cache: TranslationCache = (NullTranslationCache() if no_cache
                                       else stack.enter_context(open_store(settings)))
            objs = iter(read_jsonl(file))
            offset = 0
            while True:
                block = list(islice(objs, BLOCK))
                if not block:
                    break
                pairs = list(_articles(iter(block), language, offset))
                offset += len(block)
                # the stage takes the translator loaded above from the process-wide cache
                # (and per-language models from MEDIAMON_TRANSLATION_MODELS, if any)
                out, _ = translate_stage([a for _, _, a in pairs], settings=settings, store=cache)
                for (obj, text_mode, _), a in zip(pairs, out):
                    rec: dict = {"id": obj.get("id", a.id), "language": a.language}
                    if text_mode:
                        rec["text_en"] = a.summary_en
                    else:
                        rec["title_en"] = a.title_en
                        rec["summary_en"] = a.summary_en
                    rec["translation"] = a.translation.to_dict()
                    typer.echo(json.dumps(rec, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.command("translate")(translate)
