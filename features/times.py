"""Times as they travel to and from the store: epoch milliseconds, always UTC.

Every package sends times to ClickHouse as ``Int64`` epoch milliseconds in a query
parameter and converts them there with :func:`ms_param`, so no time zone is ever
interpreted on either side. This is the one place those conversions live.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of a time, rounded down; a naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _MS


def bound_ms(moment: datetime) -> int:
    """A window bound in epoch milliseconds, rounded up; a naive time is taken as UTC.

    Events carry milliseconds, so an event is at or after a bound exactly when it is at or
    after the bound's next whole millisecond.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    milliseconds, rest = divmod(moment - EPOCH, _MS)
    return milliseconds + (1 if rest else 0)


def from_epoch_ms(ms: int) -> datetime:
    """The UTC time of epoch milliseconds (as read back from the store)."""
    return EPOCH + timedelta(milliseconds=int(ms))


def ms_param(name: str) -> str:
    """The SQL that turns the ``Int64`` query parameter ``name`` into a UTC ``DateTime64(3)``.

    >>> ms_param("since")
    "fromUnixTimestamp64Milli({since:Int64}, 'UTC')"
    """
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not a query parameter name")
    return f"fromUnixTimestamp64Milli({{{name}:Int64}}, 'UTC')"
