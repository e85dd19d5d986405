"""Create and upgrade every table: each package owns its migrations, this applies them in order.

A migration is ``(version, [statements])`` in a package's ``MIGRATIONS`` list. The
``schema_migrations`` table records each applied ``(package, version)``, so ``init``
runs only what a store has not seen and is safe to run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module

from clickhouse_connect.driver.client import Client

#: Packages that own tables, in dependency order.
MIGRATING_PACKAGES = (
    "features.contract", "features.history", "features.pull", "detector.incidents", "detector.baselines",
    "detector.runs", "detector.risk", "playbooks.actions", "playbooks.engine", "playbooks.paging",
)

_LEDGER_DDL = """CREATE TABLE IF NOT EXISTS schema_migrations (
    `package` LowCardinality(String),
    `version` UInt32,
    `applied_at` DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree ORDER BY (package, version)"""

Migrations = Sequence[tuple[int, Sequence[str]]]


@dataclass(frozen=True)
class AppliedMigration:
    """One migration run by :func:`init_schema`."""

    package: str
    version: int


def registered_migrations() -> dict[str, Migrations]:
    """Every package's migrations, keyed by the package's module name."""
    return {name: import_module(name).MIGRATIONS for name in MIGRATING_PACKAGES}


def applied_versions(client: Client) -> dict[str, int]:
    """The highest applied version per package (empty for a new store)."""
    client.command(_LEDGER_DDL)
    rows = client.query("SELECT package, max(version) FROM schema_migrations GROUP BY package").result_rows
    return {package: int(version) for package, version in rows}


def init_schema(
    client: Client,
    migrations: dict[str, Migrations] | None = None,
    up_to: dict[str, int] | None = None,
) -> list[AppliedMigration]:
    """Apply every migration the store has not run yet.

    Parameters
    ----------
    client : Client
        The store.
    migrations : dict, optional
        Package name to migrations; defaults to :func:`registered_migrations`.
    up_to : dict, optional
        Stop each named package at this version (to build an old store in tests).

    Returns
    -------
    list of AppliedMigration
        What ran now; empty when the store was already current.
    """
    migrations = registered_migrations() if migrations is None else migrations
    done = applied_versions(client)
    applied: list[AppliedMigration] = []
    try:
        for package, steps in migrations.items():
            limit = (up_to or {}).get(package)
            for version, statements in sorted(steps, key=lambda step: step[0]):
                if version <= done.get(package, 0) or (limit is not None and version > limit):
                    continue
                for statement in statements:
                    client.command(statement)
                applied.append(AppliedMigration(package, version))
    finally:
        # Only migrations whose every statement succeeded are recorded (in one insert: a new
        # store applies dozens); a failed one is retried whole next time, which is harmless
        # because each statement is IF [NOT] EXISTS or idempotent.
        if applied:
            client.insert("schema_migrations", [[m.package, m.version] for m in applied],
                          column_names=["package", "version"])
    return applied
