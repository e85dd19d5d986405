"""How the console shows things (colours, labels, table rows): presentation only, no decisions."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from detector.incidents import incident_label

# Every ASCII punctuation character can be backslash-escaped in Markdown (CommonMark), and
# escaping all of them disarms links, images, emphasis, HTML, Streamlit's ``:colour[...]``
# and ``:material/...:`` directives and ``$`` maths. Bare URLs, ``www.`` names and e-mail
# addresses are linked even so (GFM autolinks): a zero-width space breaks each trigger.
_ESCAPES = str.maketrans({char: "\\" + char for char in string.punctuation})
_AUTOLINK_TRIGGERS = re.compile(r"(?i)(\\:)(\\/\\/)|(www)(\\.)|()(\\@)")

SEVERITY_COLOURS = {"SEV1": "#d93025", "SEV2": "#f29900", "SEV3": "#1a73e8", "SEV4": "#80868b"}
SEVERITY_BADGE = {"SEV1": "red", "SEV2": "orange", "SEV3": "blue", "SEV4": "gray"}
SEVERITY_MEANING = {"SEV1": "page now", "SEV2": "page", "SEV3": "notify / ticket", "SEV4": "record"}


def text(value: Any) -> str:
    """A value from the data (a log line, a name, an error) as literal text in a Markdown element.

    Anyone who can write a log line controls principal, resource and grantee names; in a
    title, caption, alert or metric they must read as text, never become a link, an image
    (a tracking beacon) or formatting. Newlines become spaces: one element, one line.
    """
    escaped = " ".join(str(value).split()).translate(_ESCAPES)
    return _AUTOLINK_TRIGGERS.sub(lambda m: "\u200b".join(part for part in m.groups() if part is not None),
                                  escaped)


def by_severity(table: pd.DataFrame, column: str = "severity") -> Any:
    """The table with its severity cells (``column``) coloured."""
    def colour(value: str) -> str:
        return f"background-color: {SEVERITY_COLOURS.get(value, '')}; color: white; font-weight: 600"

    return table.style.map(colour, subset=[column])


# --- numbers, sizes and times as people read them ----------------------------------------

_BYTE_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_bytes(value: float | int | None) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as storage and transfer are billed)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    size, unit = float(value), 0
    while abs(size) >= 1000 and unit < len(_BYTE_UNITS) - 1:
        size, unit = size / 1000, unit + 1
    return f"{size:,.0f} {_BYTE_UNITS[unit]}" if unit == 0 or abs(size) >= 10 else f"{size:.1f} {_BYTE_UNITS[unit]}"


def human_count(value: float | int | None) -> str:
    """A count with thousands separators; a fraction keeps at most two decimals; ``None`` is a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    number = float(value)
    return f"{number:,.0f}" if number == round(number) else f"{number:,.2f}".rstrip("0").rstrip(".")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``plural(1, "incident")`` -> ``"1 incident"``; ``plural(3, "incident")`` -> ``"3 incidents"``."""
    return f"{count:,} {noun if count == 1 else (nouns or noun + 's')}"


def viewer_zone(name: str | None) -> tzinfo:
    """The viewer's time zone from the browser's IANA name; UTC when unknown or invalid."""
    try:
        return ZoneInfo(name) if name else UTC
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for malformed names
        return UTC


def ago(moment: datetime, now: datetime) -> str:
    """How long before ``now`` (``"3 min ago"``, ``"2 h ago"``, ``"4 days ago"``; ``"in 5 min"`` ahead)."""
    seconds = (now - moment).total_seconds()
    ahead, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        span = "under a minute" if ahead else "just now"
        return f"in {span}" if ahead else span
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            count = int(seconds // size)
            span = plural(count, unit) if unit == "day" else f"{count} {unit}"
            return f"in {span}" if ahead else f"{span} ago"
    return ""  # unreachable


def when(moment: datetime | pd.Timestamp | None, now: datetime, zone: tzinfo = UTC) -> str:
    """Absolute and relative: ``"07:35 UTC (12 min ago)"`` today, ``"3 Dec 07:35 CET (2 days ago)"`` otherwise.

    The time is in the viewer's zone, named (see :func:`clock`).
    """
    if moment is None or moment is pd.NaT:
        return "—"
    if isinstance(moment, pd.Timestamp):
        moment = moment.to_pydatetime()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{clock(moment, now, zone)} ({ago(moment, now)})"


def duration(delta: timedelta) -> str:
    """``timedelta(seconds=375)`` -> ``"6 min 15 s"``."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")
    if seconds < 86400:
        return f"{seconds // 3600} h" + (f" {seconds % 3600 // 60} min" if seconds % 3600 // 60 else "")
    return plural(seconds // 86400, "day") + (f" {seconds % 86400 // 3600} h" if seconds % 86400 // 3600 else "")


#: Column names shown in words (anything not listed: underscores become spaces, first letter capital).
LABELS: Mapping[str, str] = {
    "event_id": "Event", "event_time": "Time", "principal": "Who", "principal_type": "Kind of identity",
    "resource": "Data", "resource_kind": "Kind of data", "action": "Action", "bytes": "Size", "rows": "Records",
    "via": "Through", "destination": "Destination", "first_time": "First time", "false_positive_rate":
    "False-positive share", "detector": "Detector", "grantee": "Granted to", "through": "Through groups",
    "sensitivity": "Sensitivity", "owner": "Owner", "team": "Team", "at": "When", "actor": "Who",
    "owner_team": "Owner's team", "events": "Events", "reads": "Reads", "denied": "Denied", "first_seen": "First",
    "last_seen": "Last", "first_read": "First read", "last_read": "Last read", "granted_to": "Granted to",
}


def label(column: str) -> str:
    """A column name in words (``false_positive_rate`` -> ``False-positive share``)."""
    return LABELS.get(column, column.replace("_", " ").capitalize())


def readable_table(table: pd.DataFrame, now: datetime, zone: tzinfo = UTC,
                   bytes_columns: tuple[str, ...] = ("bytes", "bytes_read", "bytes_exported", "size"),
                   flag_columns: tuple[str, ...] = ("first_time",)) -> pd.DataFrame:
    """A copy of a table as people read it: times humanised, sizes in units, flags yes/no, labels in words."""
    shown = table.copy()
    for column in shown.columns:
        series = shown[column]
        if column in bytes_columns:
            shown[column] = [human_bytes(v) for v in series]
        elif column in flag_columns:
            shown[column] = ["yes" if bool(v) else "no" for v in series]
        elif pd.api.types.is_datetime64_any_dtype(series) or (
                len(series) and isinstance(series.iloc[0], datetime)):
            shown[column] = [when(v, now, zone) for v in series]
        elif pd.api.types.is_integer_dtype(series) and not pd.api.types.is_bool_dtype(series):
            shown[column] = [human_count(v) for v in series]
        elif pd.api.types.is_float_dtype(series):
            shown[column] = [human_count(v) if pd.notna(v) else "—" for v in series]
        elif series.dtype == object:
            shown[column] = ["—" if v is None else v for v in series]
    return shown.rename(columns=label)


def plain_value(value: Any) -> Any:
    """A value for a JSON drill-down: timestamps as ISO text, numpy numbers as Python numbers."""
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value


# --- the queue, the overview and the playbooks pages --------------------------------------

#: Detection further behind now than this is catching up (its steps are 5 min: three steps).
CATCHING_UP_AFTER = timedelta(minutes=15)
#: The overview's tables, as their counts are named.
TABLE_LABELS: Mapping[str, str] = {"access_log": "Access events", "resources": "Data catalogue entries",
                                   "memberships": "Group memberships", "principals": "Identities"}


def clock(moment: datetime | pd.Timestamp, now: datetime, zone: tzinfo = UTC) -> str:
    """The absolute part of :func:`when`: ``"07:35 UTC"`` today, ``"3 Dec 07:35 UTC"`` otherwise."""
    if isinstance(moment, pd.Timestamp):
        moment = moment.to_pydatetime()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local, local_now = moment.astimezone(zone), now.astimezone(zone)
    shown = f"{local:%H:%M}" if local.date() == local_now.date() else f"{local.day} {local:%b %H:%M}"
    if local.year != local_now.year:
        shown = f"{local.day} {local:%b %Y %H:%M}"
    return f"{shown} {local.tzname() or 'UTC'}"


def age(moment: datetime, now: datetime) -> str:
    """How old something is: ``"12 min"``, ``"2 h"``, ``"3 days"`` (``"just now"`` under a minute)."""
    span = ago(moment, now)
    return span.removesuffix(" ago")


def either(words: list[str] | tuple[str, ...], joiner: str = "or") -> str:
    """``["open", "acknowledged", "contained"]`` -> ``"open, acknowledged or contained"``."""
    words = [str(w).replace("_", " ") for w in words]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {joiner} {words[-1]}"


def matching(count: int) -> str:
    """``"1 incident matches"``, ``"3 incidents match"``."""
    return f"{plural(count, 'incident')} {'matches' if count == 1 else 'match'}"


def incident_option(incident: Mapping[str, Any]) -> str:
    """An incident in a pick list, its title whole: ``"INC-12 · SEV1 · permission_fanout on …"``."""
    return f"{incident_label(incident)} · {incident['severity']} · {incident['title']}"


def incident_row(incident: Mapping[str, Any], now: datetime, zone: tzinfo = UTC) -> dict[str, Any]:
    """One incident as a row of the queue (or any incident list).

    Its reference first, labels in words, its age and detection time, the score to two places.
    """
    principals = list(incident["principals"])
    return {label("ref"): incident_label(incident), label("severity"): incident["severity"],
            label("title"): incident["title"], label("status"): str(incident["status"]).replace("_", " "),
            label("age"): age(incident["detected_at"], now),
            label("detected"): when(incident["detected_at"], now, zone),
            label("score"): f"{float(incident['score']):.2f}", label("detector"): incident["detector"],
            label("principals"): ", ".join(principals[:3]) + (f" and {len(principals) - 3} more"
                                                             if len(principals) > 3 else ""),
            label("assignee"): incident["assignee"] or ""}


def nothing_matches(chosen: list[str], active: tuple[str, ...], default_statuses: bool,
                    closed: Mapping[str, int]) -> str:
    """Why the queue is empty, in words.

    Parameters
    ----------
    chosen : list of str
        The filters the analyst set, in words (:meth:`detector.triage.QueueFilter.chosen`).
    active : tuple of str
        The statuses the queue shows by default.
    default_statuses : bool
        The status filter is the default one.
    closed : mapping
        Closed incidents per final status (``resolved``, ``false_positive``).
    """
    if not chosen:
        sentence = f"No {either(active)} incidents: nothing needs you now."
        closed_now = [plural(n, "incident") + " " + status.replace("_", " ") if status == "resolved"
                      else f"{n:,} marked {status.replace('_', ' ')}" for status, n in closed.items() if n]
        if closed_now:
            sentence += f" Closed: {either(closed_now, 'and')} (choose them under Filters, Status)."
        return sentence
    scope = f"{either(active)} " if default_statuses else ""
    return f"No {scope}incident matches {either(chosen, 'and')}."


def detection_note(progress: Mapping[str, Any], now: datetime, zone: tzinfo = UTC) -> str | None:
    """A line when detection has never run or is more than :data:`CATCHING_UP_AFTER` behind; else ``None``.

    ``progress`` is :func:`detector.runs.health`'s answer.
    """
    mark = progress.get("watermark")
    if mark is None:
        return ("Detection has not processed a step yet: no incident can appear until it runs "
                "(it starts as soon as events are due).")
    lag = timedelta(seconds=int(progress.get("lag_seconds") or 0) // 60 * 60)
    if lag <= CATCHING_UP_AFTER:
        return None
    return (f"Detection is catching up: events are processed up to {clock(mark, now, zone)} "
            f"({duration(lag)} behind); incidents may still appear.")


def paging_note(unrouted: Any) -> str:
    """The paging-not-configured warning; ``unrouted`` is :func:`playbooks.paging.unrouted_pages`'s answer."""
    sentence = "Paging is not configured: pages are recorded but nobody is paged."
    if unrouted.incidents:
        severities = ", ".join(f"{n:,} {severity}" for severity, n in unrouted.by_severity.items())
        where = (f"; routed to {text(either(unrouted.channels, 'and'))}, without a URL" if unrouted.channels
                 else "; the routes name no channel")
        sentence += f" {plural(unrouted.incidents, 'incident')} would have paged someone ({severities}{where})."
    return sentence + ' Configure `paging:` channels in the settings file (see README, "Playbooks and paging").'


def table_label(table: str) -> str:
    """A contract table as its count is named (``access_log`` -> ``Access events``)."""
    return TABLE_LABELS.get(table, label(table))


def quality_table(quality: pd.DataFrame, now: datetime, zone: tzinfo = UTC) -> pd.DataFrame:
    """Detector quality as people read it: the false-positive share in percent, or "no verdicts yet"."""
    shown = quality.copy()
    if "false_positive_rate" in shown.columns:
        shown["false_positive_rate"] = ["no verdicts yet" if v is None or pd.isna(v) else f"{float(v):.0%}"
                                        for v in shown["false_positive_rate"]]
    return readable_table(shown, now, zone)


def controls_table(controls: list[Mapping[str, Any]], refs: Mapping[int, str], now: datetime,
                   zone: tzinfo = UTC) -> pd.DataFrame:
    """Containment in force: what, on whom, for which incident (its reference), by which playbook, since when."""
    return pd.DataFrame([{"Control": str(c["kind"]).replace("_", " "), "On": c["target"],
                          "Incident": refs.get(int(c["incident_id"]), str(c["incident_id"])),
                          "Playbook": str(c["run_id"]).partition(".")[2] or c["run_id"], "Who": c["actor"],
                          "Why": c["reason"], "Since": when(c["at"], now, zone)} for c in controls],
                        columns=["Control", "On", "Incident", "Playbook", "Who", "Why", "Since"])
