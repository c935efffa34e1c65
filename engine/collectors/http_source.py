"""An HTTP JSON endpoint as a snapshot source, read with httpx.

The body is a JSON array of {tenant_id, base_id, metric, value} objects, or an object with that
array under `snapshots`. trust_env=False: no proxy or .netrc from the environment; redirects are
not followed. A timeout or a bad answer fails this source only.
"""

from __future__ import annotations

import httpx

from engine.collectors import CollectorResult, write_fetched_rows
from engine.config import HttpSourceConfig


class HttpCollector:
    def __init__(self, source: HttpSourceConfig):
        self.source = source
        self.name = f"http:{source.name}"

    def collect(self, app) -> CollectorResult:
        result = CollectorResult(self.name)
        now = app.clock.now()
        try:
            with httpx.Client(trust_env=False, timeout=self.source.timeout, follow_redirects=False) as client:
                response = client.get(self.source.url, headers={"accept": "application/json"})
        except httpx.TimeoutException:
            result.error = f"{self.name}: no answer within {self.source.timeout:g}s"
            return result
        except httpx.HTTPError as exc:
            result.error = f"{self.name}: request failed: {type(exc).__name__}"
            return result
        if response.status_code != 200:
            result.error = f"{self.name}: HTTP {response.status_code}"
            return result
        try:
            body = response.json()
        except ValueError:
            result.error = f"{self.name}: the body is not JSON"
            return result
        rows = body.get("snapshots") if isinstance(body, dict) else body
        if not isinstance(rows, list):
            result.error = f"{self.name}: expected a JSON array of snapshots (or {{\"snapshots\": [...]}})"
            return result
        return write_fetched_rows(app, result, rows, now)
