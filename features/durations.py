"""Durations as people write them, the same on the command line, in playbooks and in settings.

``30s``, ``90sec``, ``5m``, ``5min``, ``1.5h``, ``1d``, a plain number of seconds, or a
:class:`datetime.timedelta`. This is the one parser every package uses.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

UNITS: dict[str, int] = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}
EXAMPLES = "30s, 5m, 5min, 1h, 1d"
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", re.IGNORECASE)


def parse_duration(value: Any) -> timedelta:
    """A positive duration.

    Parameters
    ----------
    value : str, int, float or timedelta
        ``30s``/``5m``/``5min``/``1h``/``1d`` (see :data:`UNITS`), a number of seconds,
        or a timedelta.

    Raises
    ------
    ValueError
        Anything else, zero or negative (pydantic reports it as the field's error; the
        CLI as one line).
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value))
        unit = match.group(2).lower() if match else ""
        if unit not in UNITS:
            raise ValueError(f"{value!r} is not a duration ({EXAMPLES})")
        seconds = float(match.group(1)) * UNITS[unit]  # type: ignore[union-attr]
    if not seconds > 0:
        raise ValueError(f"{value!r} is not a positive duration ({EXAMPLES})")
    return timedelta(seconds=seconds)


#: A settings field written as a duration (``5m``): pydantic parses it with :func:`parse_duration`.
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
