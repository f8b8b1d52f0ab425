"""``mediamon secrets check|generate``: the docker compose stack's secrets (pipeline.stack_secrets)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from .. import stack_secrets


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Secrets of the docker compose stack (.env): check their form, generate fresh ones.",
                      no_args_is_help=True)
    app.add_typer(sub, name="secrets")

    @sub.command("check")
    def check_cmd(
        env_file: Optional[Path] = typer.Option(None, "--env-file", help="Check this file (e.g. .env) instead "
                                                "of the environment."),
    ) -> None:
        """Exit 1 with one line per missing or malformed secret (the compose stack's secrets-check service).

        Example: mediamon secrets check --env-file .env
        """
        if env_file is not None:
            from dotenv import dotenv_values

            if not env_file.is_file():
                typer.echo(f"{env_file}: no such file (cp .env.example .env)", err=True)
                raise typer.Exit(1)
            env = dict(dotenv_values(env_file))
        else:
            env = dict(os.environ)
        problems = stack_secrets.check(env)
        for line in problems:
            typer.echo(line, err=True)
        if problems:
            raise typer.Exit(1)
        typer.echo(f"secrets: all {len(stack_secrets.SECRETS)} present and well-formed")

    @sub.command("generate")
    def generate_cmd(
        only: Optional[List[str]] = typer.Option(None, "--only", help="Just this variable (repeatable)."),
    ) -> None:
        """Print NAME=value lines with fresh secrets, to paste into .env.

        Example: mediamon secrets generate >> .env   (or --only AIRFLOW_FERNET_KEY)
        """
        unknown = [n for n in only or [] if n not in stack_secrets.BY_NAME]
        if unknown:
            typer.echo(f"unknown secret(s) {unknown}; known: {', '.join(stack_secrets.BY_NAME)}", err=True)
            raise typer.Exit(2)
        for line in stack_secrets.generate(list(only or [])):
            typer.echo(line)
