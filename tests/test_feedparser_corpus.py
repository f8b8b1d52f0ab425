"""Every document of feedparser's own test corpus (../shared/peer/feedparser-tests, 2,107 files) through
the path ``mediamon run`` takes: a loopback server (with each document's ``Header:`` lines as
response headers) → ``fetch`` → the parser pool → ``parse`` → ``normalize``.

For every document:

* no exception escapes (a per-feed error is fine when it names a reason; "could not parse: …", a
  crashed parser or an unexpected error is a failure);
* no markup in any stored text field (title, summary, content, authors, categories), unless it is
  text: angle brackets that feedparser itself reads as text (a ``text/plain`` value, or
  ``&lt;b&gt;`` in HTML) are characters of the text, never markup;
* only absolute http(s) links;
* for the ``Expect:`` conditions on fields mediamon keeps (entry title, link, dates, author name,
  categories), the value feedparser expects, except for mediamon's deliberate differences, each
  named in ``ALLOWED`` below.

The whole run is bounded in wall time and in the peak memory of this process.  The table of
results per folder is printed (``-s``) and kept in docs/RELIABILITY.md.
"""

from __future__ import annotations

import ast
import html
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from werkzeug import Response

from pipeline.config import FeedConfig

from .conftest import SHARED, make_settings
from .hostile.conftest import MiB, bounded

CORPUS = SHARED / "peer" / "feedparser-tests"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/peer/feedparser-tests not present")]

# mediamon's deliberate differences from feedparser; every "allowed" outcome names one of these
ALLOWED = {
    # parse._prepare refuses any document that declares entities (billion laughs, XXE); feedparser
    # expands the "safe" ones itself
    "entities-refused": "the document declares XML entities: refused",
    # a document in which feedparser finds no entry and that is malformed (or not a feed) is a failed
    # feed for mediamon, with the reason; there is nothing in it mediamon would keep (feed-level
    # fields such as the channel title are not stored)
    "no-entries": "malformed document without entries: refused with the reason",
    # parse_feed drops entries with no title, summary or link; normalize_feed collapses entries of
    # one document that share a link or guid
    "empty-items-dropped": "items with no title, summary and link dropped, or duplicates collapsed",
    # every text field is plain text: HTML is converted to text (stricter than feedparser's
    # sanitiser, which keeps "safe" markup); whitespace is collapsed
    "plain-text": "markup removed / whitespace collapsed (plain text, stricter than feedparser's sanitising)",
    # links: only absolute http(s) URLs are kept (feedparser keeps javascript:, mailto:, ftp: …);
    # relative links are resolved against the URL the feed was fetched from
    "http-links-only": "only absolute http(s) links kept, relative ones resolved against the feed URL",
    # one date per item: published, else updated, else created; implausible ones (before 1990, or
    # in the future) become the fetch time with date_inferred
    "one-plausible-date": "one plausible date kept (published, else updated, else created)",
    # author names and categories: plain text, first 20 / 50 kept, duplicates dropped; a category is
    # its term, or its label when it has no term
    "meta-plain": "author names and categories as plain text (duplicates dropped, label when no term)",
}

MARKUP = re.compile(r"<\s*/?\s*[A-Za-z!?][^<>]*>|\bon[a-z]+\s*=\s*[\"']", re.I)
KEPT_ENTRY_KEYS = {"title", "link", "published_parsed", "updated_parsed", "created_parsed", "author",
                   "author_detail", "authors", "tags"}


@dataclass
class Doc:
    rel: str
    body: bytes
    headers: dict[str, str]
    expect: str | None


def _read_corpus() -> list[Doc]:
    docs = []
    for p in sorted(CORPUS.rglob("*")):
        if not p.is_file() or p.name == "LICENSE":
            continue
        body = p.read_bytes()
        head = body[:4096].replace(b"\0", b"").decode("latin-1")
        headers = {}
        for m in re.finditer(r"^Header:\s*([\w-]+):\s*(.*?)\s*$", head, re.M):
            headers[m.group(1)] = m.group(2)
        m = re.search(r"^Expect:\s*(.*?)\s*$", head, re.M)
        docs.append(Doc(str(p.relative_to(CORPUS)), body, headers, m.group(1) if m else None))
    return docs


