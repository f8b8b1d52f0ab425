"""``mediamon alerts``: list rules, dry-run a rule over stored articles, send digests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..exitcodes import MAIL_DEFERRED
from ._common import DataDirOpt, build_settings, cli_errors, config_dir_option, console, err_console, setup_logging
from ._runsummary import deferred_message

alerts_app = typer.Typer(
    help="Email alert rules (config/alerts.yaml): list, test, send digests, mute recipients.\n\n"
    "Example: mediamon alerts test oreshnik-belarus --since 30d",
    no_args_is_help=True,
)

ConfigDirOpt = config_dir_option("alerts.yaml")


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _load(config_dir: Optional[Path], data_dir: Optional[Path]):
    from ..config import load_alerts

    settings = build_settings(config_dir=config_dir, data_dir=data_dir)
    return settings, load_alerts(settings.config_dir)


@alerts_app.command("list")
def list_rules(
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the rules and their queue counts as JSON."),
) -> None:
    """List alert rules with their delivery state: pending, failed (permanent SMTP error), sent.

    Example: mediamon alerts list
    """
    from ..errors import StoreMissing
    from ..store import open_existing_store

    with cli_errors():
        settings, rules = _load(config_dir, data_dir)
        try:  # read-only: before the first run there is no store, and no queue to count
            with open_existing_store(settings) as store:
                summary = store.alert_summary()
        except StoreMissing:
            summary = {}
    rows = []
    for r in rules:
        s = summary.get(r.id, {})
        rows.append({"id": r.id, "mode": r.mode, "recipients": list(r.recipients), "query": r.query,
                     "topics": list(r.topics or ()), "languages": list(r.languages or ()),
                     "throttle": r.throttle.model_dump() if r.throttle else None,
                     "pending": s.get("pending", 0), "failed": s.get("failed", 0), "sent": s.get("sent", 0),
                     "emails": s.get("emails", 0), "summarised": s.get("summarised", 0)})
    if json_out:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        console.print(f"no alert rules in {escape(str(settings.config_dir / 'alerts.yaml'))}")
        return
    table = Table(title=f"{len(rows)} alert rule(s)")
    for col in ("id", "mode", "recipients", "query", "throttle", "pending", "failed", "sent", "emails"):
        table.add_column(col, overflow="fold", justify="right" if col in ("pending", "failed", "sent", "emails") else "left")
    for r in rows:
        th = r["throttle"]
        table.add_row(r["id"], r["mode"], escape(", ".join(r["recipients"])), escape(_short(r["query"])),
                      f"{th['max_emails']}/{int(th['per_seconds'])}s" if th else "-", str(r["pending"]),
                      f"[red]{r['failed']}[/]" if r["failed"] else "0", str(r["sent"]), str(r["emails"]))
    console.print(table)
    if any(r["failed"] for r in rows):
        console.print("Failed items are not retried automatically; after fixing the cause run "
                      "[bold]mediamon alerts retry RULE[/].")


@alerts_app.command("test")
def test(
    rule_id: str = typer.Argument(..., metavar="RULE", help="Rule id from alerts.yaml."),
    since: Optional[str] = typer.Option("7d", "--since", help="Only articles published since (7d, 24h, ISO date); "
                                        "'all' for everything."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000, help="Matches to show."),
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print matches as a JSON array."),
) -> None:
    """Dry run: which stored articles would RULE match, and with which terms.  Nothing is sent or queued.

    Example: mediamon alerts test oreshnik-belarus --since 30d
    """
    from ..alerts import test_rule
    from ..models import to_iso
    from ..store import open_existing_store
    from ._common import parse_since

    with cli_errors():
        settings, rules = _load(config_dir, data_dir)
        rule = next((r for r in rules if r.id == rule_id), None)
        if rule is None:
            known = ", ".join(r.id for r in rules) or "none"
            console.print(f"[red]no alert rule {escape(rule_id)!r}[/] (rules: {escape(known)})")
            raise typer.Exit(2)
        since_dt = None if (since or "").lower() == "all" else parse_since(since)
        with open_existing_store(settings) as store:  # read-only: never creates a store
            hits, total = test_rule(rule, store, since=since_dt, limit=limit)
    if json_out:
        typer.echo(json.dumps([{"id": h.article.id, "title": h.article.title, "title_en": h.article.title_en,
                                "source": h.article.source, "published_at": to_iso(h.article.published_at),
                                "url": h.article.url, "terms": h.terms, "already_sent": h.already_sent}
                               for h in hits], ensure_ascii=False))
        return
    table = Table(title=f"rule {escape(rule.id)} ({rule.mode}): {total} match(es)"
                  + (f", showing {len(hits)}" if total > len(hits) else "") + " — dry run, nothing sent")
    table.add_column("published (UTC)", no_wrap=True)
    table.add_column("source")
    table.add_column("title", overflow="fold")
    table.add_column("matched terms", overflow="fold")
    table.add_column("sent", justify="center")
    for h in hits:
        a = h.article
        title = escape(a.title) + (f"\n[dim]{escape(a.title_en)}[/]" if a.title_en and a.title_en != a.title else "")
        table.add_row(a.published_at.strftime("%Y-%m-%d %H:%M"), escape(a.source), title,
                      escape(", ".join(h.terms)), "yes" if h.already_sent else "")
    console.print(table)


@alerts_app.command("digest")
def digest(
    dry_run: bool = typer.Option(False, "--dry-run", help="Render and show what would be sent; send and mark nothing."),
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the counters as one JSON object."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
) -> None:
    """Send the digest emails: one per digest rule with everything queued since the last digest,
    grouped by topic, newest first.  Uses SMTP when MEDIAMON_SMTP_HOST is set, else writes .eml
    files to DATA_DIR/outbox.  Exit code 1 when an email failed permanently, 4 when the SMTP
    server deferred one (it stays queued for the next digest).

    Example: mediamon alerts digest --dry-run
    """
    from ..alerts import RuleOutcome, send_digest
    from ..models import utcnow
    from ..store import open_store

    setup_logging(verbose)
    outcomes: list[RuleOutcome] = []
    with cli_errors():
        settings, rules = _load(config_dir, data_dir)
        with open_store(settings) as store:
            counts = send_digest(settings=settings, store=store, rules=rules, now=utcnow(), dry_run=dry_run,
                                 on_outcome=outcomes.append)
    if json_out:
        typer.echo(json.dumps(counts))
    else:
        table = Table(title="mediamon alerts digest" + (" (dry run: nothing sent)" if dry_run else ""))
        for col in ("rule", "status", "items", "articles", "queued for later", "subject / error"):
            table.add_column(col, overflow="fold")
        for o in outcomes:
            detail = o.error or (str(o.message["Subject"]) if o.message is not None else "")
            table.add_row(o.rule_id, o.status, str(o.stories), str(o.articles), str(o.more), escape(detail))
        if not outcomes:
            console.print("no digest rules")
        else:
            console.print(table)
    if counts.get("alert_emails_failed") or counts.get("alert_errors"):
        raise typer.Exit(1)
    deferred = deferred_message(settings, counts)
    if deferred:
        err_console.print(f"[bold yellow]mail deferred:[/] {escape(deferred)}", highlight=False)
        raise typer.Exit(MAIL_DEFERRED)


@alerts_app.command("retry")
def retry(
    rule_id: str = typer.Argument(..., metavar="RULE", help="Rule id whose failed items go back to pending."),
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Put items that failed permanently (5xx) back in the queue, after fixing the cause
    (recipient address, sender, credentials).  They go out with the next email of the rule.

    Example: mediamon alerts retry oreshnik-belarus
    """
    from ..store import open_store

    with cli_errors():
        settings, _rules = _load(config_dir, data_dir)
        with open_store(settings) as store:
            n = store.alert_retry_failed(rule_id)
    console.print(f"{n} item(s) of rule {escape(rule_id)} queued again")


