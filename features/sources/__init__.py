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
import re
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
    pulled_by : str
        The command that pulls the source from where it lives (``""``: files only, via
        ``ingest --source``); ``blastwall sources`` shows it.
    reject_sql : str
        Optional: a ClickHouse expression over ``rec`` giving ``''``, or the reason a record
        the mapping cannot place is rejected with (e.g. an unsupported event class), so the
        rejection says why rather than only which contract column ended up empty.
    """

    name: str
    description: str
    sees: str
    cannot_see: str
    recognise: Callable[[dict[str, Any]], bool]
    record_sql: str
    envelope: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    reject_sql: str = ""
    pulled_by: str = ""


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
    return dict(sorted(found.items()))


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


def whole(*path: str | int, rec: str = "rec") -> str:
    """The whole number at ``path`` as ``UInt64`` (0 when missing, negative or not a number).

    Proto3 JSON (Google Cloud's logs) writes 64-bit integers as strings, so a JSON number
    and a numeric string both count.
    """
    return f"toUInt64OrZero(trim(BOTH '\"' FROM JSONExtractRaw({rec}, {_keys(path)})))"


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


# --- one parse per record -----------------------------------------------------------------

_EXTRACT = re.compile(r"JSONExtract(String|Raw|UInt|Int|Float|Bool)\(rec, ((?:'(?:[^'\\]|\\.)*'|\d+)"
                      r"(?:, (?:'(?:[^'\\]|\\.)*'|\d+))*)\)")
_PATH_STEP = re.compile(r"'((?:[^'\\]|\\.)*)'|(\d+)")
_CONVERT = {"String": "{}", "Raw": "{}", "UInt": "toUInt64OrZero({})", "Int": "toInt64OrZero({})",
            "Float": "toFloat64OrZero({})", "Bool": "({} = 'true')"}


@dataclass
class _Node:
    """A key of the record: read whole (as text), or as an object of the keys below it."""

    whole: bool = False
    keys: dict[str, _Node] = field(default_factory=dict)


def single_parse(record_sql: str, alias: str = "_rec") -> tuple[str, list[str]]:
    """Rewrite ``record_sql`` so each record's JSON is parsed once, not once per field.

    ClickHouse parses the whole document for every ``JSONExtract*(rec, …)``; a mapping reads
    dozens of fields, so the parses were most of a source's ingest time. Every such call
    with literal keys is replaced by an element of one ``JSONExtract(rec, 'Tuple(…)')``
    (each leaf a String: an object's or array's JSON text, a string's value, a number's
    digits), converted back to the call's type. A key read both whole and by its keys is
    read whole, and its keys from that (smaller) text; a path with an array position reads
    the array whole and extracts the position from its text.

    Returns
    -------
    expression : str
        ``record_sql`` over the parsed tuples.
    select : list of str
        ``JSONExtract(…) AS name`` items the SELECT that evaluates ``expression`` must list
        (after ``rec``), outermost first.
    """
    root = _Node()
    calls: list[tuple[str, str, tuple[str, ...], tuple[str | int, ...]]] = []
    for match in _EXTRACT.finditer(record_sql):
        steps: list[str | int] = [int(n) if n else _unquote(k) for k, n in _PATH_STEP.findall(match.group(2))]
        keys = tuple(s for s in steps[:next((i for i, s in enumerate(steps) if isinstance(s, int)), len(steps))])
        if not keys:
            continue
        node = root
        for key in keys:
            node = node.keys.setdefault(key, _Node())  # type: ignore[arg-type]
        node.whole = True
        calls.append((match.group(0), match.group(1), keys, tuple(steps[len(keys):])))
    select: list[str] = []
    access: dict[tuple[str, ...], str] = {}

    def parse(node: _Node, text_sql: str, name: str, prefix: tuple[str, ...]) -> None:
        select.append(f"JSONExtract({text_sql}, {_quote(_tuple_type(node))}) AS {name}")
        walk(node, name, prefix)

    def walk(node: _Node, expression: str, prefix: tuple[str, ...]) -> None:
        for key, child in node.keys.items():
            element = f"tupleElement({expression}, {_quote(key)})"
            path = (*prefix, key)
            access[path] = element
            if child.whole and child.keys:
                parse(child, element, f"{alias}_{len(select)}", path)
            elif child.keys:
                walk(child, element, path)

    parse(root, "rec", alias, ())
    rewritten = record_sql
    for call, kind, keys, rest in sorted(set(calls), key=lambda c: -len(c[0])):
        if rest:  # an array position: from the array's own text
            replacement = f"JSONExtract{kind}({access[keys]}, {_keys(rest)})"
        else:
            replacement = _CONVERT[kind].format(access[keys])
        rewritten = rewritten.replace(call, replacement)
    return rewritten, select


def _tuple_type(node: _Node) -> str:
    """The ``Tuple(…)`` type that reads ``node``'s keys (a key read whole is a String)."""
    parts = []
    for key, child in node.keys.items():
        inner = "String" if child.whole or not child.keys else _tuple_type(child)
        parts.append(f"`{key.replace('`', '``')}` {inner}")
    return f"Tuple({', '.join(parts)})"


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal)
