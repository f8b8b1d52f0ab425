"""``mediamon serve``: the search page (pipeline/web) on a local port."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import DataDirOpt, build_settings, cli_errors, config_dir_option, err_console, setup_logging


ServeConfigDirOpt = config_dir_option("topics.yaml, alerts.yaml, aliases.yaml, feeds.yaml")


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port (0: any free port)."),
    allow_remote: bool = typer.Option(False, "--allow-remote",
                                      help="Allow a non-loopback --host; requires MEDIAMON_WEB_TOKEN."),
    config_dir: Optional[Path] = ServeConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
) -> None:
    """Serve the search page over the embedded store: search, article, topic and alert pages.

    Binds to 127.0.0.1 by default.  Stored text is hostile input, so binding to any other address
    needs --allow-remote and a token in MEDIAMON_WEB_TOKEN (sent as the HTTP Basic password or
    'Authorization: Bearer').

    Example: mediamon serve --port 8080, then open http://127.0.0.1:8080/
    """
    import uvicorn

    from ..web.app import create_app, is_loopback

    setup_logging(verbose)
    with cli_errors():
        settings = build_settings(config_dir=config_dir, data_dir=data_dir)
        token = None
        if not is_loopback(host):
            if not allow_remote:
                err_console.print(f"refusing to bind {host}: not a loopback address; add --allow-remote "
                                  "and set MEDIAMON_WEB_TOKEN", highlight=False)
                raise typer.Exit(2)
            if not settings.web_token or len(settings.web_token) < 16:
                err_console.print("--allow-remote needs MEDIAMON_WEB_TOKEN (at least 16 characters)",
                                  highlight=False)
                raise typer.Exit(2)
            token = settings.web_token
        app = create_app(settings, token=token)
    err_console.print(f"mediamon: serving http://{host if ':' not in host else f'[{host}]'}:{port}/", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning" if verbose == 0 else "info",
                server_header=False, proxy_headers=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
