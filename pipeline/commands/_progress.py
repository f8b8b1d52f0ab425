"""``mediamon run`` progress on a terminal (issue 18): feeds polled, items stored, translation.

Shown only when stdout is a terminal and not ``--json``; transient (erased when the run ends,
the summary follows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from ..cycle import CycleReport
    from ..pollresult import PollResult

# every outcome of the translate stage for one item (English and undetected items are "skipped")
TRANSLATION_KEYS = ("translated", "translation_cached", "translation_failed", "translation_unavailable",
                    "translation_skipped")


def translation_line(counters: Mapping[str, int]) -> str:
    done = counters.get("translated", 0) + counters.get("translation_cached", 0)
    parts = [f"{done} translated"]
    if counters.get("translation_cached"):
        parts.append(f"{counters['translation_cached']} from cache")
    for key, label in (("translation_failed", "failed"), ("translation_unavailable", "model unavailable")):
        if counters.get(key):
            parts.append(f"{counters[key]} {label}")
    return ", ".join(parts)


def run_with_progress(console: Console, run: Callable[..., "CycleReport"]) -> "CycleReport":
    """Call ``run(on_planned=..., on_feed_done=..., on_progress=...)`` (``run_cycle`` with its
    settings bound) while a three-line progress display follows it."""
    with Progress(TextColumn("{task.fields[label]:<14}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        feeds = progress.add_task("", total=None, label="feeds polled")
        stored = progress.add_task("", total=None, label="items stored")
        translation = progress.add_task("", total=None, label="translation")

        def planned(n: int) -> None:
            progress.update(feeds, total=n)

        def feed_done(p: "PollResult") -> None:
            progress.update(feeds, advance=1, description=p.feed.id)

        def on_progress(stage: str, counters: Mapping[str, int]) -> None:
            new = counters.get("new", 0)
            indexed = counters.get("indexed", 0)
            progress.update(stored, completed=indexed, total=max(new, indexed) or None,
                            description=f"{counters.get('items_seen', 0)} seen, {new} new")
            progress.update(translation, completed=sum(counters.get(k, 0) for k in TRANSLATION_KEYS),
                            total=(new + counters.get("translation_retried", 0)) or None,
                            description=translation_line(counters))

        return run(on_planned=planned, on_feed_done=feed_done, on_progress=on_progress)
