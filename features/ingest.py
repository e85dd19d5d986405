"""Load contract files (JSON Lines, CSV, Parquet; gzip too) into the store, keeping every bad row.

How it stays fast and bounded: Python only cuts the file into batches of whole lines
(or rows) and numbers them; ClickHouse parses and validates each batch in SQL generated
from :mod:`features.contract`. A batch goes to a ``Memory`` staging table as
``(line, raw JSON)``, is parsed once into a typed staging table with a ``reason`` column,
and then good rows are appended to the contract table (skipping ids the store already
has) and bad rows to ``rejected_rows`` with file, line, reason and the raw text.
"""

from __future__ import annotations

import csv
import gzip
import io
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from features.contract import COLUMNS, Column

#: Read this much of a JSON Lines file per batch: large enough to amortise a round
#: trip, small enough that memory stays flat whatever the file size.
DEFAULT_BATCH_BYTES = 16 * 1024 * 1024
#: Rows per batch for CSV and Parquet, which are re-encoded row by row.
DEFAULT_BATCH_ROWS = 100_000

_ISO_8601 = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)?$"

# Values a column takes when the row leaves it empty (SQL expressions).
_DEFAULTS = {
    ("access_log", "status"): "'ok'",
    ("resources", "updated_at"): "now64(3)",
    ("memberships", "updated_at"): "now64(3)",
    ("principals", "updated_at"): "now64(3)",
}

# What makes a row "the same row" when a file is ingested again.
_IDENTITY = {
    "access_log": ("event_id",),
    "resources": ("resource",),
    "memberships": ("group", "member"),
    "principals": ("principal",),
}


class IngestError(Exception):
    """The file as a whole cannot be ingested (unreadable, unknown format or table)."""


@dataclass
class IngestSummary:
    """What one file contributed.

    Attributes
    ----------
    loaded : int
        Rows appended to the table.
    duplicates : int
        Valid rows skipped because the store (or the same file) already had them.
    rejected : int
        Rows written to ``rejected_rows`` with their reasons.
    """

    file: str
    table: str
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.loaded + self.duplicates + self.rejected

    def add(self, other: IngestSummary) -> None:
        self.loaded += other.loaded
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count


@dataclass(frozen=True)
class _Batch:
    """Whole rows of one file: their 1-based line numbers and one JSON object each."""

    lines: pa.Array  # uint64
    raw: pa.Array  # string
    source_bytes: int  # how far into the (uncompressed) file this batch ends


# --------------------------------------------------------------------------- readers


def _open_binary(path: Path) -> IO[bytes]:
    handle = path.open("rb")
    if handle.read(2) == b"\x1f\x8b":
        handle.seek(0)
        return gzip.GzipFile(fileobj=handle)  # type: ignore[return-value]
    handle.seek(0)
    return handle


def detect_format(path: Path) -> str:
    """``jsonl``, ``csv`` or ``parquet`` from the file name (``.gz`` stripped)."""
    name = path.name.lower().removesuffix(".gz").removesuffix(".gzip")
    formats = (((".jsonl", ".ndjson", ".json"), "jsonl"), ((".csv",), "csv"), ((".parquet", ".pq"), "parquet"))
    for suffixes, fmt in formats:
        if name.endswith(suffixes):
            return fmt
    raise IngestError(f"{path}: unknown format; name it .jsonl, .csv or .parquet (optionally .gz)")


def _jsonl_batches(path: Path, batch_bytes: int) -> Iterator[_Batch]:
    """Cut a JSON Lines file into batches of whole lines without copying them line by line."""
    line_no = 1
    consumed = 0
    carry = b""
    with _open_binary(path) as handle:
        while True:
            chunk = handle.read(batch_bytes)
            data = carry + chunk
            if not chunk:
                if data:  # last line without a trailing newline
                    data += b"\n"
                else:
                    return
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # a single line longer than the batch: keep reading
                carry = data
                continue
            body, carry = data[:cut], data[cut:]
            newlines = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
            offsets = np.empty(len(newlines) + 1, dtype=np.int64)
            offsets[0] = 0
            offsets[1:] = newlines + 1
            # Zero-copy view of the lines; each keeps its '\n' (trimmed in SQL).
            raw = pa.LargeStringArray.from_buffers(len(newlines), pa.py_buffer(offsets), pa.py_buffer(body))
            lines = pa.array(np.arange(line_no, line_no + len(newlines), dtype=np.uint64))
            line_no += len(newlines)
            consumed += len(body)
            yield _Batch(lines, raw, consumed)
            if not chunk:
                return


