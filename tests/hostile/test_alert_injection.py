"""Markup and header injection from feed text, through the whole path to a real SMTP server
(aiosmtpd on loopback): scripts, event handlers, javascript:/data: links, CR/LF and Unicode line
breaks in titles and links.  The email's headers are exactly ours; its HTML is inert."""

from __future__ import annotations

import re
from html.parser import HTMLParser


from pipeline.config import AlertConfig

from . import generators as gen
from .conftest import bounded, cycle, feed

RECIPIENTS = ("analyst@example.org", "desk@example.org")
EXPECTED_HEADERS = {"subject", "from", "to", "date", "message-id", "list-id", "list-unsubscribe",
                    "auto-submitted", "x-mediamon-rule", "mime-version", "content-type"}
ALLOWED_TAGS = {"html", "head", "meta", "title", "body", "h2", "h3", "p", "br", "code", "ol", "ul", "li", "div",
                "a", "mark", "span", "hr", "strong", "em", "small", "table", "tr", "td", "th", "tbody", "thead"}


class Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.script_data: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag

    def handle_data(self, data):
        if self._in in ("script", "style"):
            self.script_data.append(data)


def test_hostile_titles_and_links_reach_the_email_inert(hserver, hsettings, smtp, warm):
    settings = hsettings.model_copy(update=dict(smtp_host="127.0.0.1", smtp_port=smtp.port,
                                                smtp_from="mediamon@example.org", smtp_retry_wait=0.0,
                                                smtp_timeout=5.0,
                                                # the generated items are not recent: no first-run floor
                                                alert_first_run_lookback=3650 * 86400.0))
    hserver.expect_request("/hostile").respond_with_data(gen.hostile_markup(), content_type="application/rss+xml")
    rule = AlertConfig(id="hostile", query="Орешник AND Беларусь", recipients=RECIPIENTS, mode="immediate")
    with bounded(20, 150):
        o = cycle(settings, [feed("hostile", hserver.url_for("/hostile"), language="ru")], alerts=[rule])
    c = o.report.counters_dict()
    n = len(gen.HOSTILE_TITLES)
    assert c["new"] == n and c["alert_emails_sent"] == 1 and c["alert_items_sent"] == n, c

    # stored: titles are plain text (markup kept as *text*, line breaks collapsed), links http(s) or None
    for a in o.articles:
        assert "\r" not in a.title and "\n" not in a.title
        assert a.url is None or a.url.startswith(("https://hostile.example/", hserver.url_for("/")))
        assert a.canonical_url is None or re.fullmatch(r"https://hostile\.example/[^\s]*", a.canonical_url)
        assert "<" not in a.summary and "alert(" not in a.summary  # HTML summaries became text
        assert "display:none" not in a.summary  # style contents dropped
    by_guid = o.by_guid()
    assert by_guid["hostile-script"].title.startswith('<script>alert("t1")</script>')
    assert by_guid["hostile-script"].url is None and by_guid["hostile-svg"].url is None

    [(mail_from, rcpts, msg)] = smtp.messages
    assert mail_from == "mediamon@example.org" and rcpts == list(RECIPIENTS)
    assert {k.lower() for k in msg.keys()} == EXPECTED_HEADERS
    assert msg.get_all("Subject") == [f"[mediamon] hostile: {n} new items"]
    assert msg["To"] == ", ".join(RECIPIENTS) and msg["Bcc"] is None and msg["Cc"] is None
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert "\r" not in text and "\r" not in html and "\u2028" not in text and "\x85" not in text
    parser = Tags()
    parser.feed(html)
    assert {t for t, _ in parser.tags} <= ALLOWED_TAGS, {t for t, _ in parser.tags} - ALLOWED_TAGS
    for tag, attrs in parser.tags:
        assert not [k for k in attrs if k.lower().startswith("on")], (tag, attrs)
        assert "style" not in attrs or "expression" not in (attrs["style"] or "")
        if "href" in attrs:
            href = attrs["href"] or ""
            assert re.fullmatch(r"https?://[^\s\"'<>]+", href), href
            assert href.startswith(("https://hostile.example/", "mailto:")) or "hostile.example" in href
    assert not parser.script_data
    # the hostile strings are visible as text, escaped
    assert "&lt;script&gt;" in html and "javascript:alert(document.cookie)" not in [a.get("href") for _, a in parser.tags]
    # each title is on one line of the text part: the injected "headers" are harmless words there
    injected = [line for line in text.splitlines() if "victim@evil.example" in line]
    assert injected and all(not line.startswith(("Bcc:", "To:", "Cc:", "Subject:")) for line in injected)
    assert not any(line.startswith("X-Injected") for line in text.splitlines())
    # the 10 000-character title is cut, not mailed whole
    assert max(len(line) for line in text.splitlines()) < 2_000

    # a second cycle (same content, forced) mails nothing more
    o2 = cycle(settings, [feed("hostile", hserver.url_for("/hostile"), language="ru")], alerts=[rule], force=True)
    assert o2.report.counters_dict()["new"] == 0 and len(smtp.messages) == 1
