"""The API's aiohttp application (middlewares: problems, authentication) and `ApiServer`, its own
listener on `api.listen` in a thread with its own loop (engine/web_thread.py), as notifyd runs it."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from aiohttp import web

from engine.api import routes
from engine.api import silences as silence_routes   # registers its @route()s
from engine.api.auth import FailedAuthLimiter, bearer_token
from engine.api.console import make_console_app
from engine.api.event_batches import EventBatches
from engine.api.openapi import build_document
from engine.api.problems import PROBLEM_CONTENT_TYPE, ApiProblem
from engine.config import ApiConfig
from engine.errors import BadInput
from engine.tokens import TokenCache, authenticate, cached_token
from engine.web_thread import ThreadedAiohttpServer

log = logging.getLogger("engine.api")

LIMITER_KEY = web.AppKey("failed_auth_limiter", FailedAuthLimiter)
# Engine calls block (SQLAlchemy); this many run at once, within the notify pool's reach.
BLOCKING_THREADS = 8


def make_api_app(engine_app, settings: ApiConfig, *, executor: Optional[ThreadPoolExecutor] = None,
                 limiter: Optional[FailedAuthLimiter] = None) -> web.Application:
    """The aiohttp application over an open engine.app.App."""
    pool = executor or ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="api")
    limiter = limiter or FailedAuthLimiter(settings.auth_failure_burst, float(settings.auth_failure_interval))
    token_cache = TokenCache(float(settings.token_cache))

    async def run_blocking(call):
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    @web.middleware
    async def problems(request: web.Request, handler):
        try:
            return await handler(request)
        except ApiProblem as problem:
            return problem.response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            if exc.status == 413:
                return routes.too_large(settings.max_body_bytes).response()
            return ApiProblem(exc.status, "http-" + str(exc.status), exc.reason,
                              f"{request.method} {request.path}: {exc.reason.lower()}", headers=headers).response()
        except BadInput as exc:   # an engine check no route mapped: still the caller's input
            return routes.engine_problem(exc).response()
        except Exception:  # noqa: BLE001 - logged (through the redaction filter), answered without detail
            log.exception("api: %s %s failed", request.method, request.path)
            return ApiProblem(500, "internal-error", "Internal server error",
                              "the request failed on the server; it is logged").response()

    @web.middleware
    async def require_token(request: web.Request, handler):
        route = routes.route_of(request.match_info.route.handler)
        if route is None or route.scope is None:
            return await handler(request)
        address = request.remote or "unknown"
        wait = limiter.retry_after(address)
        if wait:
            raise ApiProblem(429, "too-many-failed-authentications", "Too many failed authentications",
                             f"too many failed authentications from this address; try again in {wait} s",
                             headers={"Retry-After": str(wait)})
        header = request.headers.get("Authorization")
        presented = bearer_token(header)
        token = None
        if presented is not None:
            # A cached token is answered on the loop; a lookup goes to the thread pool.
            token = cached_token(token_cache, presented) or await run_blocking(
                lambda: authenticate(engine_app, presented, now=engine_app.clock.now(), cache=token_cache))
        if token is None:
            reason = ("no Authorization header" if header is None else
                      "not a Bearer token" if presented is None else "unknown or revoked token")
            emptied = limiter.failed(address)
            # The address and why; never the header's value.
            log.warning("api: authentication failed from %s: %s%s", address, reason,
                        "; further requests from it are refused for a while" if emptied else "")
            raise ApiProblem(401, "unauthorized", "Unauthorized", f"{reason}: send Authorization: Bearer <token>",
                             headers={"WWW-Authenticate": 'Bearer realm="notify-engine"'})
        if not token.allows(route.scope):
            raise ApiProblem(403, "forbidden", "Forbidden",
                             f"token {token.name!r} lacks the scope {route.scope!r} this route needs")
        request[routes.TOKEN_KEY] = token
        return await handler(request)

    app = web.Application(middlewares=[problems, require_token], client_max_size=settings.max_body_bytes)
    app.on_response_prepare.append(label_problems_as_the_client_accepts)
    app[routes.APP_KEY] = engine_app
    app[routes.SETTINGS_KEY] = settings
    app[routes.RUN_KEY] = run_blocking
    app[routes.EVENT_BATCHES_KEY] = EventBatches(engine_app, run_blocking)
    app[LIMITER_KEY] = limiter
    app[routes.STARTED_KEY] = engine_app.clock.now()
    alerts_query = {**routes.ALERTS_QUERY, "limit": {**routes.ALERTS_QUERY["limit"], "maximum": settings.page_max}}
    app[routes.ALERTS_QUERY_KEY] = alerts_query
    app[routes.NOTIFICATIONS_QUERY_KEY] = {**routes.NOTIFICATIONS_QUERY,
                                           "limit": {**routes.NOTIFICATIONS_QUERY["limit"], "maximum": settings.page_max}}
    from engine.cli import package_version

    app[routes.OPENAPI_KEY] = build_document(routes.ROUTES, version=package_version(),
                                                queries={"/v1/alerts": alerts_query, "/v1/notifications": app[routes.NOTIFICATIONS_QUERY_KEY],
                                                         "/v1/silences": silence_routes.silences_query(settings.page_max)})
    for r in routes.ROUTES:
        app.router.add_route(r.method, r.path, r.handler)
    # The web console's HTML pages, beside the API; left out of the OpenAPI document (not API).
    app.add_subapp("/ui", make_console_app(engine_app, settings, run_blocking=run_blocking, limiter=limiter))

    async def shutdown_pool(_app) -> None:
        if executor is None:
            pool.shutdown(wait=True)

    app.on_cleanup.append(shutdown_pool)
    return app


async def label_problems_as_the_client_accepts(request: web.Request, response: web.StreamResponse) -> None:
    # A client that accepts JSON but not problem+json gets the same problem labelled
    # application/json: Alertmanager's clients (amtool, go-openapi) send `Accept: application/json`
    # and refuse to read any other media type, reporting only that.
    if response.content_type == PROBLEM_CONTENT_TYPE and not accepts_problem(request.headers.get("Accept")):
        response.content_type = "application/json"


def accepts_problem(accept) -> bool:
    """False when the Accept header names application/json and nothing that covers problem+json."""
    if not accept:
        return True
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(ranges & {PROBLEM_CONTENT_TYPE, "application/*", "*/*"}) or "application/json" not in ranges


class ApiServer(ThreadedAiohttpServer):
    thread_name = "api"
    description = "HTTP API"

    def __init__(self, engine_app, settings: Optional[ApiConfig] = None):
        self._engine_app = engine_app
        self.settings = settings or engine_app.config.api
        if not self.settings.listen:
            raise BadInput("api.listen: not set; the API is off")
        super().__init__(self.settings.listen)

    async def make_application(self) -> web.Application:
        return make_api_app(self._engine_app, self.settings)


def start_api_if_configured(engine_app) -> Optional[ApiServer]:
    """For notifyd: starts the API when api.listen is set; the caller stop()s it."""
    if not engine_app.config.api.listen:
        return None
    return ApiServer(engine_app).start()
