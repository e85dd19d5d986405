"""Load a simulated organisation into a blastwall store (a clickhouse-connect client)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from .labels import LABELS_DDL, labels_table
from .organisation import Organisation, as_organisation
from .spec import OrgSpec
from .stream import iter_access_log


def _ensure_labels_table(client: Any) -> None:
    """Create ``scenario_labels``: only stores that hold a generated organisation have it."""
    client.command(LABELS_DDL)


def write_to_store(client: Any, spec_or_org: OrgSpec | Organisation, batch_rows: int = 200_000) -> dict[str, float]:
    """Insert the catalogue, the access log and the labels into an initialised store.

    Parameters
    ----------
    client : clickhouse_connect.driver.Client
        A client of a store whose contract tables exist.
    spec_or_org : OrgSpec or Organisation
        What to load (a spec is built first).
    batch_rows : int
        Access-log rows generated and inserted at a time.

    Returns
    -------
    dict
        Rows inserted per table (``principals``, ``memberships``, ``resources``,
        ``access_log``, ``scenario_labels``), ``seconds`` spent in total and
        ``events_per_second`` (generation and insertion of the log).
    """
    started = time.perf_counter()
    org = as_organisation(spec_or_org)
    counts: dict[str, float] = {}
    for name, table in (("principals", org.principals), ("memberships", org.memberships),
                        ("resources", org.resources)):
        client.insert_arrow(name, table)
        counts[name] = table.num_rows
    log_started = time.perf_counter()
    rows = 0
    for batch in iter_access_log(org, batch_rows):
        client.insert_arrow("access_log", pa.Table.from_batches([batch]))
        rows += batch.num_rows
    log_seconds = time.perf_counter() - log_started
    counts["access_log"] = rows
    _ensure_labels_table(client)
    if org.labels:
        client.insert_arrow("scenario_labels", labels_table(org.labels, org.spec.seed, datetime.now(UTC)))
    counts["scenario_labels"] = len(org.labels)
    counts["seconds"] = round(time.perf_counter() - started, 3)
    counts["events_per_second"] = round(rows / log_seconds) if log_seconds > 0 else 0
    return counts
