"""The web console's routes (docs/CONSOLE.md): server-rendered pages under /ui/, beside the HTTP
API in the same aiohttp application and listener, thin over the engine functions the API and the
CLI call (engine/api/console/views.py gathers what each page shows).

Sign-in exchanges an API token of scope operate (or admin) for a session cookie
(engine/api/console/sessions.py); failed sign-ins cost the client's address a unit of the API's
failed-authentication limiter. Every POST needs the session's CSRF token in the form and an Origin
(or Referer) of this site. Pages are plain HTML forms: nothing needs JavaScript.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from importlib import resources
from typing import Awaitable, Callable, Optional
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web

from engine import alerts as engine_alerts
from engine.api.auth import FailedAuthLimiter
from engine.api.console import sessions, views
from engine.config import SEVERITIES, ApiConfig
from engine.errors import BadInput, NotFound
from engine.escalation import ack_timeout_for
from engine.messages import NameBook

log = logging.getLogger("engine.api.console")

PREFIX = "/ui"
MAX_COMMENT = 2000            # as the API's OPERATOR_BODY
MAX_FORM_BYTES = 64 * 1024    # forms are a token, a comment and a CSRF field

ENGINE_KEY = web.AppKey("console_engine_app", object)
RUN_KEY = web.AppKey("console_run_blocking", object)
LIMITER_KEY = web.AppKey("console_limiter", FailedAuthLimiter)
SETTINGS_KEY = web.AppKey("console_settings", ApiConfig)
NAMES_KEY = web.AppKey("console_names", NameBook)
SESSION_KEY = web.RequestKey("console_session", sessions.ConsoleSession) if hasattr(web, "RequestKey") \
    else "console_session"

# Pages that answer without a session.
PUBLIC: set = set()

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send `Origin: null` on form posts, and the origin check
    # below could not tell our own forms from anyone's.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("engine.api.console", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def ago(seconds: Optional[float]) -> str:
    """An age at a glance: 45s, 12m, 3h 5m, 4h, 2d 4h, 2d (a zero second unit left out)."""
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h" + (f" {s % 3600 // 60}m" if s % 3600 // 60 else "")
    return f"{s // 86400}d" + (f" {s % 86400 // 3600}h" if s % 86400 // 3600 else "")


def relative(now: datetime, then: Optional[datetime]) -> str:
    """`in 2h 5m` for a time to come, `12m ago` for one past."""
    if then is None:
        return "-"
    seconds = (then - now).total_seconds()
    return f"in {ago(seconds)}" if seconds > 0 else f"{ago(-seconds)} ago"


def utc(value: Optional[datetime]) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


_templates.filters.update(utc=utc, ago=ago)


class ConsolePageError(Exception):
    """Answered as an HTML page with this status: what went wrong and what to do."""

    def __init__(self, status: int, title: str, message: str, *, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.title, self.message, self.headers = status, title, message, headers or {}


def render(request: web.Request, template: str, *, status: int = 200, headers: Optional[dict] = None,
           **context) -> web.Response:
    session = request.get(SESSION_KEY)
    engine_app = request.app[ENGINE_KEY]
    now = engine_app.clock.now()
    context.setdefault("nav", None)
    page = _templates.get_template(template).render(
        prefix=PREFIX, session=session, csrf=session.csrf_token if session else "",
        now=now, age=lambda then: ago((now - then).total_seconds()) if then else "-",
        relative=lambda then: relative(now, then),
        path=request.path, **context)
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8",
                        headers={**PAGE_HEADERS, **(headers or {})})


def error_page(request: web.Request, status: int, title: str, message: str, headers: Optional[dict] = None):
    return render(request, "error.html.j2", status=status, headers=headers, title=title, message=message)


async def blocking(request: web.Request, fn, *args, **kwargs):
    """An engine call in the API's thread pool (SQLAlchemy blocks)."""
    return await request.app[RUN_KEY](functools.partial(fn, request.app[ENGINE_KEY], *args, **kwargs))


def public(handler):
    PUBLIC.add(handler)
    return handler


# ----------------------------------------------------------------------------- middlewares