def _prefetched(batches: Iterator[_Batch]) -> Iterator[_Batch]:
    """Read the next batch in a thread while ClickHouse loads the current one.

    Both sides spend their time outside the GIL (file reads, numpy, the engine), so on
    two cores this hides most of the reading. At most two batches are in memory.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-read") as pool:
        pending = pool.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield batch


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError


def _rows_to_batch(line_numbers: list[int], rows: list[bytes], consumed: int) -> _Batch:
    return _Batch(pa.array(line_numbers, pa.uint64()), pa.array(rows, pa.large_string()), consumed)


def _csv_cell(column: Column | None, text: str) -> Any:
    """A CSV cell as the JSON value the parser expects: arrays and maps are JSON text."""
    if column is not None and column.clickhouse_type.startswith(("Array", "Map")):
        stripped = text.strip()
        if stripped == "":
            return None
        if stripped[0] in "[{":
            try:
                return orjson.loads(stripped)
            except orjson.JSONDecodeError:
                return text  # left as text: the parser rejects it with a reason
        if column.clickhouse_type.startswith("Array"):
            return [part.strip() for part in stripped.split(";") if part.strip()]
    return text


def _csv_batches(path: Path, table: str, batch_rows: int) -> Iterator[_Batch]:
    columns = {c.name: c for c in COLUMNS[table]}
    with _open_binary(path) as binary:
        counted = _CountingReader(binary)
        text = io.TextIOWrapper(counted, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(text)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            return
        lines: list[int] = []
        rows: list[bytes] = []
        start = reader.line_num + 1
        for cells in reader:
            if cells:
                record: dict[str, Any] = {"__cells__": len(cells)} if len(cells) != len(header) else {}
                for name, cell in zip(header, cells):
                    record[name] = _csv_cell(columns.get(name), cell)
                lines.append(start)
                rows.append(orjson.dumps(record))
            start = reader.line_num + 1
            if len(rows) >= batch_rows:
                yield _rows_to_batch(lines, rows, counted.count)
                lines, rows = [], []
        if rows:
            yield _rows_to_batch(lines, rows, counted.count)


def _parquet_batches(path: Path, batch_rows: int) -> Iterator[_Batch]:
    try:
        parquet = pq.ParquetFile(_open_binary(path))
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{path}: not a readable Parquet file ({exc})") from exc
    row_no = 1
    total_rows = max(parquet.metadata.num_rows, 1)
    size = path.stat().st_size
    for record_batch in parquet.iter_batches(batch_size=batch_rows):
        rows = [orjson.dumps(row, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
                for row in _parquet_rows(record_batch)]
        row_no += len(rows)
        # Progress in file bytes, prorated by rows (Parquet is read by row group, not by byte).
        yield _rows_to_batch(list(range(row_no - len(rows), row_no)), rows, size * (row_no - 1) // total_rows)


def _parquet_rows(batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
    # Arrow maps come out as lists of (key, value) pairs; the contract wants objects.
    map_columns = [f.name for f in batch.schema if pa.types.is_map(f.type)]
    for row in batch.to_pylist():
        for name in map_columns:
            if row[name] is not None:
                row[name] = dict(row[name])
        yield row


class _CountingReader(io.RawIOBase):
    """Counts bytes read through it, for the progress bar of row-wise readers."""

    def __init__(self, inner: IO[bytes]):
        self.inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


# --------------------------------------------------------------------------- SQL


def _json_tuple_type(columns: tuple[Column, ...]) -> str:
    """The ``JSONExtract`` type that pulls every column as text in one parse of the line.

    Arrays and maps come out as their raw JSON text too: checking and parsing that small
    fragment is far cheaper than asking ClickHouse to parse the whole line again.
    """
    parts = [f"`{column.name}` Nullable(String)" for column in columns]
    parts.append("`__cells__` Nullable(String)")  # set by the CSV reader on a ragged row
    return f"Tuple({', '.join(parts)})"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _column_sql(table: str, column: Column) -> tuple[str, str | None, list[tuple[str, str]]]:
    """How one column is converted and checked.

    Returns
    -------
    value : str
        The typed value (outer layer), from the middle layer's columns.
    converted : str or None
        A conversion to materialise once in the middle layer as ``c_<name>`` (NULL when
        the text does not convert), because both the value and a check need it.
    checks : list of (condition, reason)
        Conditions that reject the row, in order.
    """
    name = column.name
    text = f"`t_{name}`"  # the field's trimmed text, computed once in the middle layer
    converted = f"`c_{name}`"
    kind = column.clickhouse_type
    default = _DEFAULTS.get((table, name))
    checks: list[tuple[str, str]] = []
    if kind.startswith("Array"):
        value = f"if({text} IN ('', '[]', 'null'), [], arrayFilter(x -> x != '', JSONExtract({text}, 'Array(String)')))"
        checks.append((f"{text} NOT IN ('', 'null') AND NOT startsWith({text}, '[')", f"{name} must be a list"))
        return value, None, checks
    if kind.startswith("Map"):
        value = f"if({text} IN ('', '{{}}', 'null'), map(), JSONExtract({text}, 'Map(String, String)'))"
        checks.append((f"{text} NOT IN ('', 'null') AND NOT startsWith({text}, '{{')", f"{name} must be an object"))
        return value, None, checks
    if column.required:
        checks.append((f"{text} = ''", f"missing {name}"))
    if kind.startswith("DateTime64"):
        conversion = f"if(match({text}, {_quote(_ISO_8601)}), parseDateTime64BestEffortOrNull({text}, 3, 'UTC'), NULL)"
        checks.append((f"{text} != '' AND {converted} IS NULL", f"unparsable {name} (want ISO-8601)"))
        fallback = default or "toDateTime64(0, 3, 'UTC')"
        return f"ifNull({converted}, {fallback})", conversion, checks
    if kind.startswith("UInt"):
        number = f"multiIf({text} IN ('true', 'false'), toString({text} = 'true'), {text} = '', '0', {text})"
        checks.append((f"startsWith({text}, '-')", f"negative {name}"))
        checks.append((f"{converted} IS NULL", f"{name} is not a whole number in range"))
        return f"ifNull({converted}, 0)", f"to{kind}OrNull({number})", checks
    if column.allowed is not None:
        allowed = ", ".join(_quote(v) for v in column.allowed if v)
        checks.append((f"{text} != '' AND {text} NOT IN ({allowed})", f"unknown {name}"))
    return (f"if({text} = '', {default}, {text})" if default else text), None, checks


def _parse_sql(table: str, raw_table: str, parsed_table: str) -> str:
    """One statement that parses and validates a staged batch into typed columns plus a reason.

    Layers: the innermost parses each line once (``JSONExtract`` into a tuple of
    texts), the next materialises each field's trimmed text once, the next each
    conversion (times, integers) once, and the outer one derives typed values and
    the first failing check. Expressions inside a
    short-circuiting ``multiIf`` are not shared, hence the explicit middle layer.
    """
    columns = COLUMNS[table]
    values, conversions, reasons = [], [], []
    for column in columns:
        value, conversion, checks = _column_sql(table, column)
        values.append(f"{value} AS `{column.name}`")
        if conversion is not None:
            conversions.append(f"{conversion} AS `c_{column.name}`")
        reasons.extend(checks)
    # The first failing check names the row's reason; structural problems come first.
    # A line that is not a JSON object extracts as all NULLs, so the costly re-parse that
    # says why runs only for rows missing a required field (multiIf short-circuits).
    conditions = [
        ("required_missing AND NOT isValidJSON(raw)", "malformed JSON"),
        ("required_missing AND JSONType(raw) != 'Object'", "not a JSON object"),
        ("ragged", "wrong number of CSV cells"),
        *reasons,
    ]
    reason = "multiIf(" + ", ".join(f"{cond}, {_quote(why)}" for cond, why in conditions) + ", '')"
    if table == "access_log":
        # A row without an id gets one from its content, so re-ingesting it still dedups.
        identity = "sipHash128(event_time, principal, action, resource, related, grantee, bytes, rows)"
        values[1] = f"if(`t_event_id` = '', concat('h:', lower(hex({identity}))), `t_event_id`) AS `event_id`"
        values.insert(1, "`t_event_id` AS `event_id_given`")
    texts = ", ".join(f"trimBoth(ifNull(j.`{c.name}`, '')) AS `t_{c.name}`" for c in columns)
    converted = "".join(f", {conversion}" for conversion in conversions)
    required_missing = " OR ".join(f"j.`{c.name}` IS NULL" for c in columns if c.required)
    targets = ["line", "reason"] + [value.rsplit(" AS ", 1)[1] for value in values]
    # Blank lines are not rows; the cheap length test keeps trimBoth off ordinary lines.
    parsed_once = f"SELECT line, raw, JSONExtract(raw, {_quote(_json_tuple_type(columns))}) AS j " \
        f"FROM {raw_table} WHERE NOT (length(raw) < 64 AND trim(BOTH ' \\t\\r\\n' FROM raw) = '')"
    texts_once = f"SELECT line, raw, {texts}, ({required_missing}) AS required_missing, " \
        f"j.`__cells__` IS NOT NULL AS ragged FROM ({parsed_once})"
    converted_once = f"SELECT *{converted} FROM ({texts_once})"
    return f"INSERT INTO {parsed_table} ({', '.join(targets)})\n" \
        f"SELECT line, {reason} AS reason, {', '.join(values)}\nFROM ({converted_once})"


# --------------------------------------------------------------------------- the loader


class _Staging:
    """The two Memory tables one ingest works through (raw lines, parsed rows), dropped when it ends."""

    def __init__(self, client: Client, table: str):
        self.client = client
        tag = uuid.uuid4().hex[:12]
        self.raw = f"_ingest_{tag}_raw"
        self.parsed = f"_ingest_{tag}_parsed"
        columns = ", ".join(f"`{c.name}` {c.clickhouse_type}" for c in COLUMNS[table])
        extra = "`event_id_given` String, " if table == "access_log" else ""
        client.command(f"CREATE TABLE {self.raw} (line UInt64, raw String) ENGINE = Memory")
        client.command(
            f"CREATE TABLE {self.parsed} (line UInt64, reason String, {extra}{columns}) ENGINE = Memory"
        )

    def clear(self) -> None:
        self.client.command(f"TRUNCATE TABLE {self.raw}")
        self.client.command(f"TRUNCATE TABLE {self.parsed}")

    def drop(self) -> None:
        for name in (self.raw, self.parsed):
            self.client.command(f"DROP TABLE IF EXISTS {name}")


def drop_leftover_staging(client: Client) -> list[str]:
    """Drop the staging tables of ingests that were killed before they could drop their own.

    Only for a store that one process owns (the embedded store, at open): on a shared
    server another process's ingest may be using its staging tables right now.
    """
    names = [row[0] for row in client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
        " AND match(name, '^_ingest_[0-9a-f]{12}_(raw|parsed)$')").result_rows]
    for name in names:
        client.command(f"DROP TABLE IF EXISTS `{name}`")
    return names


def _dedup_condition(table: str, parsed: str) -> str:
    """Rows of the batch the store does not hold yet (by the table's identity)."""
    key = ", ".join(f"`{c}`" for c in _IDENTITY[table])
    if table == "access_log":
        # Bounded to the batch's time span so the look-up prunes by the sorting key.
        return f"""event_id NOT IN (
    SELECT event_id FROM access_log
    WHERE event_time BETWEEN (SELECT min(event_time) FROM {parsed} WHERE reason = '')
                         AND (SELECT max(event_time) FROM {parsed} WHERE reason = '')
      AND event_id IN (SELECT event_id FROM {parsed} WHERE reason = ''))"""
    # Catalogue rows: the same content as the newest stored version is a duplicate.
    content = [f"`{c.name}`" for c in COLUMNS[table] if c.name != "updated_at"]
    digest = f"cityHash64({', '.join(content)})"
    return f"""({key}, {digest}) NOT IN (
    SELECT {key}, argMax({digest}, updated_at) FROM {table}
    WHERE ({key}) IN (SELECT {key} FROM {parsed} WHERE reason = '')
    GROUP BY {key})"""


def _load_batch(client: Client, table: str, staging: _Staging, batch: _Batch, file_label: str) -> IngestSummary:
    staging.clear()
    client.insert_arrow(staging.raw, pa.table({"line": batch.lines, "raw": batch.raw}))
    client.command(_parse_sql(table, staging.raw, staging.parsed))
    counts = client.query(
        f"SELECT countIf(reason = ''), countIf(reason != '') FROM {staging.parsed}"
    ).result_rows[0]
    valid, rejected = int(counts[0]), int(counts[1])
    summary = IngestSummary(file_label, table, rejected=rejected)
    if rejected:
        client.command(
            f"INSERT INTO rejected_rows (`table`, `file`, line, reason, raw) "
            f"SELECT {{table:String}}, {{file:String}}, line, reason, trim(TRAILING '\\r\\n' FROM raw) "
            f"FROM {staging.parsed} AS parsed INNER JOIN {staging.raw} AS staged USING (line) WHERE reason != ''",
            parameters={"table": table, "file": file_label},
        )
        reasons = client.query(f"SELECT reason, count() FROM {staging.parsed} WHERE reason != '' GROUP BY reason")
        summary.reasons = {reason: int(count) for reason, count in reasons.result_rows}
    if valid:
        names = ", ".join(f"`{c.name}`" for c in COLUMNS[table])
        key = ", ".join(f"`{c}`" for c in _IDENTITY[table])
        is_new = _dedup_condition(table, staging.parsed)
        distinct, stored = client.query(
            f"SELECT uniqExact({key}), uniqExactIf({key}, NOT ({is_new})) FROM {staging.parsed} WHERE reason = ''"
        ).result_rows[0]
        summary.loaded = int(distinct) - int(stored)
        summary.duplicates = valid - summary.loaded
        if summary.loaded:
            # The look-up of stored ids is repeated only when some were found.
            client.command(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging.parsed} "
                f"WHERE reason = ''{f' AND {is_new}' if stored else ''} ORDER BY line LIMIT 1 BY {key}",
                settings={"optimize_on_insert": 0},
            )
    return summary


