"""The console's pages: sign-in, the queue, photos, decisions.

aiohttp (already the worker's web server, and Faust's) with Jinja2 templates,
autoescaped, rendered on the server; a little vanilla JavaScript adds the
keyboard. No second web framework and no build step. Every response carries
a strict Content-Security-Policy (scripts, styles and images from the console
itself only, no inline script), every page but sign-in needs a session, and
every POST its session's CSRF token.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from streams.console.auth import COOKIE, Session, Sessions, SignInThrottle, valid_reviewer
from streams.console.decisions import DecisionError, Taxonomy, decide
from streams.console.feed import ConsoleFeed, History
from streams.console.photos import PhotoError, Photos
from streams.console.queue import Filters, Item, ReviewQueue
from streams.settings import Settings

__all__ = ["CSP", "Console", "build_app"]

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
CONSOLE: web.AppKey[Console] = web.AppKey("console")
#: The request's session (None on the public pages before sign-in).
SESSION: web.RequestKey[Session | None] = web.RequestKey("session")
_PUBLIC = ("/login", "/static/", "/healthz")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Console:
    """The console's state: queue, feed, photos, sessions, templates."""

    def __init__(
        self,
        settings: Settings,
        secret: str,
        *,
        feed: ConsoleFeed | None = None,
        taxonomy: Taxonomy | None = None,
    ) -> None:
        cfg = settings.console
        self.settings = settings
        self.queue = ReviewQueue(cfg.max_items)
        self.history = History()
        self.photos = Photos(settings)
        self.feed = feed or ConsoleFeed(
            settings,
            self.queue,
            self.history,
            # A duplicate's earlier listing may itself be (or have been) in review.
            on_queued=lambda rec: self.photos.know(rec.image_sha256, rec.source),
        )
        self.sessions = Sessions(secret, cfg.session_ttl_s)
        self.throttle = SignInThrottle(cfg.signin_max_failures, cfg.signin_window_s)
        self.taxonomy = taxonomy or Taxonomy.from_model(settings.model.model_path)
        # Plain HTTP is only for the console on this machine; elsewhere put TLS in front.
        self.secure_cookie = cfg.host not in ("127.0.0.1", "localhost")
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def render(self, name: str, **context: Any) -> web.Response:
        """A page from its template (autoescaped)."""
        html = self.templates.get_template(name).render(**context)
        return web.Response(text=html, content_type="text/html", charset="utf-8")


def _see_other(location: str) -> web.Response:
    """A 303 to ``location`` (a response, not aiohttp's exception, so headers can be added)."""
    return web.Response(status=303, headers={"Location": location})


