"""Sources: real audit-log formats mapped into the input contract, one module per format.

A source module (discovered from this folder) defines ``SOURCE``, a :class:`Source`:
its name, what it can and cannot see, how to recognise one of its records, where a
whole-document file keeps its records, and the mapping of one raw record to one contract
``access_log`` row — written as ClickHouse SQL over the record's JSON text, so Python never
loops over events. The mapped rows then go through the same validation as contract files
(``features.ingest``): a record that cannot be mapped is rejected with its file, its
position and the reason, never dropped.

What the contract has no column for stays in ``attributes``, from a documented whitelist
per source, always with ``source`` (the source's name) and the record's own id and type.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """One real log format.

    Attributes
    ----------
    name : str
        What ``ingest --source`` takes.
    description : str
        One line for ``blastwall sources``.
    sees, cannot_see : str
        Which detector families its records can feed, and what the format never shows.
    recognise : callable
        ``recognise(record) -> bool`` on one parsed record, for ``--source auto``.
    record_sql : str
        A ClickHouse expression over ``rec`` (one record's JSON text) giving the contract
        row as a JSON object text; it may use the query parameters of ``parameters``.
    envelope : str
        The key of a whole-document file that holds the records (``Records`` for
        CloudTrail); ``""`` when a document is a bare JSON array of records.
    parameters : dict
        Query parameters ``record_sql`` uses, with their defaults (never formatted in).
    """

    name: str
    description: str
    sees: str
    cannot_see: str
    recognise: Callable[[dict[str, Any]], bool]
    record_sql: str
    envelope: str = ""
    parameters: dict[str, str] = field(default_factory=dict)


def discover() -> dict[str, Source]:
    """Every source of this folder, by name (a module without ``SOURCE`` is not one)."""
    found: dict[str, Source] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        source = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SOURCE", None)
        if isinstance(source, Source):
            if source.name in found:
                raise RuntimeError(f"two sources are named {source.name!r}")
            found[source.name] = source
    if not found:
        # A missing folder must never pass as "no sources": the installation is broken.
        raise RuntimeError("no log sources found in features/sources: the installation is incomplete")
    return found


def recognise(record: dict[str, Any]) -> Source | None:
    """The source whose records look like ``record`` (``None`` when none does)."""
    for source in discover().values():
        try:
            if source.recognise(record):
                return source
        except Exception:  # noqa: BLE001, S112 - a record of another shape; try the next source
            continue
    return None


# --- SQL building blocks the source modules share ----------------------------------------


def text(*path: str | int, rec: str = "rec") -> str:
    """The string at ``path`` in the record (``''`` when missing or not a string).

    A path step is a key, or a 1-based position in an array (an int).
    """
    return f"JSONExtractString({rec}, {_keys(path)})"


def raw(*path: str | int, rec: str = "rec") -> str:
    """The raw JSON text at ``path`` (``''`` when missing)."""
    return f"JSONExtractRaw({rec}, {_keys(path)})"


def _keys(path: tuple[str | int, ...]) -> str:
    return ", ".join(str(p) if isinstance(p, int) else _quote(p) for p in path)


def first_of(*expressions: str) -> str:
    """The first non-empty of several string expressions."""
    return "multiIf(" + ", ".join(f"{e} != '', {e}" for e in expressions) + ", '')"


def in_list(expression: str, values: tuple[str, ...]) -> str:
    return f"{expression} IN ({', '.join(_quote(v) for v in values)})"


def attributes(pairs: dict[str, str]) -> str:
    """A ``Map(String, String)`` of the non-empty values."""
    flat = ", ".join(f"{_quote(k)}, toString({v})" for k, v in pairs.items())
    return f"mapFilter((k, v) -> v != '', map({flat}))"


def contract_row(columns: dict[str, str]) -> str:
    """The contract row as a JSON object text, from one SQL expression per column."""
    types = {"related": "Array(String)", "attributes": "Map(String, String)", "bytes": "UInt64", "rows": "UInt64"}
    names = list(columns)
    values = ", ".join(columns[n] for n in names)
    shape = ", ".join(f"{n} {types.get(n, 'String')}" for n in names)
    return f"toJSONString(CAST(tuple({values}), {_quote(f'Tuple({shape})')}))"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
