"""A real headless Chromium (Debian's `chromium` package) driven by Playwright, for the pages the
project serves: the console, the confirmation pages a message links to.

Playwright's own browser download is never used (it needs a network this machine does not have):
the system browser is launched by path, with the flags that keep it off the network. Without it
the tests that need it are skipped, naming what is missing (scripts/bootstrap.sh installs it as
root).
"""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# Module scope, not session: while Playwright's sync API is started it leaves its event loop set as
# the running loop of the main thread, so every later asyncio.run() in the same worker (the CLI,
# the dispatcher) would fail with "cannot be called from a running event loop". Stopped after each
# module, it costs a browser start per module that uses it.
@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """A launched playwright Browser (sync API); make a fresh context per test with
    `chromium.new_context()`, which gives it its own cookies."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed: scripts/bootstrap.sh installs it when run as root")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
