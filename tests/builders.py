"""Builders shared by the tests: contract rows, alerts, loading rows into a store.

Plain functions (importable as ``from builders import ...``: pytest puts ``tests/`` on
``sys.path``, as for ``receiver.py``). Each builder fills what a test does not care about
with the contract's defaults, so a test names only what it is about.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from blastwall.schema import init_schema
from blastwall.store import open_store
from detector.baselines import BaselinePolicy
from detector.detect import DetectConfig
from detector.incidents import Alert, list_incidents
from features.contract import COLUMNS
from features.ingest import IngestSummary, ingest_file

#: Monday 2026-10-05 00:00 UTC: hour of week of ``MONDAY + h`` hours is ``h``.
MONDAY = datetime(2026, 10, 5, tzinfo=UTC)
#: Monday morning: when the alerts of :func:`alert` start by default.
T0 = MONDAY + timedelta(hours=9)
#: Detection settings for the small generated organisations of the tests: few rows per
#: peer group, so baselines start sooner than the production default.
SMALL_ORG_CONFIG = DetectConfig(baseline=BaselinePolicy(min_rows=60))

_files = itertools.count()


def iso(moment: datetime) -> str:
    """``moment`` as the ISO-8601 UTC text of the input files (``...Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    """``moment`` as milliseconds since the Unix epoch (worked out here, not by the code under test)."""
    return int(moment.timestamp() * 1000)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------ contract rows


def event_row(time: datetime, principal: str, action: str, resource: str, **fields: Any) -> dict[str, Any]:
    """An ``access_log`` row with the contract's defaults (status ok, empty strings, no related, no id)."""
    row = {"event_time": time, "event_id": "", "principal": principal, "principal_type": "human", "action": action,
           "resource": resource, "related": [], "grantee": "", "bytes": 0, "rows": 0, "via": "", "status": "ok",
           "source_ip": "", "attributes": {}}
    row.update(fields)
    return row


def resource_row(resource: str, kind: str = "dataset", sensitivity: str = "internal",
                 categories: Iterable[str] = (), sanitized: int = 1, updated_at: datetime = MONDAY) -> dict[str, Any]:
    """A ``resources`` (catalogue) row."""
    return {"resource": resource, "kind": kind, "sensitivity": sensitivity, "categories": list(categories),
            "owner": "", "sanitized": sanitized, "updated_at": updated_at}


def membership_row(group: str, who: str, removed: int = 0, updated_at: datetime = MONDAY) -> dict[str, Any]:
    """A ``memberships`` row: ``who`` (a principal or a group) is in ``group`` (or, ``removed=1``, no longer)."""
    return {"group": group, "member": who, "removed": removed, "updated_at": updated_at}


def principal_row(principal: str, team: str = "", principal_type: str = "human",
                  updated_at: datetime = MONDAY) -> dict[str, Any]:
    """A ``principals`` row, created on :data:`MONDAY`."""
    return {"principal": principal, "principal_type": principal_type, "team": team, "title": "", "manager": "",
            "created_at": MONDAY, "updated_at": updated_at}


def contract_frame(table: str, rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a frame of exactly the contract columns of ``table`` (object dtype keeps Python ints exact)."""
    rows = list(rows)
    return pd.DataFrame({c.name: pd.Series([r[c.name] for r in rows], dtype=object) for c in COLUMNS[table]})


# ------------------------------------------------------------------ the command line


def run_cli(capsys: Any, monkeypatch: Any, *args: str) -> tuple[int, str, str]:
    """Run ``blastwall ARGS`` in this process: its exit code, stdout and stderr."""
    from blastwall.cli import main

    monkeypatch.setattr("sys.argv", ["blastwall", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------ stores


def open_initialised(path: Path) -> Client:
    """An embedded store at ``path`` with the schema applied (close it with ``close_store``)."""
    client = open_store(f"chdb://{path}")
    init_schema(client)
    return client


def ingest_rows(client: Client, folder: Path, table: str, rows: Iterable[dict[str, Any]]) -> IngestSummary:
    """Write ``rows`` (JSON-ready: times as :func:`iso` text) to a JSON Lines file in ``folder`` and ingest it."""
    path = folder / f"{table}-{next(_files)}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return ingest_file(client, path, table)


def incident_fingerprint(client: Client) -> list[tuple]:
    """What detection concluded, comparable across stores: (detector, entity, severity, detected_at) per incident."""
    return sorted((i["detector"], i["entity_key"], i["severity"], i["detected_at"]) for i in list_incidents(client))


# ------------------------------------------------------------------ alerts


def alert(detector: str = "bulk_export", key: str = "alice", severity: str = "SEV3", *, at: datetime = T0,
          entity: str = "principal", score: float = 0.999, principals: Iterable[str] | None = None,
          resources: Iterable[str] = (), explanation: Iterable[dict] = (), **extra: Any) -> Alert:
    """An alert about ``key`` whose evidence runs from ``at`` for 5 minutes, detected 15 minutes after ``at``.

    Its id is detector, key, severity and ``at``: building the same alert twice is a replay;
    another severity or time is a new alert. A principal's alert involves that principal
    unless ``principals`` says otherwise. ``extra`` overrides any other :class:`Alert` field.
    """
    if principals is None:
        principals = (key,) if entity == "principal" else ()
    fields: dict[str, Any] = {
        "alert_id": f"{detector}|{key}|{severity}|{at.isoformat()}", "detector": detector, "entity": entity,
        "entity_key": key, "title": f"{detector} on {key}", "severity": severity, "score": score,
        "principals": tuple(principals), "resources": tuple(resources), "first_seen": at,
        "last_seen": at + timedelta(minutes=5), "detected_at": at + timedelta(minutes=15),
        "explanation": list(explanation),
    }
    return Alert(**(fields | extra))
