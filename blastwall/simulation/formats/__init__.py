"""The labelled organisation written in real log formats, for the sources to read back.

A format module (discovered from this folder) defines ``FORMAT``, a :class:`LogFormat`
named after the source that reads it (:mod:`features.sources`). It turns one contract
row into one raw record of its format, says which columns of that row come back through
the source unchanged, and how the source names each resource (an S3 object for a
CloudTrail dataset, a BigQuery table for GCP…). The catalogue and the labels are
written with the same names, so a replay through the source sees one organisation.

The round trip, writer then source, is the oracle of the sources: for every row, the
columns a format carries come back equal to the native row's (``tests/test_formats.py``).
"""

from __future__ import annotations

import gzip as gzip_module
import importlib
import json
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from ..files import _TableWriter
from ..organisation import Organisation, as_organisation
from ..spec import OrgSpec
from ..stream import iter_access_log


@dataclass(frozen=True)
class LogFormat:
    """One real log format the generator can write.

    Attributes
    ----------
    name : str
        The source that reads it back (``ingest --source NAME``).
    record : callable
        ``record(row, kinds)`` → the raw record (a dict) of one contract row (a dict as
        ``pyarrow`` gives it); ``kinds`` maps each resource to its catalogue kind.
    resource_name : callable
        ``resource_name(resource, kind)`` → the name the source gives that resource.
    carried : callable
        ``carried(row)`` → the contract columns of ``row`` that come back unchanged
        (a resource under ``resource_name``, a group under ``group_name``).
    group_name : callable
        ``group_name(group)`` → the name the format gives a group (``memberships.group``,
        a grantee that is a group); the memberships are written under it too.
    """

    name: str
    record: Callable[[dict[str, Any], dict[str, str]], dict[str, Any]]
    resource_name: Callable[[str, str], str]
    carried: Callable[[dict[str, Any]], tuple[str, ...]]
    group_name: Callable[[str], str] = str


def discover() -> dict[str, LogFormat]:
    """Every format of this folder, by name (a missing folder is an error, never "none")."""
    found: dict[str, LogFormat] = {}
    for module in pkgutil.iter_modules(__path__):
        log_format = getattr(importlib.import_module(f"{__name__}.{module.name}"), "FORMAT", None)
        if isinstance(log_format, LogFormat):
            found[log_format.name] = log_format
    if not found:
        raise RuntimeError("no log formats found in blastwall/simulation/formats: the installation is incomplete")
    return found


def iso_millis(value: Any) -> str:
    """An event time as ISO-8601 UTC with milliseconds (``2026-10-05T09:00:00.123Z``)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def renamed_catalogue(org: Organisation, log_format: LogFormat) -> tuple[pa.Table, dict[str, str], dict[str, str]]:
    """The resources table under the format's names, each resource's kind, and the renaming."""
    resources = org.resources
    names = resources.column("resource").to_pylist()
    kinds = dict(zip(names, resources.column("kind").to_pylist()))
    renaming = {name: log_format.resource_name(name, kinds[name]) for name in names}
    column = resources.schema.get_field_index("resource")
    renamed = resources.set_column(column, "resource", pa.array([renaming[n] for n in names], pa.string()))
    return renamed, kinds, renaming


def groups_of(org: Organisation) -> set[str]:
    """The names that are groups (a ``memberships.group``)."""
    return set(org.memberships.column("group").to_pylist())


def renamed_memberships(org: Organisation, log_format: LogFormat) -> pa.Table:
    """The memberships with every group under the format's name for it (as group and as member)."""
    groups = groups_of(org)
    table = org.memberships
    for column in ("group", "member"):
        names = [log_format.group_name(n) if n in groups else n for n in table.column(column).to_pylist()]
        table = table.set_column(table.schema.get_field_index(column), column, pa.array(names, pa.string()))
    return table


def records(org: Organisation, log_format: LogFormat, batch_rows: int = 100_000) -> Iterator[list[dict[str, Any]]]:
    """The organisation's access log as raw records of ``log_format``, a batch at a time."""
    kinds = dict(zip(org.resources.column("resource").to_pylist(), org.resources.column("kind").to_pylist()))
    for batch in iter_access_log(org, batch_rows):
        yield [log_format.record(row, kinds) for row in batch.to_pylist()]


def write_log_files(spec_or_org: OrgSpec | Organisation, out_dir: str | Path, fmt: str,
                    gzip: bool = False) -> dict[str, int]:
    """Write the organisation with its access log in a real format, for ``ingest --source``.

    The access log goes to ``access_log.<fmt>.jsonl`` (``.gz`` with ``gzip``), one record a
    line; the catalogue (resources under the format's names, memberships, principals)
    goes to contract JSON Lines files, and ``labels.json`` names resources the same way.

    Returns
    -------
    dict
        Rows written per table and the number of labels.
    """
    log_format = discover().get(fmt)
    if log_format is None:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(discover())}")
    org = as_organisation(spec_or_org)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resources, _, renaming = renamed_catalogue(org, log_format)
    counts: dict[str, int] = {}
    tables = {"resources": resources, "memberships": renamed_memberships(org, log_format), "principals": org.principals}
    for name, table in tables.items():
        writer = _TableWriter(out / f"{name}.jsonl", "jsonl", table.schema, False)
        writer.write(table)
        writer.close()
        counts[name] = writer.rows
    path = out / f"access_log.{fmt}.jsonl{'.gz' if gzip else ''}"
    counts["access_log"] = 0
    with (gzip_module.open(path, "wb", compresslevel=5) if gzip else open(path, "wb")) as handle:
        for batch in records(org, log_format):
            handle.write(b"".join(orjson.dumps(record) + b"\n" for record in batch))
            counts["access_log"] += len(batch)
    labels = [label.to_dict() for label in org.labels]
    for label in labels:
        label["resources"] = [renaming.get(r, r) for r in label["resources"]]
    (out / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    counts["labels"] = len(labels)
    return counts