class _Text(HTMLParser):
    """An independent HTML → text reading (the stdlib parser, not nh3) for the oracle."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self.skip -= tag in ("script", "style") and self.skip > 0

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def _text_of(value: str, ctype: str | None) -> str:
    if (ctype or "text/plain") == "text/plain":
        return value
    p = _Text()
    p.feed(value)
    p.close()
    return "".join(p.out)


def _ws(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def _feedparser_texts(doc: Doc) -> list[str]:
    """Every text value feedparser (with its own sanitiser) reads in the document, as text."""
    import io

    import feedparser

    ct = doc.headers.get("Content-type") or doc.headers.get("Content-Type")
    d = feedparser.parse(io.BytesIO(doc.body), response_headers={"content-type": ct} if ct else {})
    out = []
    for node in [d.get("feed") or {}, *(d.get("entries") or [])]:
        for k, v in node.items():
            if k.endswith("_detail") and isinstance(v, dict) and isinstance(v.get("value"), str):
                out.append(_ws(_text_of(v["value"], v.get("type"))))
            elif k == "content":
                out.extend(_ws(_text_of(c.get("value") or "", c.get("type"))) for c in v)
            elif k in ("authors", "tags", "contributors"):
                out.extend(_ws(x.get(f) or "") for x in v for f in ("name", "term", "label"))
    return out


def _entry_view(a) -> dict:
    e = {"title": a.title}
    if a.url:
        e["link"] = a.url
    if not a.date_inferred:
        tt = tuple(a.published_at.utctimetuple())
        e["published_parsed"] = e["updated_parsed"] = e["created_parsed"] = tt
    if a.authors:
        e["author"] = a.authors[0]
        e["author_detail"] = {"name": a.authors[0]}
        e["authors"] = [{"name": n} for n in a.authors]
    if a.categories:
        e["tags"] = [{"term": c} for c in a.categories]
    return e


def _chain(node) -> list | None:
    """entries[0]['title'][...] → [0, 'title', ...]; None when the node is not such a chain."""
    keys = []
    while isinstance(node, ast.Subscript):
        try:
            keys.append(ast.literal_eval(node.slice))
        except ValueError:
            return None
        node = node.value
    if isinstance(node, ast.Name) and node.id == "entries" and keys:
        return list(reversed(keys))
    return None


def _kept_conjuncts(expect: str) -> list[tuple[ast.expr, list]]:
    """The conditions of ``expect`` (split at top-level ``and``) that only read entry fields
    mediamon keeps, with the field chain each reads."""
    try:
        tree = ast.parse(expect, mode="eval").body
    except SyntaxError:
        return []
    parts = tree.values if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And) else [tree]
    out = []
    for part in parts:
        names = {n.id for n in ast.walk(part) if isinstance(n, ast.Name)}
        if names != {"entries"}:
            continue
        chains = [c for n in ast.walk(part) if isinstance(n, ast.Subscript) and (c := _chain(n))]
        longest = max(chains, key=len) if chains else None
        if not longest or len(longest) < 2 or longest[1] not in KEPT_ENTRY_KEYS:
            continue
        if longest[1] in ("author_detail", "authors") and "name" not in longest[2:]:
            continue
        if longest[1] == "tags" and "term" not in longest[2:]:
            continue
        out.append((part, longest))
    return out


def _expected_literal(part: ast.expr):
    if isinstance(part, ast.Compare) and len(part.ops) == 1 and isinstance(part.ops[0], ast.Eq):
        comp = part.comparators[0]
        if any(isinstance(n, ast.Name) for n in ast.walk(comp)):
            return None
        try:  # a literal, or literals joined with '+' (the corpus splits '--' that way)
            return eval(compile(ast.Expression(comp), "<expect>", "eval"), {"__builtins__": {}})  # noqa: S307
        except Exception:  # noqa: BLE001
            return None
    return None


def _judge_condition(part, chain, entries, n_fp_entries: int, server_url: str) -> str | None:
    """None: as feedparser expects; else the ALLOWED key; raises AssertionError text via 'fail:'."""
    code = compile(ast.Expression(part), "<expect>", "eval")
    try:
        if eval(code, {"__builtins__": {"len": len}}, {"entries": entries}):  # noqa: S307 - corpus text
            return None
        missing = None
    except (KeyError, IndexError, TypeError) as exc:
        missing = exc
    field = chain[1]
    expected = _expected_literal(part)
    if isinstance(missing, IndexError):
        return "empty-items-dropped" if n_fp_entries > len(entries) else "fail: entry missing"
    ours = None
    if missing is None:
        ours = entries[chain[0]]
        for k in chain[1:]:
            ours = ours[k]
    if field in ("published_parsed", "updated_parsed", "created_parsed"):
        if missing is not None or field != "published_parsed":
            return "one-plausible-date"
        exp_year = expected[0] if isinstance(expected, tuple) and expected else None
        return "one-plausible-date" if exp_year is not None and not 1990 <= exp_year <= 2100 else \
            f"fail: date {ours} != {expected}"
    if field == "link":
        if not isinstance(expected, str) or not expected.lower().startswith(("http://", "https://")):
            return "http-links-only"
        if isinstance(ours, str) and ours.startswith(server_url) and urlsplit(ours)[2:] == urlsplit(expected)[2:]:
            # a relative link, resolved against the URL we fetched the feed from (feedparser's
            # expectation names its own test server, or honours a Content-Location header)
            return "http-links-only"
        return f"fail: link {ours!r} != {expected!r}"
    if isinstance(expected, str):
        plain = _ws(_text_of(expected, "text/html"))
        if ours is not None and isinstance(ours, str) and (
                _ws(ours) == _ws(expected) or _ws(ours) == plain or _ws(ours) == _ws(html.unescape(expected))):
            return "plain-text" if field == "title" else "meta-plain"
        if missing is not None and not plain:
            return "plain-text" if field == "title" else "meta-plain"  # nothing left once plain
    if isinstance(expected, str) and isinstance(ours, str) and MARKUP.search(expected) and not MARKUP.search(ours) \
            and set(re.findall(r"\w+", ours)) <= set(re.findall(r"\w+", expected)):
        return "plain-text" if field == "title" else "meta-plain"  # markup (and what it hid) removed
    if field in ("tags", "authors", "author", "author_detail") and missing is not None:
        return "meta-plain"
    return f"fail: {field} {ours!r} != {expected!r}"


def _judge(doc: Doc, res, server_url: str) -> tuple[str, str]:
    """('pass' | 'allowed' | 'fail', reason)."""
    err = str(res.error) if res.error is not None else ""
    if err and re.search(r"could not parse|unexpected error|process died", err):
        return "fail", f"exception: {err[:200]}"
    if err:
        if "declares XML entities" in err:
            return "allowed", "entities-refused"
        if "not a usable feed" in err:
            return "allowed", "no-entries"
        return "fail", f"error: {err[:200]}"
    reasons = set()
    fp_texts = None
    for a in res.articles:
        for value in (a.title, a.summary, a.content or "", *a.authors, *a.categories):
            for tok in MARKUP.findall(value):
                if fp_texts is None:
                    fp_texts = _feedparser_texts(doc)
                if not any(tok in t for t in fp_texts):
                    return "fail", f"markup {tok!r} in {value[:120]!r}"
                reasons.add("plain-text")  # angle brackets that are text in the source
        if a.url is not None and not a.url.lower().startswith(("http://", "https://")):
            return "fail", f"link {a.url!r}"
    if doc.expect:
        entries = [_entry_view(a) for a in res.articles]
        n_fp = None
        for part, chain in _kept_conjuncts(doc.expect):
            if n_fp is None:
                n_fp = _feedparser_entry_count(doc)
            verdict = _judge_condition(part, chain, entries, n_fp, server_url)
            if verdict is None:
                continue
            if verdict.startswith("fail"):
                return "fail", f"{verdict} [{ast.unparse(part)[:160]}]"
            reasons.add(verdict)
    return ("allowed", ",".join(sorted(reasons))) if reasons else ("pass", "")


def _feedparser_entry_count(doc: Doc) -> int:
    import io

    import feedparser

    return len(feedparser.parse(io.BytesIO(doc.body)).get("entries") or [])


@pytest.fixture
def httpserver():
    """A threaded loopback server: the poll has 16 requests in flight."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def test_every_feedparser_corpus_document(tmp_path, httpserver, capsys, caplog):
    import logging

    from pipeline.poll import poll

    caplog.set_level(logging.ERROR)  # 2,107 requests and their parse warnings: kept out of the report

    docs = _read_corpus()
    assert len(docs) >= 2_000
    by_path = {f"/c/{i}": d for i, d in enumerate(docs)}

    def handler(request):
        d = by_path[request.path]
        headers = {k: v for k, v in d.headers.items() if k.lower() != "content-type"}
        ct = d.headers.get("Content-type") or d.headers.get("Content-Type") or "application/xml"
        return Response(d.body, headers=headers, content_type=ct)

    httpserver.expect_request(re.compile(r"^/c/\d+$")).respond_with_handler(handler)
    settings = make_settings(tmp_path, parse_pool_min_bytes=0, parse_workers=2, fetch_concurrency=16,
                             fetch_per_host=16, fetch_timeout=60.0, parse_cpu_seconds=10.0)
    feeds = [FeedConfig(id=f"c{i}", url=httpserver.url_for(f"/c/{i}"), source="corpus") for i in range(len(docs))]
    with bounded(300, 600) as usage:
        results = poll(feeds, {}, settings)
    assert len(results) == len(docs)

    table: dict[str, Counter] = defaultdict(Counter)
    allowed_by: Counter = Counter()
    failures = []
    for res in results:
        doc = docs[int(res.feed.id[1:])]
        folder = doc.rel.split("/", 1)[0]
        verdict, reason = _judge(doc, res, httpserver.url_for("/"))
        table[folder][verdict] += 1
        if verdict == "allowed":
            allowed_by.update(reason.split(","))
        elif verdict == "fail":
            failures.append(f"{doc.rel}: {reason}")
    with capsys.disabled():
        print(f"\nfeedparser corpus: {len(docs)} documents in {usage.seconds:.1f}s, "
              f"peak RSS +{usage.peak_growth / MiB:.0f} MiB (test process)")
        print("| folder | files | pass | allowed | fail |\n|---|---|---|---|---|")
        for folder in sorted(table):
            c = table[folder]
            print(f"| {folder} | {sum(c.values())} | {c['pass']} | {c['allowed']} | {c['fail']} |")
        for key, n in allowed_by.most_common():
            print(f"allowed {key}: {n} ({ALLOWED.get(key, '?')})")
        for f in failures[:40]:
            print("FAIL", f)
    assert not failures, f"{len(failures)} documents failed, e.g. {failures[:5]}"
    assert set(allowed_by) <= set(ALLOWED)
