"""``mediamon models convert``: a transformers Marian model → a CTranslate2 directory."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._common import build_settings, cli_errors, setup_logging

models_app = typer.Typer(help="Translation model tools.\n\nExample: mediamon models convert "
                              "Helsinki-NLP/opus-mt-ru-en ./models/opus-mt-ru-en-ct2", no_args_is_help=True)


@models_app.command("convert")
def convert(
    src: str = typer.Argument(..., help="transformers model directory (save_pretrained) or hub id."),
    out: Path = typer.Argument(..., help="Output directory for the CTranslate2 model."),
    quantization: str = typer.Option("int8", "--quantization", "-q",
                                     help="Weights stored as int8 (default), int8_float32, float16 or float32."),
    force: bool = typer.Option(False, "--force", help="Overwrite a non-empty output directory."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
) -> None:
    """Convert a MarianMT (opus-mt) model to CTranslate2 for MEDIAMON_TRANSLATION_BACKEND=ctranslate2.

    Needs torch and transformers once, for the conversion; the converted directory (model.bin,
    SentencePiece files, mediamon.json) runs with ctranslate2 + sentencepiece only. Prints the
    metadata as JSON.

    Example: mediamon models convert Helsinki-NLP/opus-mt-ru-en ./models/opus-mt-ru-en-ct2 &&
    MEDIAMON_TRANSLATION_BACKEND=ctranslate2 MEDIAMON_TRANSLATION_MODEL=./models/opus-mt-ru-en-ct2 mediamon run
    """
    from ..translate.ctranslate2 import convert_model

    setup_logging(verbose)
    with cli_errors():
        build_settings()  # validate the environment like every command
        meta = convert_model(src, out, quantization=quantization, force=force)
        typer.echo(json.dumps({"output": str(out.resolve()), **meta}, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
