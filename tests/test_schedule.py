from datetime import UTC, datetime, timedelta

import pytest

from bot import schedule
from bot.models import Preferences

BERLIN = Preferences(digest_at="07:00", timezone="Europe/Berlin")


@pytest.mark.reliability
@pytest.mark.parametrize(
    "days",
    [
        # Around the spring-forward night (29 March 2026) and the fall-back night (25 October 2026).
        (datetime(2026, 3, 28), datetime(2026, 3, 29), datetime(2026, 3, 30)),
        (datetime(2026, 10, 24), datetime(2026, 10, 25), datetime(2026, 10, 26)),
    ],
)
def test_daily_digest_runs_once_a_day_at_local_time_across_dst(days: tuple[datetime, ...]) -> None:
    trigger = schedule.trigger(BERLIN)
    assert trigger is not None
    start = days[0].replace(tzinfo=UTC) - timedelta(hours=3)
    fires = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < days[-1].replace(tzinfo=UTC) + timedelta(days=1):
        fires.append(fire)
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    assert [f.date() for f in fires] == [d.date() for d in days]
    assert all((f.hour, f.minute) == (7, 0) for f in fires)
    assert len({f.astimezone(UTC).hour for f in fires}) == 2  # the UTC hour moves with DST


def test_last_slot_is_the_latest_fire_time_not_after_now() -> None:
    now = datetime(2026, 3, 29, 5, 30, tzinfo=UTC)  # 07:30 in Berlin, after the switch
    slot = schedule.last_slot(BERLIN, now)
    assert slot is not None and slot.astimezone(UTC) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)
    early = schedule.last_slot(BERLIN, datetime(2026, 3, 29, 4, 0, tzinfo=UTC))
    assert early is not None and early.day == 28


def test_interval_slots_are_stable_across_restarts() -> None:
    prefs = Preferences(digest_at=None, digest_every_hours=6, timezone="UTC")
    now = datetime(2026, 5, 5, 13, 12, tzinfo=UTC)
    assert schedule.last_slot(prefs, now) == datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    assert schedule.last_slot(prefs, now + timedelta(minutes=30)) == schedule.last_slot(prefs, now)


def test_no_digest_when_switched_off() -> None:
    prefs = Preferences(digest_at=None)
    assert schedule.trigger(prefs) is None
    assert schedule.last_slot(prefs, datetime(2026, 1, 1, tzinfo=UTC)) is None


def test_quiet_hours_across_midnight() -> None:
    prefs = Preferences(quiet_start="22:00", quiet_end="07:00", timezone="Europe/Berlin")
    night = datetime(2026, 1, 10, 23, 30, tzinfo=UTC)  # 00:30 in Berlin
    until = schedule.quiet_until(prefs, night)
    assert until is not None and until.astimezone(UTC) == datetime(2026, 1, 11, 6, 0, tzinfo=UTC)
    assert schedule.quiet_until(prefs, datetime(2026, 1, 10, 12, 0, tzinfo=UTC)) is None


def test_bad_values_name_themselves() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        schedule.zone("Mars/Olympus")
    with pytest.raises(ValueError, match="25:99"):
        schedule.parse_hhmm("25:99")


def test_stored_quiet_hours_with_equal_ends_hold_nothing() -> None:
    prefs = Preferences(quiet_start="22:00", quiet_end="22:00")
    for hour in (0, 12, 22, 23):
        assert schedule.quiet_until(prefs, datetime(2026, 1, 10, hour, 0, tzinfo=UTC)) is None