def _rule_or_exit(rule: Optional[str], rules) -> None:
    if rule is not None and rule not in {r.id for r in rules}:
        known = ", ".join(r.id for r in rules) or "none"
        console.print(f"[red]no alert rule {escape(rule)!r}[/] (rules: {escape(known)})", highlight=False)
        raise typer.Exit(2)


_EMAIL_RE = r"[^@\s,;<>]+@[^@\s,;<>]+"


@alerts_app.command("mute")
def mute_cmd(
    email: str = typer.Argument(..., metavar="EMAIL", help="The address that asked to stop receiving alerts."),
    rule: Optional[str] = typer.Option(None, "--rule", "-r", help="Only this rule (default: every rule)."),
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Stop mailing EMAIL (for one rule or all): what a reply "unsubscribe RULE" asks for.
    Delivery leaves muted addresses out of every email (SMTP and outbox); the list is
    DATA_DIR/mutes.json.

    Example: mediamon alerts mute analyst@example.org --rule oreshnik-belarus
    """
    import re

    from ..alerts.mutes import mute, mutes_path

    with cli_errors():
        if not re.fullmatch(_EMAIL_RE, email.strip()):
            raise typer.BadParameter(f"not an email address: {email!r}", param_hint="EMAIL")
        settings, rules = _load(config_dir, data_dir)
        _rule_or_exit(rule, rules)
        added = mute(settings, email, rule)
    scope = f"rule {rule}" if rule else "every rule"
    console.print(f"{escape(email)} {'muted' if added else 'was already muted'} for {escape(scope)} "
                  f"({escape(str(mutes_path(settings)))})", highlight=False)


@alerts_app.command("unmute")
def unmute_cmd(
    email: str = typer.Argument(..., metavar="EMAIL", help="The address to mail again."),
    rule: Optional[str] = typer.Option(None, "--rule", "-r", help="Only this rule's mute (default: all of them)."),
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Mail EMAIL again (remove its mutes).  Exit 1 when it was not muted.

    Example: mediamon alerts unmute analyst@example.org
    """
    from ..alerts.mutes import unmute

    with cli_errors():
        settings, _rules = _load(config_dir, data_dir)
        n = unmute(settings, email, rule)
    if not n:
        console.print(f"{escape(email)} was not muted" + (f" for rule {escape(rule)}" if rule else ""), highlight=False)
        raise typer.Exit(1)
    console.print(f"{escape(email)} unmuted ({n} mute(s) removed)", highlight=False)


@alerts_app.command("mutes")
def mutes_cmd(
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the mute list as a JSON array."),
) -> None:
    """List muted addresses (mediamon alerts mute).

    Example: mediamon alerts mutes
    """
    from ..alerts.mutes import load_mutes

    with cli_errors():
        settings, _rules = _load(config_dir, data_dir)
        mutes = load_mutes(settings)
    if json_out:
        typer.echo(json.dumps([m.to_dict() for m in mutes], ensure_ascii=False))
        return
    if not mutes:
        console.print("no muted addresses")
        return
    table = Table(title=f"{len(mutes)} mute(s)")
    for col in ("email", "rule", "since"):
        table.add_column(col)
    for m in mutes:
        table.add_row(escape(m.email), escape(m.rule or "(every rule)"), m.at or "")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