def _session(request: web.Request) -> Session | None:
    console: Console = request.app[CONSOLE]
    return console.sessions.read(request.cookies.get(COOKIE))


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every response; a session for every page; CSRF on every POST."""
    session = _session(request)
    public = request.path.startswith(_PUBLIC)
    if not public and (session is None or session.reviewer is None):
        if request.method == "GET" and request.path == "/":
            response: web.StreamResponse = _see_other("/login")
        else:
            response = web.Response(status=401, text="sign in first")
    elif request.method == "POST" and not await _csrf_ok(request, session):
        response = web.Response(status=403, text="missing or wrong CSRF token")
    else:
        request[SESSION] = session
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own (404, 405, ...) as plain responses
            response = web.Response(status=exc.status, text=exc.text, headers=exc.headers)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _csrf_ok(request: web.Request, session: Session | None) -> bool:
    if session is None:
        return False
    token = request.headers.get("X-CSRF-Token")
    if token is None:
        form = await request.post()
        value = form.get("csrf")
        token = value if isinstance(value, str) else None
    return Sessions.csrf_ok(session, token)


def _signed_in(request: web.Request) -> Session:
    """The session the guard let through (a reviewer's, or the sign-in page's)."""
    session = request[SESSION]
    assert session is not None
    return session


def _set_cookie(console: Console, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=console.sessions.ttl_s,
        httponly=True,
        samesite="Strict",
        secure=console.secure_cookie,
        path="/",
    )


async def login_page(request: web.Request) -> web.StreamResponse:
    """The sign-in form (it starts an anonymous session, for its CSRF token)."""
    console: Console = request.app[CONSOLE]
    session = request.get(SESSION)
    cookie = None
    if session is None:
        cookie, session = console.sessions.issue(None)
    response = console.render("login.html", csrf=session.csrf, error=None)
    if cookie is not None:
        _set_cookie(console, response, cookie)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """Sign in: the reviewer's name and the console's secret."""
    console: Console = request.app[CONSOLE]
    form = await request.post()
    name, secret = str(form.get("reviewer", "")).strip(), str(form.get("secret", ""))
    session = _signed_in(request)
    address, now = request.remote or "?", time.monotonic()
    wait_s = console.throttle.wait_s(address, now)
    if wait_s > 0:
        logger.warning("refused a sign-in from %s: too many failures", address)
        error = f"too many failed sign-ins; try again in {math.ceil(wait_s)} s"
        response = console.render("login.html", csrf=session.csrf, error=error)
        response.set_status(429)
        response.headers["Retry-After"] = str(math.ceil(wait_s))
        return response
    if not valid_reviewer(name) or not console.sessions.check_secret(secret):
        console.throttle.failed(address, now)
        logger.warning("refused a sign-in as %r from %s", name[:64], address)
        response = console.render("login.html", csrf=session.csrf, error="wrong name or secret")
        response.set_status(401)
        return response
    console.throttle.succeeded(address)
    cookie, _ = console.sessions.issue(name)
    response = _see_other("/")
    _set_cookie(console, response, cookie)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """Sign out."""
    response = _see_other("/login")
    response.del_cookie(COOKIE, path="/")
    return response


def _filters(request: web.Request) -> Filters:
    q = request.query
    return Filters(q.get("flag") or None, q.get("category") or None, q.get("seller") or None)


async def queue_page(request: web.Request) -> web.StreamResponse:
    """One page of the queue, filtered, with its counts and the rate of decisions."""
    console: Console = request.app[CONSOLE]
    filters = _filters(request)
    try:
        number = int(request.query.get("page", "1"))
    except ValueError:
        number = 1
    page = console.queue.page(filters, number, console.settings.console.page_size)
    kept = {k: v for k, v in request.query.items() if k in ("flag", "category", "seller") and v}
    session = _signed_in(request)
    return console.render(
        "queue.html",
        page=page,
        items=[_view(console, item) for item in page.items],
        filters=filters,
        query=urlencode(kept),
        queue_size=len(console.queue),
        per_hour=console.feed.rate.per_hour(time.monotonic()),
        skipped=console.feed.skipped,
        flags=sorted(console.queue.flags.items()),
        categories=sorted(console.queue.categories.items()),
        sellers=sorted(console.queue.sellers.items())[:500],
        labels=sorted(console.taxonomy.categories.items()),
        reviewer=session.reviewer,
        csrf=session.csrf,
        selected=request.query.get("sel", "0"),
    )


def _view(console: Console, item: Item) -> dict[str, Any]:
    rec = item.record
    console.photos.know(rec.image_sha256, rec.source)
    return {
        "rec": rec,
        "labels": rec.labels[:5],
        "history": console.history.of(rec.product_id),
        "mismatch": "category_mismatch" in rec.flags,
    }


async def photo(request: web.Request) -> web.StreamResponse:
    """A photo by sha256, fetched from the listing on Kafka."""
    console: Console = request.app[CONSOLE]
    try:
        data, media = await console.photos.get(request.match_info["sha"])
    except PhotoError as exc:
        return web.Response(status=404, text=str(exc))
    response = web.Response(body=data, content_type=media)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


async def decision(request: web.Request) -> web.StreamResponse:
    """Record a decision: on Kafka first, then the item leaves the queue."""
    console: Console = request.app[CONSOLE]
    form = await request.post()
    product_id, event_id = str(form.get("product_id", "")), str(form.get("event_id", ""))
    item = console.queue.get(product_id)
    back = str(form.get("back", "/"))
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    if item is None or item.record.event_id != event_id:
        return _see_other(back)  # decided meanwhile (another tab, another reviewer)
    session = _signed_in(request)
    assert session.reviewer is not None
    label = form.get("label")
    try:
        correction = decide(
            item.record,
            str(form.get("decision", "")),
            reviewer=session.reviewer,
            taxonomy=console.taxonomy,
            now=datetime.now(UTC),
            label=label if isinstance(label, str) else None,
        )
    except DecisionError as exc:
        return web.Response(status=400, text=str(exc))
    await console.feed.publish(correction)
    return _see_other(back)


async def labels(request: web.Request) -> web.StreamResponse:
    """Taxonomy search: labels containing ``q``, with their categories (JSON)."""
    console: Console = request.app[CONSOLE]
    found = console.taxonomy.search(request.query.get("q", ""))
    return web.json_response([{"label": lab, "category": cat} for lab, cat in found])


async def healthz(request: web.Request) -> web.StreamResponse:
    """200 once the corrections are read and the review topics subscribed."""
    console: Console = request.app[CONSOLE]
    return web.Response(status=200 if console.feed.ready.is_set() else 503, text="")


def build_app(console: Console) -> web.Application:
    """The aiohttp application; the caller starts and stops ``console.feed``."""
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[CONSOLE] = console
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", queue_page)
    app.router.add_get("/photo/{sha:[0-9a-f]{64}}", photo)
    app.router.add_post("/decide", decision)
    app.router.add_get("/labels", labels)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", HERE / "static", follow_symlinks=False)
    return app
