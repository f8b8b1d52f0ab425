"""``mediamon setup``: create the Elasticsearch indices and import the Kibana saved objects
(the work is done by ``pipeline.kibana``)."""

from __future__ import annotations

import typer

from ..kibana import run_setup
from ._common import build_settings, cli_errors, console, setup_logging


def register(app: typer.Typer) -> None:
    @app.command("setup")
    def setup_cmd(
        kibana: bool = typer.Option(True, "--kibana/--no-kibana", help="Import the Kibana saved objects too."),
        wait: float = typer.Option(180.0, "--wait", help="Seconds to wait for Kibana to come up."),
        verbose: int = typer.Option(0, "--verbose", "-v", count=True),
    ) -> None:
        """Create the Elasticsearch index template, indices and alias, and import the Kibana
        data views, per-topic saved searches and dashboard.  Safe to run again.

        Example: MEDIAMON_ELASTICSEARCH_URL=https://localhost:9200 MEDIAMON_ELASTICSEARCH_USERNAME=elastic
        MEDIAMON_ELASTICSEARCH_PASSWORD=... MEDIAMON_ELASTICSEARCH_CA_CERTS=certs/ca/ca.crt
        MEDIAMON_KIBANA_URL=http://localhost:5601 mediamon setup
        """
        setup_logging(verbose)
        with cli_errors():
            for line in run_setup(build_settings(), kibana=kibana, wait=wait):
                console.print(line, highlight=False)
