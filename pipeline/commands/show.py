"""``mediamon show ID``: one stored article in full, and why it matched (pipeline/explain.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .. import exitcodes
from ..models import Article, to_iso
from ..store import open_existing_store
from ._common import DataDirOpt, build_settings, cli_errors, config_dir_option, console, err_console

ConfigDirOpt = config_dir_option("topics.yaml, alerts.yaml, aliases.yaml")

MARK_STYLE = "bold reverse"


def marked_text(text: str | None, terms: list[str], style: str = MARK_STYLE) -> Text:
    """``text`` (control characters removed) as rich Text with the matched ``terms`` styled."""
    from ..highlight import plain_marks

    clean, marks = plain_marks(text, terms)
    t = Text(clean)
    for s, e in marks:
        t.stylize(style, s, e)
    return t


def date_note(a: Article) -> str:
    """``published`` as shown by every command: the UTC time, and whether the feed gave it."""
    iso = to_iso(a.published_at) or ""
    return iso + (" (inferred: the feed gave no date; time first seen)" if a.date_inferred else " (from the feed)")


def _translation_note(a: Article) -> str:
    tr = a.translation
    parts: list[str] = [tr.status]
    if tr.model:
        parts.append(f"model {tr.model}")
    if tr.truncated:
        parts.append("truncated")
    if tr.suspicious:
        parts.append("suspicious output")
    if tr.error:
        parts.append(f"error: {tr.error}")
    return ", ".join(parts)


def _rule_json(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k != "explanation"}


def show(
    article_id: str = typer.Argument(..., help="Article id, or its first 6+ characters as in the `id` "
                                     "column of `mediamon search`."),
    query: Optional[str] = typer.Option(None, "--query", "-q",
                                        help="Also mark the words this search query matched."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object: the article's fields "
                                  "plus language_decided, matched_terms and rules."),
    data_dir: Optional[Path] = DataDirOpt,
    config_dir: Optional[Path] = ConfigDirOpt,
) -> None:
    """Show one stored article in full: original and English text side by side, source, feed,
    language (and how it was decided), dates (and whether the date was inferred), translation,
    and every topic and alert rule that matches, with the words that made it match.

    Example: mediamon show 3f1c0e5d2b7a9c41e8f06b2d5a7c9e1f30b4d6a8
    """
    from ..aliases import load_aliases
    from ..config import load_alerts, load_topics
    from ..explain import article_rules, language_decision
    from ..query import QuerySyntaxError, parse_query

    with cli_errors():
        settings = build_settings(data_dir=data_dir, config_dir=config_dir)
        aliases = load_aliases(settings.config_dir)
        topics = load_topics(settings.config_dir)
        alerts = load_alerts(settings.config_dir)
        search_q = None
        if query and query.strip():
            try:
                search_q = parse_query(query, aliases)
            except QuerySyntaxError as exc:
                err_console.print(f"[red]query error:[/] {escape(str(exc))}", highlight=False)
                raise typer.Exit(exitcodes.USAGE) from exc
        with open_existing_store(settings) as store:
            found = store.get_articles([article_id])
            if not found and len(article_id) >= 6:
                # the search table shows the first characters of the id: a unique prefix will do
                by_prefix = getattr(store, "ids_with_prefix", None)
                candidates = by_prefix(article_id, 2) if by_prefix else []
                if len(candidates) > 1:
                    err_console.print(f"[bold red]error:[/] id prefix {escape(article_id)} is ambiguous "
                                      f"({', '.join(candidates)}, …): give more of the id", soft_wrap=True,
                                      highlight=False)
                    raise typer.Exit(exitcodes.ERROR)
                found = store.get_articles(candidates)
            if not found:
                err_console.print(f"[bold red]error:[/] no stored article with id {escape(article_id)} "
                                  "(ids: `mediamon search --format jsonl`)", soft_wrap=True,
                                  highlight=False)
                raise typer.Exit(exitcodes.ERROR)
            a = found[0]
            rules = article_rules(a, topics, alerts, aliases,
                                  sent=lambda rule_id, aid: bool(store.alert_sent_ids(rule_id, [aid])))
    search_terms = search_q.matched_terms(a) if search_q else []
    rule_terms = [t for r in rules if r["matched_now"] for t in r["terms"]]
    terms = list(dict.fromkeys(search_terms + rule_terms))
    if json_out:
        out = a.to_dict()
        out.update(language_decided=language_decision(a), matched_terms=terms, search_terms=search_terms,
                   rules=[_rule_json(r) for r in rules])
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    if console.is_terminal:
        _print_rich(a, rules, terms, language_decision(a))
    else:
        _print_plain(a, rules, terms, language_decision(a))


def _meta(a: Article, lang_note: str) -> list[tuple[str, str]]:
    rows = [("id", a.id), ("source", a.source), ("feed", a.feed_id), ("url", a.url or ""),
            ("language", f"{a.language or 'unknown'} ({lang_note})"), ("published", date_note(a)),
            ("fetched", to_iso(a.fetched_at) or ""), ("translation", _translation_note(a)),
            ("topics", ", ".join(a.topics) or "none")]
    if a.authors:
        rows.append(("authors", ", ".join(a.authors)))
    if a.categories:
        rows.append(("categories", ", ".join(a.categories)))
    return rows


def _pairs(a: Article) -> list[tuple[str, str | None, str | None]]:
    out = []
    for label, orig, en in (("title", a.title, a.title_en), ("summary", a.summary, a.summary_en),
                            ("content", a.content, a.content_en)):
        if orig or en:
            out.append((label, orig, en if en != orig else None))
    return out


def _clause_line(c: dict[str, Any]) -> str:
    terms = ", ".join(c["terms"]) if c["terms"] else ""
    line = f"{c['clause']}"
    if terms:
        line += f" -> {terms}"
        if c["where"]:
            line += f" (in {', '.join(c['where'])})"
    how = c.get("matched_by") or ""
    via = "; ".join(c.get("via") or ())
    if how or via:
        line += f" [{('by ' + how + '; ') if how else ''}{via}]"
    return line


def _rule_head(r: dict[str, Any]) -> str:
    kind = "topic" if r["kind"] == "topic" else "alert rule"
    state = "matches" if r["matched_now"] else "query matches, but its language/topic filter excludes the item"
    gave_way = (f"the item's title reads as {r['yielded_to']} and not as {r['id']}, so it yields to "
                f"{r['yielded_to']} (yields_to)") if r.get("yielded_to") else ""
    if gave_way:
        state = f"query matches, but {gave_way}"
    if r["kind"] == "topic" and r["assigned"] and not r["matched_now"]:
        state = "assigned when classified" + (f" ({r['method']})" if r["method"] else "") + ", not matched now" \
            + (f": {gave_way}" if gave_way else "")
    extra = ""
    if r["kind"] == "alert":
        extra = f", {r['method']}" + (", already mailed" if r.get("sent") else "")
    return f"{kind} {r['id']} ({r['name']}): {state}{extra}"


def _print_plain(a: Article, rules: list[dict[str, Any]], terms: list[str], lang_note: str) -> None:
    out = []
    for k, v in _meta(a, lang_note):
        out.append(f"{k + ':':<13}{v}")
    for label, orig, en in _pairs(a):
        out.append("")
        out.append(f"--- {label} (original, {a.language or 'unknown'})")
        out.append(orig or "")
        if en:
            out.append(f"--- {label} (English)")
            out.append(en)
    out.append("")
    out.append(f"matched terms: {', '.join(terms) if terms else 'none'}")
    out.append(f"rules: {len(rules) if rules else 'none of the configured topics or alert rules matches'}")
    for r in rules:
        out.append(f"  {_rule_head(r)}")
        for c in r["clauses"]:
            out.append(f"    {_clause_line(c)}")
    typer.echo("\n".join(out))


def _print_rich(a: Article, rules: list[dict[str, Any]], terms: list[str], lang_note: str) -> None:
    console.print(marked_text(a.title, terms, "bold reverse"), style="bold")
    meta = Table.grid(padding=(0, 2))
    meta.add_column(style="dim", no_wrap=True)
    meta.add_column(overflow="fold")
    for k, v in _meta(a, lang_note):
        style = "yellow" if k == "published" and a.date_inferred else ""
        meta.add_row(k, Text(v, style=style))
    console.print(meta)
    side = Table(show_lines=True, expand=True)
    side.add_column("", style="dim", no_wrap=True)
    side.add_column(f"original ({a.language or 'unknown'})", ratio=1, overflow="fold")
    side.add_column("English", ratio=1, overflow="fold")
    for label, orig, en in _pairs(a):
        en_cell = marked_text(en, terms) if en else Text("(same as the original)" if a.language == "en"
                                                         else f"(no translation: {a.translation.status})",
                                                         style="dim")
        side.add_row(label, marked_text(orig, terms), en_cell)
    console.print(side)
    if not rules:
        console.print("[dim]None of the configured topics or alert rules matches this item.[/]")
    for r in rules:
        ok = "[green]✓[/]" if r["matched_now"] else "[yellow]~[/]"
        console.print(f"{ok} {escape(_rule_head(r))}", highlight=False)
        for c in r["clauses"]:
            console.print(f"    {escape(_clause_line(c))}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("show")(show)