@web.middleware
async def pages(request: web.Request, handler):
    """Every failure is an HTML page with its status (never the API's JSON problems)."""
    try:
        return await handler(request)
    except ConsolePageError as exc:
        return error_page(request, exc.status, exc.title, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:
            return error_page(request, 413, "Form too large", "The form sent more than the console accepts.")
        return error_page(request, exc.status, exc.reason, f"{request.method} {request.path}: {exc.reason.lower()}.")
    except NotFound as exc:
        return error_page(request, 404, "Not found", str(exc).split(": ", 1)[-1])
    except BadInput as exc:
        return error_page(request, 400, "Bad input", str(exc))
    except Exception:  # noqa: BLE001 - logged (through the redaction filter), answered without detail
        log.exception("console: %s %s failed", request.method, request.path)
        return error_page(request, 500, "Internal error", "The request failed on the server; it is logged.")


def _allowed_origins(request: web.Request) -> set[str]:
    origins = {f"{request.scheme}://{request.host}"}
    public_url = request.app[ENGINE_KEY].config.messages.public_url
    if public_url:
        parts = urlsplit(public_url)
        origins.add(f"{parts.scheme}://{parts.netloc}")
    return origins


def same_origin(request: web.Request) -> bool:
    """The form came from a page of this site: its Origin, or without one its Referer, is ours
    (the address the request came to, or messages.public_url behind a proxy)."""
    allowed = _allowed_origins(request)
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin in allowed
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" in allowed
    return False


@web.middleware
async def require_session(request: web.Request, handler):
    """A live session for every page but the public ones; for every POST, a form of this site
    carrying the session's CSRF token. Nothing is changed before both checks pass."""
    if request.method == "POST" and not same_origin(request):
        log.warning("console: %s %s refused: Origin %r, Referer %r is not this site", request.method, request.path,
                    request.headers.get("Origin"), request.headers.get("Referer"))
        raise ConsolePageError(403, "Form refused", "This form was not sent from a page of this console "
                               "(its Origin or Referer is another site). Nothing was changed.")
    if handler in PUBLIC:
        return await handler(request)
    cookie = request.cookies.get(sessions.COOKIE_NAME)
    session = await blocking(request, sessions.session_of, cookie, idle=_idle(request)) if cookie else None
    if session is None:
        if request.method != "GET":
            raise ConsolePageError(401, "Signed out", "Your session has ended (signed out, expired, or its token "
                                   "was revoked). Sign in again; nothing was changed.",
                                   headers=_clear_cookie_header(request) if cookie else None)
        if cookie is None and request.headers.get("Sec-Fetch-Site") == "cross-site":
            # A link followed from a mail or chat: SameSite=Strict withheld the cookie. Load the
            # page again from itself (same-site now), which sends it; without one, sign-in follows.
            return web.Response(text='<!doctype html><meta http-equiv="refresh" content="0">',
                                content_type="text/html", headers=PAGE_HEADERS)
        response = web.HTTPSeeOther(f"{PREFIX}/login?" + urlencode({"next": request.path_qs}))
        if cookie:
            response.headers.update(_clear_cookie_header(request))
        raise response
    request[SESSION_KEY] = session
    if request.method == "POST":
        form = await request.post()
        if not sessions.csrf_matches(session, form.get("csrf_token")):
            log.warning("console: %s %s by %s refused: missing or wrong CSRF token", request.method, request.path,
                        session.token.name)
            raise ConsolePageError(403, "Form refused", "The form's security token is missing or does not match "
                                   "this session. Reload the page and send it again; nothing was changed.")
    return await handler(request)


def _cookie_attributes(request: web.Request) -> str:
    public_url = request.app[ENGINE_KEY].config.messages.public_url or ""
    secure = request.secure or public_url.startswith("https://")
    return f"Path={PREFIX}/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")


def _clear_cookie_header(request: web.Request) -> dict:
    return {"Set-Cookie": f"{sessions.COOKIE_NAME}=; Max-Age=0; {_cookie_attributes(request)}"}


# ----------------------------------------------------------------------------- sign-in


