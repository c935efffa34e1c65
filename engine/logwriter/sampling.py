"""Sampling of data_activity.api_access_logs, as the seed suggests ("only 1 in N 200-OKs").

A successful request (2xx) on a route sampled 1 in N is kept once every N requests, and the kept
row's `sample_rate` says how many requests it stands for, so sum(sample_rate) over a period
counts requests (ddl/data_activity/0002, docs/SCHEMA.md). Every other status is always kept with
its own rate: errors and 429s are what alerting and forensics need one by one.

The choice is a counter per rule (not a coin toss): over any run of requests on one rule the
estimate sum(sample_rate) is off by less than N, and tests can assert exact counts.
"""

from __future__ import annotations

import fnmatch
import itertools
from typing import Optional

from engine.config import SamplingConfig
from engine.logwriter.records import ApiAccessLog


class ApiAccessSampler:
    def __init__(self, config: Optional[SamplingConfig] = None):
        config = config or SamplingConfig()
        self.default_rate = config.default_rate
        self._exact = {route: rate for route, rate in config.routes.items() if not _is_glob(route)}
        self._globs = [(route, rate) for route, rate in config.routes.items() if _is_glob(route)]
        self._rule_cache: dict[str, tuple[str, int]] = {}
        self._counters: dict[str, itertools.count] = {}

    @property
    def active(self) -> bool:
        return self.default_rate > 1 or any(rate > 1 for rate in self._exact.values()) or any(
            rate > 1 for _, rate in self._globs)

    def rule_for(self, route: str) -> tuple[str, int]:
        """(rule name, N) for a route; the query string does not take part."""
        path = route.split("?", 1)[0]
        found = self._rule_cache.get(path)
        if found is None:
            if path in self._exact:
                found = (path, self._exact[path])
            else:
                found = next(((glob, rate) for glob, rate in self._globs if fnmatch.fnmatchcase(path, glob)),
                             ("*default*", self.default_rate))
            if len(self._rule_cache) < 10_000:
                self._rule_cache[path] = found
        return found

    def keep(self, record: ApiAccessLog) -> bool:
        """Whether to write this row; a kept sampled row has its sample_rate multiplied by N."""
        if not 200 <= record.status < 300:
            return True
        rule, rate = self.rule_for(record.route)
        if rate <= 1:
            return True
        counter = self._counters.get(rule)
        if counter is None:
            counter = self._counters.setdefault(rule, itertools.count())
        # next() on itertools.count is atomic under the GIL: threads sharing a sampler keep 1 in N.
        if next(counter) % rate:
            return False
        # A service that already sampled upstream sent rows standing for several requests each.
        record.sample_rate = record.sample_rate * rate
        return True


def _is_glob(route: str) -> bool:
    return any(ch in route for ch in "*?[")
