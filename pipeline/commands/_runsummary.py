"""What ``mediamon run`` prints and exits with, decided from the cycle's report (issue 18).

Exit codes (``pipeline.exitcodes``; README "Exit codes"): ``ALL_FEEDS_FAILED`` when every due
feed failed, ``MAIL_DEFERRED`` when an email was deferred by the SMTP server (kept, retried by the
next run), else ``OK`` (some failed feeds are reported, not an exit code).  The summary leads with
the failures and shows only the counters that are not zero; ``--json`` prints them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import exitcodes
from ..settings import Settings

if TYPE_CHECKING:
    from ..cycle import CycleReport


def run_exit_code(counters: dict[str, int]) -> int:
    """ALL_FEEDS_FAILED when feeds were due and all of them failed; else MAIL_DEFERRED when an
    alert email was deferred; else OK."""
    due = counters.get("due", 0)
    if due > 0 and counters.get("failed_feeds", 0) >= due:
        return exitcodes.ALL_FEEDS_FAILED
    if counters.get("alert_emails_deferred", 0) > 0:
        return exitcodes.MAIL_DEFERRED
    return exitcodes.OK


def mail_server(settings: Settings) -> str:
    """Where mail goes, for messages: ``SMTP host:port`` or the outbox folder."""
    if settings.smtp_host:
        return f"SMTP server {settings.smtp_host}:{settings.smtp_port}"
    return f"outbox {settings.outbox_dir}"


def deferred_message(settings: Settings, counters: dict[str, int]) -> str | None:
    n = counters.get("alert_emails_deferred", 0)
    if not n:
        return None
    return (f"{n} alert email(s) deferred by the {mail_server(settings)}: kept and retried by the next "
            f"run (exit {exitcodes.MAIL_DEFERRED})")


def backlog_message(settings: Settings, counters: dict[str, int]) -> str | None:
    """The matches stored but not mailed because they are older than a rule's floor."""
    n = counters.get("alert_backlog_skipped", 0)
    if not n:
        return None
    hours = settings.alert_first_run_lookback / 3600
    return (f"{n} alert match(es) published before the rule's first run look-back ({hours:g} h, "
            "MEDIAMON_ALERT_FIRST_RUN_LOOKBACK) or its since: were stored and are searchable, but not mailed")


def print_run_summary(console: Console, err_console: Console, report: "CycleReport", settings: Settings) -> None:
    """Failures first (failed feeds, all feeds failed, deferred mail), then the non-zero counters."""
    counters = report.counters_dict()
    failed = [f for f in report.feeds if f.status == "failed"]
    if failed:
        ft = Table(title=f"{len(failed)} of {counters.get('due', len(failed))} due feed(s) failed",
                   show_header=True, title_style="bold red")
        ft.add_column("feed")
        ft.add_column("error", overflow="fold")
        for f in failed:
            ft.add_row(f.feed_id, escape(f.error or ""))
        console.print(ft)
    if run_exit_code(counters) == exitcodes.ALL_FEEDS_FAILED:
        err_console.print(f"[bold red]every due feed failed[/] (exit {exitcodes.ALL_FEEDS_FAILED})", highlight=False)
    deferred = deferred_message(settings, counters)
    if deferred:
        err_console.print(f"[bold yellow]mail deferred:[/] {escape(deferred)}", highlight=False)
    backlog = backlog_message(settings, counters)
    if backlog:
        console.print(f"[bold]not mailed:[/] {escape(backlog)}", highlight=False)
    shown = {k: v for k, v in counters.items() if v}
    table = Table(title="mediamon run", show_header=True,
                  caption="counters that are zero are not shown; --json prints all")
    table.add_column("counter")
    table.add_column("value", justify="right")
    for k, v in shown.items():
        table.add_row(k, str(v))
    console.print(table)
