"""Ground truth of the injected attacks, and the table that stores it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")


@dataclass(frozen=True)
class AttackLabel:
    """One injected attack scenario.

    Parameters
    ----------
    scenario_id : str
        Unique within the organisation.
    family : str
        The scenario family (``permission_fanout``, ``unusual_join``…).
    detector_families : tuple of str
        Detectors expected to fire on it.
    principals : tuple of str
        The acting identities (outside accounts excluded).
    resources : tuple of str
        Resources at the heart of the scenario.
    start, end : datetime
        Event times (UTC) of the first and last attack event.
    expected_min_severity : str
        ``SEV1`` (most severe) … ``SEV4``.
    description : str
        What happened, for the evaluation report.
    event_ids : tuple of str
        ``event_id`` of every attack row.
    """

    scenario_id: str
    family: str
    detector_families: tuple[str, ...]
    principals: tuple[str, ...]
    resources: tuple[str, ...]
    start: datetime
    end: datetime
    expected_min_severity: str
    description: str
    event_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.expected_min_severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.expected_min_severity!r}")
        if self.start > self.end:
            raise ValueError("start after end")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (times as ISO-8601 with ``Z``, tuples as lists)."""
        out = asdict(self)
        for key in ("start", "end"):
            out[key] = _iso(getattr(self, key))
        for key in ("detector_families", "principals", "resources", "event_ids"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttackLabel:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        for key in ("start", "end"):
            values[key] = datetime.fromisoformat(values[key].replace("Z", "+00:00"))
        for key in ("detector_families", "principals", "resources", "event_ids"):
            values[key] = tuple(values[key])
        return cls(**values)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_UTC_MS = pa.timestamp("ms", tz="UTC")
LABELS_SCHEMA = pa.schema([
    pa.field("scenario_id", pa.string()),
    pa.field("family", pa.string()),
    pa.field("detector_families", pa.list_(pa.string())),
    pa.field("principals", pa.list_(pa.string())),
    pa.field("resources", pa.list_(pa.string())),
    pa.field("start", _UTC_MS),
    pa.field("end", _UTC_MS),
    pa.field("expected_min_severity", pa.string()),
    pa.field("description", pa.string()),
    pa.field("event_ids", pa.list_(pa.string())),
    pa.field("seed", pa.uint64()),
    pa.field("updated_at", _UTC_MS),
])


def labels_table(labels: list[AttackLabel], seed: int, updated_at: datetime) -> pa.Table:
    """Labels as an Arrow table of :data:`LABELS_SCHEMA` (the ``scenario_labels`` table)."""
    columns: dict[str, list[Any]] = {f.name: [] for f in LABELS_SCHEMA}
    for label in labels:
        for key, value in asdict(label).items():
            columns[key].append(list(value) if isinstance(value, tuple) else value)
        columns["seed"].append(seed)
        columns["updated_at"].append(updated_at)
    return pa.Table.from_pydict(columns, schema=LABELS_SCHEMA)


#: The labels of a generated organisation. Only stores that hold one (the demo, the
#: evaluation, tests) have this table: ``write_to_store`` creates it, ``init`` never does.
#: Re-seeding the same organisation replaces its labels (same scenario ids).
LABELS_DDL = """CREATE TABLE IF NOT EXISTS scenario_labels (
    `scenario_id` String,
    `family` LowCardinality(String),
    `detector_families` Array(LowCardinality(String)),
    `principals` Array(String),
    `resources` Array(String),
    `start` DateTime64(3, 'UTC'),
    `end` DateTime64(3, 'UTC'),
    `expected_min_severity` LowCardinality(String),
    `description` String,
    `event_ids` Array(String),
    `seed` UInt64,
    `updated_at` DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at) ORDER BY scenario_id"""
