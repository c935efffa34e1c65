"""The one clock the engine reads.

Logic takes `now` from a Clock instead of calling datetime.now() or SQL now(), so tests can freeze
and move time (freezegun patches datetime.now, which SystemClock calls) and month boundaries,
backoff and reminders are tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone


class Clock:
    def now(self) -> datetime:
        raise NotImplementedError


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass
class ManualClock(Clock):
    """A clock that only moves when told to; for tests and benchmarks."""

    current: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def month_start(moment: datetime | date) -> date:
    """First day of moment's month, in UTC (a timestamptz's month depends on the time zone)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError("naive datetime: the engine only handles aware UTC datetimes")
        moment = moment.astimezone(timezone.utc).date()
    return moment.replace(day=1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + (month.month - 1) + count
    return date(index // 12, index % 12 + 1, 1)


def billing_period(moment: datetime) -> str:
    """'YYYY-MM' of the UTC month, as used in dedupe keys."""
    return month_start(moment).strftime("%Y-%m")
