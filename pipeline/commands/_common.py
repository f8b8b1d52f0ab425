"""Helpers shared by the command modules: building Settings at the edge, error exits."""

from __future__ import annotations

import contextlib
import logging
import sys
from datetime import datetime
from typing import IO, Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape

from .. import exitcodes
from ..errors import ConfigError, MediamonError
from ..lock import Locked
from ..settings import Settings

console = Console()


def config_dir_option(files: str = "feeds.yaml, topics.yaml, alerts.yaml"):
    """The shared ``--config-dir`` option; ``files`` names what the command reads there."""
    return typer.Option(None, "--config-dir", help=f"Directory with {files} "
                        "(default: $MEDIAMON_CONFIG_DIR or ./config).")


DataDirOpt = typer.Option(None, "--data-dir", help="Where the embedded store and outbox live "
                          "(default: $MEDIAMON_DATA_DIR or ./data).")
err_console = Console(stderr=True)


def build_settings(**overrides) -> Settings:
    """Settings from the environment (MEDIAMON_*), with CLI overrides applied on top."""
    try:
        base = Settings()
    except Exception as exc:  # pydantic ValidationError: name the variable
        raise ConfigError(f"invalid MEDIAMON_* environment: {exc}") from exc
    clean = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=clean) if clean else base


def parse_since(value: str | None) -> datetime | None:
    """``--since`` / ``--until`` (``7d``, ``24h``, an ISO date) counted back from now; a bad value
    is a usage error (see ``pipeline.dates.parse_since``)."""
    from ..dates import parse_since as parse
    from ..models import utcnow

    try:
        return parse(value, utcnow())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def require_utf8(option: str, values: "list[str] | tuple[str, ...]") -> None:
    """A usage error when a value holds bytes that are not UTF-8 (Python hands a terminal's
    undecodable bytes over as lone surrogates, which SQLite and Elasticsearch cannot take)."""
    for value in values:
        if any("\ud800" <= ch <= "\udfff" for ch in value):
            raise typer.BadParameter(f"{ascii(value)} is not valid UTF-8 text; check the terminal's "
                                     "encoding and type it again", param_hint=option)


def setup_logging(verbose: int = 0) -> None:
    """Log to stderr at WARNING (-v INFO, -vv DEBUG), as JSON lines when ``MEDIAMON_LOG_JSON`` is true."""
    level = logging.WARNING - 10 * verbose
    from ..logs import configure_logging

    try:
        json_lines = Settings().log_json
    except Exception:  # noqa: BLE001 - an invalid MEDIAMON_* is reported by build_settings, with its name
        json_lines = False
    configure_logging(level, json_lines=json_lines)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn mediamon errors into one clear line on stderr and a non-zero exit code."""
    try:
        yield
    except ConfigError as exc:
        err_console.print(f"[bold red]configuration error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    except Locked as exc:  # another cycle holds the store's lock (pipeline/lock.py)
        err_console.print(f"[bold yellow]locked:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(exitcodes.LOCKED) from exc
    except MediamonError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc


def read_jsonl(path: str, on_error: Callable[[str], None] | None = None) -> Iterator[dict]:
    """Yield objects from a JSONL file path or '-' for stdin (see :func:`read_jsonl_numbered`)."""
    for _, obj in read_jsonl_numbered(path, on_error):
        yield obj


def read_jsonl_numbered(path: str, on_error: Callable[[str], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) from a JSONL file path or '-' for stdin.

    A bad line raises ConfigError with the line number, or, with ``on_error``, is reported to it
    (``"FILE: line N: ..."``) and skipped so the rest is read.  A file that cannot be opened is a
    usage error (exit 2) naming it, never a traceback.
    """
    import json

    if path == "-":
        fh: IO[str] = sys.stdin
    else:
        try:
            fh = open(path, encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read input file {path}: {exc.strerror or exc}",
                                     param_hint="FILE") from exc
    try:
        for n, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            problem = None
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = f"{path}: line {n}: invalid JSON: {exc.msg}"
            else:
                if not isinstance(obj, dict):
                    problem = f"{path}: line {n}: expected a JSON object"
            if problem is not None:
                if on_error is None:
                    raise ConfigError(problem)
                on_error(problem)
                continue
            yield n, obj
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8: {exc}") from exc
    finally:
        if fh is not sys.stdin:
            fh.close()
