"""Durations as people write them in playbooks and settings: ``30s``, ``5m``, ``1h``, ``1d``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """A positive duration from ``30s``/``5m``/``1h``/``1d``, a number of seconds, or a timedelta.

    Raises
    ------
    ValueError
        Anything else (pydantic reports it as a validation error of the field).
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (30s, 5m, 1h, 1d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a positive duration (30s, 5m, 1h, 1d)")
    return timedelta(seconds=seconds)
