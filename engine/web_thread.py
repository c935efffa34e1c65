"""An aiohttp application on its own listener, in a thread with its own event loop.

notifyd is thread-based (APScheduler, worker threads); the log-ingestion endpoint and the HTTP API
each run as one of these: `start()` returns once the socket is bound (or raises why it could not
be), `stop()` stops listening, lets the subclass clean up, and returns when done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Optional

from aiohttp import web

log = logging.getLogger(__name__)


class ThreadedLoop:
    """One asyncio loop on a thread of its own. `_start_thread()` returns once the subclass's
    `_main()` set `self._ready` (or raises what stopped it first); `_stop_thread()` sets
    `self._stopped` in that loop and joins. A second stop does nothing."""

    thread_name = "loop"
    description = "server"

    def __init__(self) -> None:
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopped: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._failure: Optional[BaseException] = None

    async def _main(self) -> None:
        raise NotImplementedError

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._failure is not None:
            raise self._failure

    def _stop_thread(self, timeout: float) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and self._stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _serve(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - reported to start(), or logged once running
            if not self._ready.is_set():
                self._failure = exc
                self._ready.set()
            else:
                log.error("%s stopped: %s", self.description, exc)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await self._main()


class ThreadedAiohttpServer(ThreadedLoop):
    thread_name = "http-server"
    description = "HTTP server"

    def __init__(self, listen: str):
        super().__init__()
        self.listen = listen
        self.port: Optional[int] = None

    async def make_application(self) -> web.Application:
        raise NotImplementedError

    async def after_stop(self) -> None:
        """Runs in the server's loop once the listener is closed (flush buffers and the like)."""

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self):
        self._start_thread()
        return self

    def stop(self) -> None:
        self._stop_thread(timeout=60)

    async def _main(self) -> None:
        runner = web.AppRunner(await self.make_application(),
                               access_log=None)   # an access log line would carry nothing we need
        await runner.setup()
        try:
            port = int(self.listen.rpartition(":")[2])
            site = web.TCPSite(runner, self.host, port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            self._ready.set()
            log.info("%s listening on %s", self.description, self.url)
            await self._stopped.wait()
        finally:
            await runner.cleanup()
            await self.after_stop()
