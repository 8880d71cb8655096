"""The data interval of a run and the window a policy makes of it: ``[start, end)`` in UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ledgerline.errors import LedgerlineError
from training.sources.config import SourceConfig


@dataclass(frozen=True)
class Interval:
    """``[start, end)``: timezone-aware UTC datetimes, ``end`` exclusive."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", utc(self.start))
        object.__setattr__(self, "end", utc(self.end))
        if self.end <= self.start:
            raise LedgerlineError(f"the window {self.label()} is empty: its end must come after its start")

    def label(self) -> str:
        """``2026-10-05..2026-10-12`` (end exclusive); times are shown when not midnight."""
        return f"{moment(self.start)}..{moment(self.end)}"

    @property
    def ds(self) -> date:
        """The window's last day (the run's logical date when the window ends at its end)."""
        return (self.end - timedelta(microseconds=1)).date()

    def days(self) -> list[date]:
        """Every UTC day the window touches, oldest first."""
        first, last = self.start.date(), self.ds
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def utc(moment_: datetime) -> datetime:
    """A datetime in UTC (a naive one is taken as UTC)."""
    return moment_.replace(tzinfo=UTC) if moment_.tzinfo is None else moment_.astimezone(UTC)


def moment(t: datetime) -> str:
    t = utc(t)
    if t.time() == time(0):
        return t.date().isoformat()
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t.microsecond == 0 else t.isoformat()


def parse_moment(value: str | datetime | date, *, what: str = "interval end") -> datetime:
    """An ISO date or datetime as a UTC datetime (a date is its midnight); LedgerlineError otherwise."""
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    text = str(value).strip()
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as exc:
        raise LedgerlineError(f"{what} {value!r} is not an ISO date or datetime (e.g. 2026-10-12T03:00:00Z)") from exc


def end_of_day(logical_date: str | date | None) -> datetime:
    """The exclusive end of a logical date: the next midnight UTC (today's without one)."""
    if logical_date is None:
        day = datetime.now(UTC).date()
    elif isinstance(logical_date, date):
        day = logical_date if not isinstance(logical_date, datetime) else logical_date.date()
    else:
        try:
            day = date.fromisoformat(str(logical_date)[:10])
        except ValueError as exc:
            raise LedgerlineError(f"logical date '{logical_date}' is not a date; use YYYY-MM-DD") from exc
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def window_interval(config: SourceConfig, run_end: datetime) -> Interval:
    """The interval the config's window policy gives a run that ends at ``run_end``."""
    end = utc(run_end)
    w = config.window
    if w.kind == "sliding":
        return Interval(end - timedelta(days=w.days or 0), end)
    assert w.start is not None
    start = datetime.combine(w.start, time(0), tzinfo=UTC)
    if start >= end:
        raise LedgerlineError(
            f"{config.origin}: the expanding window starts {w.start}, after the run's end {moment(end)}; "
            f"use a later --logical-date or an earlier start"
        )
    return Interval(start, end)


def snapshot_key(logical_date: str | date | None, interval_end: datetime) -> str:
    """The snapshot folder of a window: its logical date, plus the end's time when the window does not end at
    the end of that date (a scheduled and a triggered run of one day read different windows)."""
    end = utc(interval_end)
    day = end_of_day(logical_date) - timedelta(days=1)
    if end == day + timedelta(days=1):
        return day.date().isoformat()
    if end.date() == day.date() and end.second == 0 and end.microsecond == 0:
        return f"{day.date().isoformat()}T{end:%H%M}Z"  # e.g. 2026-10-12T0300Z
    return f"{day.date().isoformat()}_{end:%Y%m%dT%H%M%S}Z"
