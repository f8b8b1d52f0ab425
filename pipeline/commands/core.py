"""Core commands: run, search, feeds list/check, stats."""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..exitcodes import ALL_FEEDS_FAILED, OK
from ..fetch import redact_url
from ..models import to_iso
from ..store import SearchRequest, open_existing_store
from ._common import (DataDirOpt, build_settings, cli_errors, config_dir_option, console, err_console, parse_since,
                      require_utf8, setup_logging)
from ._filters import check_window, explain_empty
from ._progress import run_with_progress
from ._runsummary import deferred_message, print_run_summary, run_exit_code

feeds_app = typer.Typer(help="Inspect configured feeds.\n\nExample: mediamon feeds list", no_args_is_help=True)

ConfigDirOpt = config_dir_option()
SearchConfigDirOpt = config_dir_option("aliases.yaml")


@contextlib.contextmanager
def _store_unreachable_exits(code: int) -> Iterator[None]:
    """``run``: a store that cannot be reached (locked, disk full, cluster down) exits ``code``."""
    from ..errors import StoreUnavailable

    try:
        yield
    except StoreUnavailable as exc:
        err_console.print(f"[bold red]store unreachable:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code) from exc


def run(
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the counters as one JSON object."),
    force: bool = typer.Option(False, "--force", help="Poll feeds that are backing off too."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More logging (-v info, -vv debug)."),
) -> None:
    """Run one monitoring cycle: poll feeds, store new items, translate, classify, alert.

    Exit codes: 0 the cycle completed (some feeds may have failed: the summary lists them first);
    3 every due feed failed, or the store is unreachable; 4 an alert email was deferred by the
    SMTP server (kept for the next run); 75 another cycle is running on the same store (its lock
    is held: try again later); 2 invalid configuration; 1 any other error.

    Example: mediamon run --json
    """
    from ..config import load_alerts, load_feeds, load_topics
    from ..cycle import run_cycle
    from ..lock import cycle_lock

    setup_logging(verbose)
    with cli_errors(), _store_unreachable_exits(ALL_FEEDS_FAILED), contextlib.ExitStack() as held:
        settings = build_settings(config_dir=config_dir, data_dir=data_dir)
        # the configuration first: a config error exits 2 before anything (the lock file, the data
        # directory) is created
        cycle = functools.partial(run_cycle, settings, force=force, feeds=load_feeds(settings.config_dir),
                                  topics=load_topics(settings.config_dir), alerts=load_alerts(settings.config_dir))
        held.enter_context(cycle_lock(settings))  # one cycle per store: a second run exits 75 (LOCKED)
        if json_out or not console.is_terminal:  # progress only on a terminal, never with --json
            report = cycle()
        else:
            report = run_with_progress(console, cycle)
    counters = report.counters_dict()
    if json_out:
        typer.echo(json.dumps(counters, sort_keys=False))
        deferred = deferred_message(settings, counters)
        if deferred:
            err_console.print(f"mail deferred: {escape(deferred)}", highlight=False)
    else:
        print_run_summary(console, err_console, report, settings)
    code = run_exit_code(counters)
    if code != OK:
        raise typer.Exit(code)


SEARCH_FORMATS = ("table", "json", "jsonl", "csv")
SEARCH_SORTS = ("newest", "oldest", "relevance")


def search(
    query: str = typer.Argument("", help="Query (Lucene syntax), e.g. 'Орешник OR Oreshnik', 'title:ракет*'."),
    topic: list[str] = typer.Option([], "--topic", "-t", help="Only items with this topic (repeatable)."),
    language: list[str] = typer.Option([], "--language", "-l", help="Only this detected language (repeatable)."),
    source: list[str] = typer.Option([], "--source", "-s", help="Only this source name (repeatable)."),
    since: Optional[str] = typer.Option(None, "--since", help="ISO date or duration: 7d, 24h, 30m."),
    until: Optional[str] = typer.Option(None, "--until", help="ISO date or duration (exclusive)."),
    include_undated: bool = typer.Option(False, "--include-undated", help="Keep items whose feed gave no date "
                                         "(date inferred: the time first seen) in a --since/--until window."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10_000, help="Maximum hits."),
    offset: int = typer.Option(0, "--offset", min=0, max=10_000, help="Skip this many hits (paging)."),
    sort: str = typer.Option("newest", "--sort", help="newest | oldest | relevance (BM25 in the embedded "
                             "store, _score in Elasticsearch; needs a query). Items with an inferred date "
                             "come after the dated ones."),
    oldest: bool = typer.Option(False, "--oldest", help="Same as --sort oldest."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json (one array) | jsonl | csv."),
    json_out: bool = typer.Option(False, "--json", help="Same as --format json: one JSON array of hits."),
    data_dir: Optional[Path] = DataDirOpt,
    config_dir: Optional[Path] = SearchConfigDirOpt,
) -> None:
    """Full-text search over stored items, Russian and English morphology aware.

    A word matches all its forms (stems, and dictionary forms for Russian/Ukrainian), and a name
    listed in aliases.yaml matches every name of its group; '=word' matches the word alone.
    Each hit has a snippet with the matched words marked; `mediamon show ID` opens one.

    Example: mediamon search 'Орешник OR Oreshnik' --since 7d --language ru

    Example: mediamon search 'Oreshnik' --sort relevance --offset 20 --format jsonl
    """
    from ..aliases import load_aliases
    from ..hits import HIT_COLUMNS, SNIPPET_WIDTH, hit_record, to_csv, to_jsonl
    from ..query import QuerySyntaxError, parse_query

    if sort not in SEARCH_SORTS:
        raise typer.BadParameter(f"must be one of {', '.join(SEARCH_SORTS)}, not {sort!r}", param_hint="--sort")
    if json_out:
        fmt = "json"
    if fmt not in SEARCH_FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(SEARCH_FORMATS)}, not {fmt!r}", param_hint="--format")
    if oldest:
        sort = "oldest"
    with cli_errors():
        for option, values in (("--topic", topic), ("--language", language), ("--source", source)):
            require_utf8(option, values)
        settings = build_settings(data_dir=data_dir, config_dir=config_dir)
        aliases = load_aliases(settings.config_dir)
        since_at, until_at = parse_since(since), parse_since(until)
        req = SearchRequest(query=query or None, topics=tuple(topic), languages=tuple(language),
                            sources=tuple(source), since=since_at, until=until_at,
                            sort=sort,  # type: ignore[arg-type]
                            limit=limit, offset=offset, aliases=aliases,
                            include_undated=include_undated or (since_at is None and until_at is None))
        check_window(req.since, req.until)
        with open_existing_store(settings) as store:
            try:
                parsed = parse_query(query, aliases) if query.strip() else None
                result = store.search(req)
            except QuerySyntaxError as exc:
                console.print(f"[red]query error:[/] {escape(str(exc))}", highlight=False)
                raise typer.Exit(2) from exc
            if result.total == 0:  # a filter that cannot match is named, with the valid values
                for w in explain_empty(store, settings, req):
                    err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    # on a terminal the snippet is cut to the title column (the first matched word stays visible)
    width = max(40, console.width - 46) if fmt == "table" else SNIPPET_WIDTH
    rows = [hit_record(a, parsed, width) for a in result.hits]
    if fmt == "json":
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    if fmt == "jsonl":
        typer.echo(to_jsonl(rows), nl=False)
        return
    if fmt == "csv":
        typer.echo(to_csv(rows, HIT_COLUMNS), nl=False)
        return
    if sort == "relevance" and parsed is None:
        console.print("[yellow]note:[/] --sort relevance needs a query; newest first", highlight=False)
    console.print(search_table(rows, result.total, offset))


def search_table(rows: list[dict[str, Any]], total: int, offset: int) -> Table:
    """The hits as a table that stays one or two lines a row at 80 columns: titles and snippets are cut
    with an ellipsis, not wrapped; the id column is what `mediamon show` takes."""
    from rich import box
    from rich.text import Text

    shown = f", showing {offset + 1}-{offset + len(rows)}" if rows and (offset or total > len(rows)) else ""
    inferred = any(r["date_inferred"] for r in rows)
    table = Table(title=f"{total} hit(s){shown}", caption="* date inferred: the feed gave none; time first seen"
                  if inferred else None, expand=True, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1))
    table.add_column("id", no_wrap=True, max_width=8, overflow="ellipsis", style="cyan")
    table.add_column("published", no_wrap=True, max_width=17, overflow="ellipsis")
    table.add_column("title / snippet", no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column("topics", no_wrap=True, max_width=12, overflow="ellipsis")
    for r in rows:
        pub = Text((r["published_at"] or "")[:16].replace("T", " ") + ("*" if r["date_inferred"] else ""),
                   style="yellow" if r["date_inferred"] else "")
        pub.append("\n" + (r["source"] or ""), style="dim")
        cell = Text(r["title"] or "", style="bold")
        if r["title_en"] and r["title_en"] != r["title"]:
            cell.append("\n" + r["title_en"], style="")
        if r["snippet"]:
            snip = Text(r["snippet"], style="dim")
            for s_, e_ in r["snippet_marks"]:
                snip.stylize("bold reverse", s_, e_)
            cell.append("\n")
            cell.append_text(snip)
        table.add_row(r["id"][:8], pub, cell, "\n".join(r["topics"]))
    return table


def stats(
    since: Optional[str] = typer.Option(None, "--since", help="ISO date or duration: 7d, 24h."),
    include_undated: bool = typer.Option(False, "--include-undated", help="Count items whose feed gave no "
                                         "date (date inferred: the time first seen) in the --since window."),
    json_out: bool = typer.Option(False, "--json", help="Print counts as JSON."),
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Counts of stored items by source, language, topic and day.  A --since window leaves out
    items whose feed gave no date (their date is the time first seen) unless --include-undated.

    Example: mediamon stats --since 7d
    """
    with cli_errors():
        settings = build_settings(data_dir=data_dir)
        with open_existing_store(settings) as store:
            since_at = parse_since(since)
            keep = include_undated or since_at is None
            st = store.stats(SearchRequest(since=since_at, include_undated=keep))
            # say how many undated items the window left out (never silently)
            left_out = 0 if keep else store.search(SearchRequest(since=since_at, limit=1)).total - st.total
    if json_out:
        typer.echo(json.dumps({**st.to_dict(), "undated_left_out": left_out}, ensure_ascii=False))
        return
    console.print(f"[bold]{st.total}[/] items")
    if left_out:
        console.print(f"[yellow]{left_out} item(s) whose feed gave no date left out of the window[/] "
                      "(their date is the time first seen; --include-undated counts them)", highlight=False)
    for title, counts in (("source", st.by_source), ("language", st.by_language), ("topic", st.by_topic),
                          ("day", st.by_day)):
        t = Table(title=f"by {title}")
        t.add_column(title)
        t.add_column("items", justify="right")
        for k, v in list(counts.items())[:50]:
            t.add_row(escape(k), str(v))
        console.print(t)


def _feed_states_if_stored(settings) -> dict:
    """Feed health from the store, or none before the first run: ``feeds list`` is read-only and
    lists the configured feeds even when no store exists yet (it never creates one)."""
    from ..errors import StoreMissing

    try:
        store = open_existing_store(settings)
    except StoreMissing as exc:
        err_console.print(f"[yellow]note:[/] {escape(str(exc))}; no feed has been polled yet", highlight=False)
        return {}
    with store:
        return store.get_feed_states()


@feeds_app.command("list")
def feeds_list(
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per feed."),
) -> None:
    """Health of every configured feed: last success, last error, items, backoff.

    Example: mediamon feeds list
    """
    from ..config import load_feeds

    with cli_errors():
        settings = build_settings(config_dir=config_dir, data_dir=data_dir)
        feeds = load_feeds(settings.config_dir)
        states = _feed_states_if_stored(settings)
    rows: list[dict[str, Any]] = []
    for f in feeds:
        s = states.get(f.id)
        rows.append({
            "id": f.id, "source": f.source, "language": f.language, "enabled": f.enabled,
            "url": redact_url(s.url if s else f.url),
            "last_success": to_iso(s.last_success_at) if s else None,
            "last_error": s.last_error if s else None,
            "last_error_at": to_iso(s.last_error_at) if s else None,
            "items": s.items_total if s else 0,
            "failures": s.consecutive_failures if s else 0,
            "backoff_until": to_iso(s.next_fetch_at) if s else None,
            "disabled": (s.disabled_reason if s and s.disabled else None),
        })
    if json_out:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
        return
    t = Table(title=f"{len(rows)} feeds")
    for col in ("id", "lang", "last success", "items", "failures", "backoff until", "last error"):
        t.add_column(col, overflow="fold")
    for r in rows:
        status = r["last_error"] or ""
        if r["disabled"]:
            status = f"DISABLED: {r['disabled']}"
        if not r["enabled"]:
            status = "disabled in config"
        t.add_row(r["id"], r["language"] or "", r["last_success"] or "never", str(r["items"]),
                  str(r["failures"]), r["backoff_until"] or "", escape(status))
    console.print(t)


@feeds_app.command("check")
def feeds_check(
    url: str = typer.Argument(..., help="Feed URL (http/https) or local file path."),
    language: Optional[str] = typer.Option(None, "--language", help="Declared language, e.g. ru."),
    json_out: bool = typer.Option(False, "--json", help="Print the parsed items as JSON."),
) -> None:
    """Fetch and parse one feed without storing anything; show items and problems.

    Example: mediamon feeds check https://www.themoscowtimes.com/rss/news
    """
    from ..poll import check_feed
    from ..undated import all_undated_warning

    with cli_errors():
        settings = build_settings()
        res = check_feed(url, settings, language=language)
    warnings = list(res.warnings)
    undated = all_undated_warning(res.articles)
    if undated:
        warnings.append(undated)
    if json_out:
        typer.echo(json.dumps({"url": redact_url(url), "status": res.fetch.status,
                               "error": str(res.error) if res.error else None, "warnings": warnings,
                               "all_undated": undated is not None,
                               "items": [a.to_dict() for a in res.articles]}, ensure_ascii=False))
    else:
        console.print(f"[bold]{escape(redact_url(url))}[/]: HTTP {res.fetch.status}, "
                      f"{len(res.articles)} item(s), {res.fetch.elapsed:.2f}s")
        if res.fetch.permanent_url:
            console.print(f"moved permanently to {escape(res.fetch.permanent_url)}")
        for w in warnings:
            console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
        if res.error:
            console.print(f"[red]error:[/] {escape(str(res.error))}", highlight=False)
        t = Table()
        for col in ("published (UTC)", "lang", "title", "link"):
            t.add_column(col, overflow="fold")
        for a in res.articles[:50]:
            pub = (to_iso(a.published_at) or "") + (" (inferred)" if a.date_inferred else "")
            t.add_row(pub, a.language or "", escape(a.title), escape(a.url or ""))
        console.print(t)
    if res.error:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("search")(search)
    app.command("stats")(stats)
    app.add_typer(feeds_app, name="feeds")
