"""``mediamon serve``: a small server-rendered search page over the embedded store (Starlette).

Routes (all GET; the app has no state-changing form, so there is nothing for CSRF to forge):

    /                       search: query, filters, sort, paging, chart, facets
    /export.csv, .jsonl     the current result as a file (same parameters as /)
    /article/{id}           original and English side by side, provenance, matching rules
    /topics, /topics/{id}   topics: query, volume over time, latest items
    /alerts                 alert rules: counts, last emails, pending items
    /static/...             the stylesheet (no JavaScript at all)

Security: every response carries a strict Content-Security-Policy (``default-src 'none'``; the
stylesheet from this origin; no script of any kind, no inline style), ``nosniff``, no referrer, no
framing.  Templates are autoescaped; feed text is never marked safe (pipeline.highlight escapes it
piece by piece).  Bound to loopback, requests must name a loopback Host (a DNS-rebinding page cannot
read it); bound elsewhere, every request needs the token (``MEDIAMON_WEB_TOKEN``) as HTTP Basic
password or ``Authorization: Bearer``.
"""

from __future__ import annotations

import base64
import contextlib
import binascii
import hmac
import ipaddress
import time
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..query import QuerySyntaxError
from ..settings import Settings
from .views import SORTS, Form, Views

HERE = Path(__file__).resolve().parent

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: security headers, server time, and who may ask (loopback Host or token)."""

    def __init__(self, app, *, token: str | None):
        self.app = app
        self.token = token

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        if self.token is None:
            host = headers.get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return is_loopback(name)
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = auth.partition(" ")
        given = ""
        if scheme.lower() == "bearer":
            given = value.strip()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                given = ""
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, cpu = time.perf_counter(), time.process_time()

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() not in dict(SECURITY_HEADERS)]
                headers += SECURITY_HEADERS
                headers.append((b"server-timing", f"app;dur={(time.perf_counter() - started) * 1000:.2f}, "
                                f"cpu;dur={(time.process_time() - cpu) * 1000:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        headers = dict((k.lower(), v) for k, v in scope.get("headers", []))
        if scope["method"] not in ("GET", "HEAD"):
            return await PlainTextResponse("read-only: GET only", 405, headers={"Allow": "GET, HEAD"})(
                scope, receive, send_wrapped)
        if not self._authorised(headers):
            if self.token is None:
                return await PlainTextResponse("bad Host header: use http://127.0.0.1:PORT/", 400)(
                    scope, receive, send_wrapped)
            return await PlainTextResponse("token required", 401, headers={
                "WWW-Authenticate": 'Basic realm="mediamon", charset="UTF-8"'})(scope, receive, send_wrapped)
        return await self.app(scope, receive, send_wrapped)


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda n: f"{n:,}".replace(",", "\u202f")
    return env


def create_app(settings: Settings, *, store=None, token: str | None = None) -> Starlette:
    """The ASGI app.  ``store``: an open store to serve (else ``open_store(settings)``, closed at
    shutdown); ``token``: require it on every request (binding beyond loopback)."""
    from ..store import open_store

    own = store is None
    store = open_store(settings) if own else store
    views = Views(settings, store)
    env = _env()

    def page(name: str, ctx: dict, status: int = 200) -> HTMLResponse:
        ctx = {**ctx, "sorts": SORTS, "now": datetime.now(timezone.utc)}
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=status)

    async def search(request: Request) -> Response:
        form = Form.from_params(request.query_params)
        ctx = views.search(form)
        status = 400 if ctx["error"] or form.errors else 200
        return page("search.html", ctx, status)

    async def export(request: Request) -> Response:
        fmt = request.path_params["fmt"]
        if fmt not in ("csv", "jsonl"):
            return PlainTextResponse("export as .csv or .jsonl", 404)
        form = Form.from_params(request.query_params)
        try:
            rows = views.export(form)
        except QuerySyntaxError as exc:
            return PlainTextResponse(f"query error: {exc}", 400)
        if form.errors:
            return PlainTextResponse("; ".join(form.errors), 400)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        from .views import to_csv, to_jsonl

        body, media = (to_csv(rows), "text/csv") if fmt == "csv" else (to_jsonl(rows), "application/x-ndjson")
        return Response(body, media_type=f"{media}; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="mediamon-{stamp}.{fmt}"'})

    async def article(request: Request) -> Response:
        ctx = views.article(request.path_params["article_id"], request.query_params.get("q", "")[:2000])
        if ctx is None:
            return page("notfound.html", {"what": "article"}, 404)
        return page("article.html", ctx)

    async def topics(request: Request) -> Response:
        return page("topics.html", views.topics_page())

    async def topic(request: Request) -> Response:
        ctx = views.topic(request.path_params["topic_id"])
        if ctx is None:
            return page("notfound.html", {"what": "topic"}, 404)
        return page("topic.html", ctx)

    async def alerts(request: Request) -> Response:
        return page("alerts.html", views.alerts_page())

    async def not_found(request: Request, exc) -> Response:
        return page("notfound.html", {"what": "page"}, 404)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            if own:
                store.close()

    routes = [
        Route("/", search),
        Route("/export.{fmt:str}", export),
        Route("/article/{article_id:str}", article),
        Route("/topics", topics),
        Route("/topics/{topic_id:str}", topic),
        Route("/alerts", alerts),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found})
    app.state.views = views
    app.add_middleware(Guard, token=token)
    return app