def ingest_file(
    client: Client,
    path: str | Path,
    table: str = "access_log",
    *,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Load one contract file into ``table``.

    Parameters
    ----------
    client : Client
        An initialised store.
    path : str or Path
        ``.jsonl``/``.ndjson``, ``.csv`` or ``.parquet``, each optionally gzip-compressed.
    table : str
        ``access_log`` (default), ``resources``, ``memberships`` or ``principals``.
    batch_bytes, batch_rows : int
        Batch sizes for JSON Lines and for CSV/Parquet; they bound memory.
    on_progress : callable, optional
        Called with the number of uncompressed bytes consumed so far.

    Returns
    -------
    IngestSummary
        Loaded, duplicate and rejected row counts.

    Raises
    ------
    IngestError
        The table is unknown or the file cannot be read at all; nothing was loaded from it.
    """
    path = Path(path)
    if table not in COLUMNS:
        raise IngestError(f"unknown table {table!r}; choose one of {', '.join(COLUMNS)}")
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    fmt = detect_format(path)
    if fmt == "jsonl":
        batches = _jsonl_batches(path, batch_bytes)
    elif fmt == "csv":
        batches = _csv_batches(path, table, batch_rows)
    else:
        batches = _parquet_batches(path, batch_rows)
    started = time.perf_counter()
    total = IngestSummary(str(path), table)
    staging = _Staging(client, table)
    try:
        for batch in _prefetched(batches):
            total.add(_load_batch(client, table, staging, batch, str(path)))
            if on_progress is not None:
                on_progress(batch.source_bytes)
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: unreadable after {total.rows} rows ({exc})") from exc
    finally:
        staging.drop()
    total.seconds = time.perf_counter() - started
    return total


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class IngestStatus:
    """What the store holds, for the console and the CLI.

    Attributes
    ----------
    rows : dict
        Row count per contract table.
    first_event, last_event : datetime or None
        The span of ``access_log`` event times.
    rejected : dict
        Rejected row count per reason.
    """

    rows: dict[str, int]
    first_event: datetime | None
    last_event: datetime | None
    rejected: dict[str, int]


def ingest_status(client: Client) -> IngestStatus:
    """Counts of every contract table, the event-time span and rejections by reason."""
    rows = {
        table: int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
        for table in COLUMNS
    }
    span = client.query("SELECT min(event_time), max(event_time), count() FROM access_log").result_rows[0]
    first, last = (span[0], span[1]) if span[2] else (None, None)
    rejected = client.query("SELECT reason, count() FROM rejected_rows GROUP BY reason ORDER BY count() DESC")
    return IngestStatus(rows, first, last, {reason: int(n) for reason, n in rejected.result_rows})


def recent_rejections(client: Client, limit: int = 100) -> list[dict[str, Any]]:
    """The newest rejected rows with file, line, reason and the raw text."""
    result = client.query(
        "SELECT rejected_at, `table`, `file`, line, reason, raw FROM rejected_rows "
        "ORDER BY rejected_at DESC, `file`, line LIMIT {limit:UInt32}",
        parameters={"limit": limit},
    )
    return [dict(zip(result.column_names, row)) for row in result.result_rows]
