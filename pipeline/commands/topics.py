"""Topic commands: classify, eval-topics, topics list, topics explain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ..config import TopicConfig, load_topics
from ..errors import ConfigError
from ..evaluation import evaluate, item_article, labelled_items
from ..models import Article, utcnow
from ..exitcodes import ERROR
from ._common import (DataDirOpt, build_settings, cli_errors, config_dir_option, console, err_console, read_jsonl,
                      read_jsonl_numbered)

topics_app = typer.Typer(
    help="Inspect topic definitions (config/topics.yaml).\n\nExample: mediamon topics explain nuclear_weapons "
         "--text 'Путин заявил о размещении ядерного оружия в Белоруссии'",
    no_args_is_help=True,
)

ConfigDirOpt = config_dir_option("topics.yaml")


def _load(config_dir: Optional[Path]) -> tuple[list[TopicConfig], object]:
    settings = build_settings(config_dir=config_dir)
    topics = load_topics(settings.config_dir)
    if not topics:
        raise ConfigError(f"{Path(settings.config_dir) / 'topics.yaml'}: no topics defined")
    return topics, settings


# --- classify -------------------------------------------------------------------------------------

def classify(
    file: str = typer.Argument("-", help="JSONL file of {id, title, summary, language?}; '-' reads stdin."),
    config_dir: Optional[Path] = ConfigDirOpt,
    rules_only: bool = typer.Option(False, "--rules-only", help="Ignore MEDIAMON_CLASSIFIER_MODEL."),
) -> None:
    """Classify items into topics; prints one JSON line {id, topics, topic_matches} per input line.

    A bad input line is reported on stderr with its number and skipped; the rest is classified and
    the command exits 1 at the end.

    Example: echo '{"id": "1", "title": "Орешник в Белоруссии", "summary": ""}' | mediamon classify -
    """
    from ..classify import classify_stage, load_classifier

    with cli_errors():
        topics, settings = _load(config_dir)
        classifier = None if rules_only else load_classifier(settings)
        batch: list[Article] = []

        def flush() -> None:
            out, _ = classify_stage(batch, topics, classifier)
            for a in out:
                typer.echo(json.dumps({"id": a.id, "topics": list(a.topics),
                                       "topic_matches": [m.to_dict() for m in a.topic_matches]},
                                      ensure_ascii=False))
            batch.clear()

        bad: list[str] = []

        def report(problem: str) -> None:
            bad.append(problem)
            err_console.print(f"[red]skipped:[/] {escape(problem)}", highlight=False)

        now = utcnow()
        for n, obj in read_jsonl_numbered(file, on_error=report):
            try:
                batch.append(item_article(obj, n, file, now=now))
            except ConfigError as exc:
                report(str(exc))
                continue
            if len(batch) >= 256:
                flush()
        flush()
    if bad:
        err_console.print(f"[red]{len(bad)} bad line(s)[/] in {escape(file)}; the others were classified",
                          highlight=False)
        raise typer.Exit(ERROR)


# --- eval-topics ----------------------------------------------------------------------------------

def eval_topics(
    files: list[Path] = typer.Argument(..., help="Labelled JSONL file(s): {id, title, summary, topics, language?}."),
    config_dir: Optional[Path] = ConfigDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print {topics: {id: {precision, recall, f1, tp, fp, fn}}, "
                                  "micro: {precision, recall, f1}}."),
    errors: bool = typer.Option(False, "--errors", help="List false positives (with the matched terms) "
                                "and false negatives."),
    topic: list[str] = typer.Option([], "--topic", "-t", help="Only list errors of this topic (repeatable)."),
    rules_only: bool = typer.Option(True, "--rules-only/--with-model",
                                    help="Measure the rules alone (default) or rules + MEDIAMON_CLASSIFIER_MODEL."),
    exclude_prefix: list[str] = typer.Option([], "--exclude-prefix",
                                             help="Leave out items whose id starts with this (repeatable), "
                                                  "e.g. page- for the paraphrases of dev.jsonl."),
    split: str = typer.Option("all", "--split", help="all, or tune / untouched: the fixed split by sha1(id) % 3 "
                              "(untouched = 0, a third for reporting only; tune on the rest)."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, metavar="N",
                                  help="Add 95% intervals of every F1 from N bootstrap resamples of the items "
                                       "(e.g. 1000; JSON: ci95). Items of one story count as independent, "
                                       "so the intervals are if anything too narrow."),
) -> None:
    """Measure the topic rules on labelled items: precision, recall, F1, tp/fp/fn per topic and micro.

    Example: mediamon eval-topics ../shared/eval/dev.jsonl --errors --topic nato_posture

    Example (real news only, the reporting third):
    mediamon eval-topics ../shared/eval/dev.jsonl ../shared/eval/news_dev.jsonl --exclude-prefix page- --split untouched

    Example (how much of a difference is noise): mediamon eval-topics ../shared/eval/news_dev.jsonl --bootstrap 1000
    """
    from ..classify import load_classifier
    from ..evaluation import SPLITS, select_rows

    with cli_errors():
        if split not in SPLITS:
            raise typer.BadParameter(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
        topics, settings = _load(config_dir)
        # read lazily: a bad line fails with its number before the rest is read
        items = []
        for file in files:
            rows = select_rows(read_jsonl(str(file)), exclude_prefixes=exclude_prefix, split=split)
            items += labelled_items(rows, str(file), topics, now=utcnow())
        file = files[0] if len(files) == 1 else Path(" + ".join(str(f) for f in files))
        classifier = None if rules_only else load_classifier(settings)
        ev = evaluate(items, topics, classifier)
        ci = ev.confidence(resamples=bootstrap) if bootstrap else {}
    if json_out:
        out = ev.to_dict()
        if bootstrap:
            out["ci95"] = {k: list(v) for k, v in ci.items()}
        typer.echo(json.dumps(out))
    else:
        table = Table(title=f"topic rules on {escape(str(file))} ({ev.items} items)")
        for col in ("topic", "precision", "recall", "F1", *(("F1 95% CI",) if bootstrap else ()), "tp", "fp", "fn"):
            table.add_column(col, justify="left" if col == "topic" else "right")
        interval = lambda k: (f"{ci[k][0]:.3f}–{ci[k][1]:.3f}" if k in ci else "-",) if bootstrap else ()  # noqa: E731
        for tid, s in ev.per_topic.items():
            table.add_row(tid, f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}", *interval(tid),
                          str(s.tp), str(s.fp), str(s.fn))
        m = ev.micro
        table.add_row("[bold]micro[/]", f"{m.precision:.3f}", f"{m.recall:.3f}", f"[bold]{m.f1:.3f}[/]",
                      *interval("micro"), str(m.tp), str(m.fp), str(m.fn))
        console.print(table)
    if errors:
        wanted = set(topic)
        for e in ev.errors:
            if wanted and e["topic"] not in wanted:
                continue
            if json_out:
                typer.echo(json.dumps(e, ensure_ascii=False), err=True)
                continue
            tag = "[red]FP[/]" if e["kind"] == "fp" else "[yellow]FN[/]"
            terms = f"  [dim]matched: {escape(', '.join(e['terms']))}[/]" if e["terms"] else ""
            console.print(f"{tag} {e['topic']:<24} {escape(e['id'])}  {escape(e['title'])}{terms}", highlight=False)


# --- topics list / explain ------------------------------------------------------------------------

def topics_list(config_dir: Optional[Path] = ConfigDirOpt,
                json_out: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """List the configured topics and their queries.

    Example: mediamon topics list --config-dir config
    """
    with cli_errors():
        topics, _ = _load(config_dir)
    if json_out:
        typer.echo(json.dumps([t.model_dump(mode="json") for t in topics], ensure_ascii=False))
        return
    table = Table(show_lines=True)
    table.add_column("id", no_wrap=True)
    table.add_column("name / description", overflow="fold")
    table.add_column("query", overflow="fold")
    for t in topics:
        table.add_row(t.id, f"[bold]{escape(t.name)}[/]\n{escape(t.description)}", escape(" ".join(t.query.split())))
    console.print(table)


def _tree(node, parent: Tree) -> None:
    """One line per clause: ✓/✗, the clause, the words found (and where); a word shows how it is
    looked up (stem, lemma, abbreviation) and, when it was found, by which; an alias shows its group
    and only the names that were found (all of them when none was)."""
    mark = "[green]✓[/]" if node.matched else "[red]✗[/]"
    label = escape(node.clause if node.kind not in ("and", "or") else node.kind.upper())
    extra = ""
    if node.terms:
        extra = f"  [cyan]{escape(', '.join(node.terms))}[/] [dim]in {', '.join(node.where)}[/]"
    if node.via:
        how = f"by {node.matched_by}; " if node.matched_by else ""
        extra += f"  [dim]({escape(how + '; '.join(node.via))})[/]"
    branch = parent.add(f"{mark} {label}{extra}")
    children = node.children
    if node.kind == "alias" and node.matched:
        children = [c for c in children if c.matched]
    for c in children:
        _tree(c, branch)


def topics_explain(
    topic: str = typer.Argument(..., help="Topic id from topics.yaml."),
    article_id: Optional[str] = typer.Argument(None, help="A stored article's id (instead of --text)."),
    text: Optional[str] = typer.Option(None, "--text", help="Title (or any text) to test."),
    summary: str = typer.Option("", "--summary", help="Summary text."),
    text_en: Optional[str] = typer.Option(None, "--text-en", help="English translation of --text."),
    language: Optional[str] = typer.Option(None, "--language", help="Language of the text (for languages:)."),
    full: bool = typer.Option(False, "--all", help="Show the whole query tree, not only the clauses that "
                              "decided the verdict."),
    config_dir: Optional[Path] = ConfigDirOpt,
    data_dir: Optional[Path] = DataDirOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the explanation tree as JSON (`explanation`: "
                                  "the whole tree; `deciding`: the clauses that decided)."),
) -> None:
    """Show which clauses of a topic's query match a text or a stored article, and the words that
    matched.  By default only the clauses that decided the verdict are shown (--all: every clause).

    Example: mediamon topics explain missile_deployment --text 'Россия разместила «Орешник» в Белоруссии'

    Example (a stored article, its id from `mediamon search --json`):
    mediamon topics explain missile_deployment 3f1c0e5d2b7a9c41e8f06b2d5a7c9e1f30b4d6a8 --all
    """
    from ..explain import deciding_clauses, deciding_tree
    from ..query import parse_query

    if (article_id is None) == (text is None):
        raise typer.BadParameter("give either an article id or --text (not both)", param_hint="ARTICLE_ID / --text")
    with cli_errors():
        topics, settings = _load(config_dir)
        by_id = {t.id: t for t in topics}
        if topic not in by_id:
            raise ConfigError(f"unknown topic {topic!r}; known: {', '.join(by_id)}")
        t = by_id[topic]
        if article_id is not None:
            article = _stored_article(article_id, data_dir)
            language = article.language
        else:
            article = Article.from_dict({"id": "explain", "title": text, "summary": summary, "title_en": text_en,
                                         "language": language}, missing_dates=utcnow())
        explanation = parse_query(t.query, t.aliases).explain(article)
        applies = not t.languages or language is None or language in t.languages
        gave_way = _yields(t, topics, article) if explanation.matched and applies else None
    matched = explanation.matched and applies and gave_way is None
    if json_out:
        typer.echo(json.dumps({"topic": t.id, "article_id": article_id, "matched": matched,
                               "applies": applies, "yielded_to": gave_way, "explanation": explanation.to_dict(),
                               "deciding": deciding_clauses(explanation)}, ensure_ascii=False))
        return
    verdict = "[green]MATCH[/]" if matched else "[red]no match[/]"
    if article_id:
        console.print(f"article {escape(article_id)}: {escape(article.title)}", soft_wrap=True, highlight=False)
    root = Tree(f"{verdict} {escape(t.id)} ({escape(t.name)})")
    if not applies:
        root.add(f"[yellow]topic applies only to languages {', '.join(t.languages or ())}[/]")
    if gave_way:
        root.add(f"[yellow]the query matches, but {escape(gave_way)} matches too and the title alone reads as "
                 f"{escape(gave_way)}, not as {escape(t.id)}: {escape(t.id)} yields to it (yields_to)[/]")
    _tree(explanation if full else deciding_tree(explanation), root)
    console.print(root)
    if not full:
        console.print("[dim](only the clauses that decided; --all shows the whole query)[/]")


def _yields(t, topics, article: Article) -> str | None:
    """The topic ``t`` gives way to on ``article`` (its ``yields_to``, decided by the title), or None;
    ``t`` has matched the whole item."""
    if not t.yields_to:
        return None
    from ..classify import compile_topics, gives_way

    compiled = compile_topics(topics)
    return gives_way(article, next(c for c in compiled if c.id == t.id), compiled)


def _stored_article(article_id: str, data_dir: Optional[Path]) -> Article:
    """The stored article ``article_id``; a missing one is an error (exit 1) naming the id."""
    from ..errors import MediamonError
    from ..store import open_existing_store

    settings = build_settings(data_dir=data_dir)
    with open_existing_store(settings) as store:
        found = store.get_articles([article_id])
    if not found:
        raise MediamonError(f"no stored article with id {article_id} (ids: `mediamon search --json`)")
    return found[0]


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
    app.command("eval-topics")(eval_topics)
    topics_app.command("list")(topics_list)
    topics_app.command("explain")(topics_explain)
    app.add_typer(topics_app, name="topics")
