"""The ``mediamon`` command line: a thin layer over the library.

Commands live in ``pipeline/commands/<name>.py``; each module defines
``register(app: typer.Typer) -> None``.  Settings are built here, at the edge,
and passed down.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from .errors import ConfigError, MediamonError

app = typer.Typer(
    name="mediamon",
    help="Multilingual media monitoring: poll news feeds, translate, classify, search and alert.\n\n"
    "Example: mediamon run && mediamon search 'Орешник OR Oreshnik' --since 7d",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Each module registers its commands on ``app``.
COMMAND_MODULES = [
    "pipeline.commands.core",
    "pipeline.commands.translate",
    "pipeline.commands.alerts",
    "pipeline.commands.topics",
    "pipeline.commands.setup",
    "pipeline.commands.models",
    "pipeline.commands.secrets",
    "pipeline.commands.serve",      # the search page (pipeline/web)
    "pipeline.commands.show",       # one article in full (issue 18)
]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"mediamon: configuration error: {exc}", err=True)
        sys.exit(2)
    except MediamonError as exc:
        logging.getLogger("mediamon").debug("fatal", exc_info=True)
        typer.echo(f"mediamon: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:  # a file or directory problem no command anticipated: one line, not a traceback
        logging.getLogger("mediamon").debug("fatal", exc_info=True)
        typer.echo(f"mediamon: error: {exc}", err=True)
        sys.exit(1)


_register_all()


if __name__ == "__main__":
    main()
