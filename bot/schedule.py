"""Digest schedules and quiet hours in each subscriber's own time zone (DST-correct)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.models import Preferences

# Interval digests count from a fixed origin, so "every 6 hours" means the same slots after a
# restart as before it.
_ORIGIN = datetime(2000, 1, 1)


def zone(name: str) -> ZoneInfo:
    """An IANA time zone; ValueError with the name when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)"
        ) from None


def parse_hhmm(value: str) -> time:
    """'08:00' → time(8, 0); ValueError naming the value otherwise."""
    try:
        hours, minutes = value.strip().split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day like 08:00") from None


def trigger(prefs: Preferences) -> BaseTrigger | None:
    """The APScheduler trigger of a chat's digest (None: no scheduled digest)."""
    tz = zone(prefs.timezone)
    if prefs.digest_every_hours:
        return IntervalTrigger(
            hours=prefs.digest_every_hours, start_date=_ORIGIN.replace(tzinfo=tz), timezone=tz
        )
    if prefs.digest_at:
        at = parse_hhmm(prefs.digest_at)
        # Always pass timezone=: a trigger without it uses the machine's zone.
        return CronTrigger(hour=at.hour, minute=at.minute, timezone=tz)
    return None


def last_slot(prefs: Preferences, now: datetime) -> datetime | None:
    """The most recent scheduled digest time at or before `now`."""
    rule = trigger(prefs)
    if rule is None:
        return None
    period = timedelta(hours=prefs.digest_every_hours or 24)
    cursor = rule.get_next_fire_time(None, now - period - timedelta(hours=2))
    last = None
    while cursor is not None and cursor <= now:
        last = cursor
        cursor = rule.get_next_fire_time(cursor, cursor + timedelta(seconds=1))
    return last


def quiet_until(prefs: Preferences, now: datetime) -> datetime | None:
    """When the chat's quiet hours end, if `now` falls inside them."""
    if not prefs.quiet_start or not prefs.quiet_end:
        return None
    tz = zone(prefs.timezone)
    local = now.astimezone(tz)
    start, end = parse_hhmm(prefs.quiet_start), parse_hhmm(prefs.quiet_end)
    if start == end:
        # An empty span, not a whole day (refused by /settings; a stored one must not hold
        # every alert for 24 hours).
        return None
    clock = local.time()
    inside = start <= clock < end if start < end else clock >= start or clock < end
    if not inside:
        return None
    ends = datetime.combine(local.date(), end, tzinfo=tz)
    if ends <= local:
        ends = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
    return ends