def _next_page(value: Optional[str]) -> str:
    """Where to go after sign-in: a console page only (never another site)."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value \
            and not value.startswith(f"{PREFIX}/login"):
        return value
    return f"{PREFIX}/alerts"


def _idle(request: web.Request) -> float:
    return float(request.app[SETTINGS_KEY].console_idle_timeout)


@public
async def login_page(request: web.Request) -> web.StreamResponse:
    cookie = request.cookies.get(sessions.COOKIE_NAME)
    if cookie and await blocking(request, sessions.session_of, cookie, idle=_idle(request)):
        raise web.HTTPSeeOther(_next_page(request.query.get("next")))
    return render(request, "login.html.j2", next=_next_page(request.query.get("next")), error=None,
                  signed_out="signed_out" in request.query)


@public
async def login(request: web.Request) -> web.StreamResponse:
    limiter = request.app[LIMITER_KEY]
    address = request.remote or "unknown"
    form = await request.post()
    next_field = form.get("next")
    next_page = _next_page(next_field if isinstance(next_field, str) else None)
    wait = limiter.retry_after(address)
    if wait:
        return render(request, "login.html.j2", status=429, headers={"Retry-After": str(wait)}, next=next_page,
                      signed_out=False,
                      error=f"Too many failed sign-ins from this address; try again in {wait} s.")
    presented = form.get("token")
    presented = presented if isinstance(presented, str) else ""
    ttl = float(request.app[SETTINGS_KEY].console_session_ttl)
    try:
        session = await blocking(request, sessions.sign_in, presented, ttl=ttl, idle=_idle(request),
                                 client_address=address)
    except sessions.SignInRefused as exc:
        if exc.unknown:
            emptied = limiter.failed(address)
            log.warning("console: sign-in failed from %s: %s%s", address, exc,
                        "; further attempts from it are refused for a while" if emptied else "")
            return render(request, "login.html.j2", status=401, next=next_page, signed_out=False,
                          error="That token is unknown or revoked.")
        log.warning("console: sign-in refused from %s: %s", address, exc)
        return render(request, "login.html.j2", status=403, next=next_page, signed_out=False,
                      error=f"{exc}. Sign in with a token of scope operate or admin.")
    log.info("console: %s signed in from %s", session.token.name, address)
    response = web.HTTPSeeOther(next_page)
    max_age = int(ttl)
    response.headers["Set-Cookie"] = (f"{sessions.COOKIE_NAME}={session.session_id}; Max-Age={max_age}; "
                                      + _cookie_attributes(request))
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    session = request[SESSION_KEY]
    await blocking(request, sessions.sign_out, session.session_id)
    log.info("console: %s signed out", session.token.name)
    response = web.HTTPSeeOther(f"{PREFIX}/login?signed_out=1")
    response.headers.update(_clear_cookie_header(request))
    raise response


# ------------------------------------------------------------------------------- alerts


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(f"{PREFIX}/alerts")


def _filters(request: web.Request) -> dict:
    from detectors import ALL_KINDS

    q = request.query
    status = q.get("status") or "active"
    severity = q.get("severity") or None
    kind = q.get("kind") or None
    tenant = (q.get("tenant") or "").strip() or None
    if status not in views.STATUS_FILTERS:
        raise BadInput(f"status: expected one of {', '.join(views.STATUS_FILTERS)}, got {status!r}")
    if severity is not None and severity not in SEVERITIES:
        raise BadInput(f"severity: expected one of {', '.join(SEVERITIES)}, got {severity!r}")
    if kind is not None and kind not in ALL_KINDS:
        raise BadInput(f"kind: unknown alert kind {kind!r}")
    return {"status": status, "severity": severity, "kind": kind, "tenant_id": tenant}


async def alerts_page(request: web.Request) -> web.Response:
    from detectors import ALL_KINDS

    filters = _filters(request)
    try:
        rows, more = await blocking(request, views.list_alert_rows, request.app[NAMES_KEY], **filters)
    except BadInput as exc:   # a tenant that is not a UUID: say it on the page
        raise ConsolePageError(400, "Bad filter", str(exc).replace("--tenant", "tenant")) from None
    return render(request, "alerts.html.j2", nav="alerts", alerts=rows, more=more, filters=filters,
                  statuses=views.STATUS_FILTERS, severities=SEVERITIES, kinds=list(ALL_KINDS),
                  shown=views.ALERTS_SHOWN)


def _alert_id(request: web.Request) -> str:
    return str(engine_alerts.parse_alert_id(request.match_info["id"]))


# What the ack form offers besides the default (`notifyctl ack --for`): an ack that lapses
# reopens the alert if it is still open, and it is notified again (docs/CONSOLE.md).
ACK_FOR_CHOICES = ("1h", "4h", "8h", "24h")


async def alert_page(request: web.Request) -> web.Response:
    try:
        alert = await blocking(request, views.alert_page, request.app[NAMES_KEY], _alert_id(request))
    except BadInput as exc:
        if isinstance(exc, NotFound):
            raise
        raise NotFound(str(exc)) from None
    default = ack_timeout_for(request.app[ENGINE_KEY].config, alert["severity"])
    return render(request, "alert.html.j2", nav="alerts", alert=alert, done=request.query.get("done"),
                  ack_for_choices=ACK_FOR_CHOICES, ack_for_default=ago(default) if default else None)


async def _operator_action(request: web.Request, action: Callable[..., engine_alerts.ActionResult],
                           verb: str) -> web.StreamResponse:
    ident = _alert_id(request)
    form = await request.post()
    comment = form.get("comment")
    comment = comment.strip() if isinstance(comment, str) and comment.strip() else None
    if comment is not None and len(comment) > MAX_COMMENT:
        raise ConsolePageError(400, "Comment too long", f"A comment is at most {MAX_COMMENT} characters; this one "
                               f"has {len(comment)}. Nothing was changed.")
    session = request[SESSION_KEY]
    result = await blocking(request, action, ident, actor=session.token.name, comment=comment)
    log.info("console: %s: %s", session.token.name, result.message)
    raise web.HTTPSeeOther(f"{PREFIX}/alerts/{ident}?done=" + (verb if result.changed else "nothing"))


async def ack_alert(request: web.Request) -> web.StreamResponse:
    chosen = (await request.post()).get("for")
    try:
        ack_for = engine_alerts.parse_ack_for(chosen.strip() if isinstance(chosen, str) and chosen.strip() else None)
    except BadInput as exc:
        raise ConsolePageError(400, "Bad duration", str(exc).replace("--for", "Lapses after")
                               + ". Nothing was changed.") from None
    return await _operator_action(request, functools.partial(engine_alerts.ack_alert, ack_for=ack_for), "ack")


async def resolve_alert(request: web.Request) -> web.StreamResponse:
    return await _operator_action(request, engine_alerts.resolve_alert, "resolve")


# -------------------------------------------------------------------------- destinations


async def destinations_page(request: web.Request) -> web.Response:
    data = await blocking(request, views.destinations_page, request.app[NAMES_KEY], request.query.get("test"))
    return render(request, "destinations.html.j2", nav="destinations", **data)


async def test_destination(request: web.Request) -> web.StreamResponse:
    ident = request.match_info["id"]
    session = request[SESSION_KEY]
    try:
        notification_id = await blocking(request, views.send_test, ident)
    except BadInput as exc:
        raise NotFound(str(exc)) if "no destination" in str(exc) else exc from None
    log.info("console: %s sent a test notification %s to destination %s", session.token.name, notification_id, ident)
    raise web.HTTPSeeOther(f"{PREFIX}/destinations?test={notification_id}")


# --------------------------------------------------------------------------------- status


async def status_page(request: web.Request) -> web.Response:
    report = await blocking(request, views.status_page)
    return render(request, "status.html.j2", nav="status", report=report)


# ------------------------------------------------------------------------------- silences
# Over engine.silences, as `notifyctl silence add | list | expire` and /v1/silences.


async def silences_page(request: web.Request) -> web.Response:
    data = await blocking(request, views.silence_rows, request.app[NAMES_KEY])
    done = {key: request.query[key] for key in ("added", "expired", "unchanged") if key in request.query}
    return render(request, "silences.html.j2", nav="silences", done=done, **data)


def _silence_form(values: dict[str, str], *, error: Optional[views.SilenceFormError] = None,
                  names: NameBook) -> dict:
    from detectors import ALL_KINDS

    return dict(nav="silences", form=values, error=error, kinds=list(ALL_KINDS), severities=SEVERITIES,
                durations=views.SILENCE_DURATIONS, labels=views.SILENCE_FIELD_LABELS,
                tenant_name=names.get(values.get("tenant")), base_name=names.get(values.get("base")))


async def new_silence_page(request: web.Request) -> web.Response:
    """The add form; prefilled from the query (the alert page's "Silence similar" link gives the
    alert's tenant, kind and base)."""
    values = {field: request.query.get(field, "").strip() for field in views.SILENCE_FORM_FIELDS}
    values["duration"] = values["duration"] or "2h"
    return render(request, "silence_new.html.j2", **_silence_form(values, names=request.app[NAMES_KEY]))


async def add_silence(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    values = {}
    for field in views.SILENCE_FORM_FIELDS:
        value = form.get(field, "")
        values[field] = value.strip() if isinstance(value, str) else ""
    session = request[SESSION_KEY]
    try:
        ident = await blocking(request, views.add_silence_from_form, request.app[NAMES_KEY], values,
                               actor=session.token.name)
    except views.SilenceFormError as exc:
        return render(request, "silence_new.html.j2", status=400,
                      **_silence_form(values, error=exc, names=request.app[NAMES_KEY]))
    log.info("console: %s added silence %s", session.token.name, ident)
    raise web.HTTPSeeOther(f"{PREFIX}/silences?" + urlencode({"added": str(ident)}))


async def expire_silence(request: web.Request) -> web.StreamResponse:
    from engine import silences as engine_silences

    session = request[SESSION_KEY]
    try:
        ident = str(engine_silences.parse_silence_id(request.match_info["id"]))
    except BadInput as exc:
        raise NotFound(str(exc)) from None
    changed = await blocking(request, engine_silences.expire_silence, ident, actor=session.token.name)
    if changed:
        log.info("console: %s expired silence %s", session.token.name, ident)
    raise web.HTTPSeeOther(f"{PREFIX}/silences?" + urlencode({"expired" if changed else "unchanged": ident}))


# ---------------------------------------------------------------------------------- static

_CSS = resources.files("engine.api.console").joinpath("static", "console.css").read_bytes()


@public
async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(body=_CSS, content_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


# ------------------------------------------------------------------------------------ app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/", home),
    ("GET", "/login", login_page),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
    ("GET", "/alerts", alerts_page),
    ("GET", "/alerts/{id}", alert_page),
    ("POST", "/alerts/{id}/ack", ack_alert),
    ("POST", "/alerts/{id}/resolve", resolve_alert),
    ("GET", "/destinations", destinations_page),
    ("POST", "/destinations/{id}/test", test_destination),
    ("GET", "/silences", silences_page),
    ("GET", "/silences/new", new_silence_page),
    ("POST", "/silences", add_silence),
    ("POST", "/silences/{id}/expire", expire_silence),
    ("GET", "/status", status_page),
    ("GET", "/static/console.css", stylesheet),
]


def make_console_app(engine_app, settings: ApiConfig, *, run_blocking, limiter: FailedAuthLimiter) -> web.Application:
    """The console as an aiohttp sub-application, mounted at /ui by engine/api/server.py. It is
    not part of the OpenAPI document: its pages are HTML for people, not API."""
    console = web.Application(middlewares=[pages, require_session], client_max_size=MAX_FORM_BYTES)
    console[ENGINE_KEY] = engine_app
    console[RUN_KEY] = run_blocking
    console[LIMITER_KEY] = limiter
    console[SETTINGS_KEY] = settings
    console[NAMES_KEY] = NameBook(engine_app.config, engine_app)
    for method, path, handler in ROUTES:
        console.router.add_route(method, path, handler)
    return console
