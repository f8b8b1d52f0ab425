"""Old vs new time of the scans that were quadratic on hostile input (issue 15, defect 6).

For each input pattern and size, the CPU time of:

    block_tags   the block-tag regex of html_to_text: old ``<\\s*(br|/p|…)\\b[^>]*>`` vs the current
                 ``_BLOCK_TAG_RE`` (the tag name right after '<', attributes stop at the next '<')
    html_to_text the whole HTML-to-text step as it is now (comments, <head>, SVG/MathML, nh3)
    prolog       the scan for the first element: the old ``_first_element_start`` (it searched for
                 '[' to the end of the document for every ``<!x>``) vs the current one
    parse_feed   a whole document through pipeline.parse.parse_feed (prolog slimmed, feedparser)

The old versions are copied here verbatim from the commit before issue 15 (770ccd3).  An old
run is skipped once one size took more than ``--max-old`` seconds (the next doubling takes ~4×).

Usage: python bench/hostile_parse.py [--sizes 25000,50000,100000,200000] [--max-old 20]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import parse  # noqa: E402

OLD_BLOCK_RE = re.compile(r"(?i)<\s*(br|/p|/div|/li|/h[1-6]|p|div|li|tr|/tr)\b[^>]*>")


def old_first_element_start(text: str) -> int:
    limit = len(text)
    i = 0
    while i < limit:
        j = text.find("<", i, limit)
        if j < 0:
            return limit
        if text.startswith("<?", j):
            k = text.find("?>", j)
            i = (k + 2) if k >= 0 else limit
        elif text.startswith("<!--", j):
            k = text.find("-->", j)
            i = (k + 3) if k >= 0 else limit
        elif text.startswith("<!", j):
            k_br = text.find("[", j, limit)
            k_gt = text.find(">", j, limit)
            if k_br >= 0 and (k_gt < 0 or k_br < k_gt):
                k = text.find("]", k_br, limit)
                k = text.find(">", k, limit) if k >= 0 else -1
            else:
                k = k_gt
            i = (k + 1) if k >= 0 else limit
        else:
            return j
    return limit


def cpu(fn, *args) -> float:
    t = time.process_time()
    fn(*args)
    return round(time.process_time() - t, 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="25000,50000,100000,200000")
    ap.add_argument("--max-old", type=float, default=20.0)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    out: dict = {"machine": platform.machine(), "python": platform.python_version(),
                 "loadavg": os.getloadavg()[0], "unit": "CPU seconds", "cases": {}}
    for pattern in ("<br", "< p", "<p"):
        rows = []
        old_ok = True
        for n in sizes:
            text = pattern * (n // len(pattern))
            row = {"chars": len(text), "block_tags_new": cpu(parse._BLOCK_TAG_RE.sub, "\n", text),
                   "html_to_text_new": cpu(parse.html_to_text, text)}
            if old_ok:
                row["block_tags_old"] = cpu(OLD_BLOCK_RE.sub, " ", text)
                old_ok = row["block_tags_old"] <= args.max_old
            rows.append(row)
        out["cases"][f"html {pattern!r}"] = rows
    rows = []
    old_ok = True
    for n in sizes:
        prolog = "<!x>" * (n * 10 // 4)  # 10× the sizes above: 250 KB … 2 MB of '<!x>'
        doc = prolog + '<rss version="2.0"><channel><title>t</title><item><title>a</title>' \
                       "<link>https://example.com/a</link></item></channel></rss>"
        row = {"chars": len(doc), "prolog_new": cpu(parse._first_element_start, doc),
               "parse_feed_new": cpu(lambda doc=doc: parse.parse_feed(doc.encode(), url="https://example.com/f"))}
        if old_ok:
            row["prolog_old"] = cpu(old_first_element_start, doc)
            old_ok = row["prolog_old"] <= args.max_old
        rows.append(row)
    out["cases"]["prolog '<!x>'"] = rows
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
