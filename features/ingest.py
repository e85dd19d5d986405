"""Load contract files (JSON Lines, CSV, Parquet; gzip too) into the store, keeping every bad row.

How it stays fast and bounded: Python only cuts the file into batches of whole lines
(or rows) and numbers them; ClickHouse parses and validates each batch in SQL generated
from :mod:`features.contract`. A batch goes to a ``Memory`` staging table as
``(line, raw JSON, reader reason)``, is parsed once into a typed staging table with a
``reason`` column, and then good rows are appended to the contract table (skipping ids
the store already has, looked up by id alone in ``event_ids``) and bad rows to
``rejected_rows`` with file, line, reason and the raw text, once per ``(file, line)``:
ingesting a file again adds no rejection rows, though its summary still counts them.

Limits, each rejected with its own reason rather than loaded wrong:

- A line (JSON Lines: bytes; CSV: characters of one physical line) longer than
  :data:`MAX_LINE_BYTES` (16 MiB) is rejected as ``line longer than 16 MiB`` without
  being read into memory whole: past the limit the reader skips to the line's end,
  keeping a 1 KiB prefix as the raw text. A CSV cell is bounded by the same limit.
- Times are ISO-8601: a date, optionally ``T`` (or a space) and ``hh:mm[:ss[.fraction]]``
  with hour 00-23, minute and second 00-59 (no leap second), then optionally ``Z``/``z``
  or an offset ``±hh[[:]mm]`` within ±14:00; the day must exist in its month. Anything
  else is ``unparsable <column> (want ISO-8601)``. Years outside 1970-2199 (written, or
  once converted to UTC) are ``<column> outside 1970-2199``: see :data:`FIRST_YEAR`.

A file that breaks part-way (a truncated or corrupt gzip stream, a read error) keeps
the rows before the break; :attr:`IngestSummary.broken` says where it broke.

Real log formats (``source=``, :mod:`features.sources`) take the same path with one more
statement per batch: the source's SQL maps each raw record to a contract row in a third
staging table, which is then validated like a contract file; a rejection keeps the
original record as its raw text and its position in the file as its line.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client

from features.contract import COLUMNS, Column
from features.sources import Source, single_parse
from features.sources import discover as discover_sources
from features.sources import recognise as recognise_source

#: Read this much of a JSON Lines file per batch: large enough to amortise a round
#: trip, small enough that memory stays flat whatever the file size.
DEFAULT_BATCH_BYTES = 16 * 1024 * 1024
#: Rows per batch for CSV and Parquet, which are re-encoded row by row.
DEFAULT_BATCH_ROWS = 100_000
#: The longest line a row may be (16 MiB; JSON Lines in bytes, CSV in characters). A
#: longer one is skipped without being read whole and rejected, so one line cannot
#: exhaust memory; it also bounds a CSV cell (``csv.field_size_limit``).
MAX_LINE_BYTES = 16 * 1024 * 1024
#: How much of an over-long or unreadable line is kept as its raw text in ``rejected_rows``.
RAW_PREFIX_BYTES = 1024
#: A whole-document log file (CloudTrail's ``{"Records": [...]}``, a JSON array of records)
#: is read whole, so it is bounded: larger ones are refused (split them, or use JSON Lines).
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024
#: Accepted years, inclusive, in UTC, for every time column of every table (1970-2199):
#: a time outside them is a typo or a placeholder (0001-01-01, 9999-12-31), not an event,
#: and the bound keeps every parse and later time arithmetic far inside DateTime64's range.
FIRST_YEAR, LAST_YEAR = 1970, 2199

# Strict ISO-8601 (see the module docstring). Days that exist in their month; February
# 29th's year is checked in SQL.
_ISO_8601 = (
    r"^\d{4}-((0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31|02-29)"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?)?"
    r"\s*(Z|z|[+-](0\d|1[0-3])(:?[0-5]\d)?|[+-]14(:?00)?)?$"
)

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

# What a reader may hit part-way through a file; the rows before it are kept.
_READ_ERRORS = (OSError, EOFError, zlib.error)


class IngestError(Exception):
    """The file as a whole cannot be ingested (unreadable, unknown format or table)."""


class _Broken(Exception):
    """Raised by a reader after it yielded every whole row before a break in the file."""


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
        Rows rejected by this ingest, with their reasons (each ``(file, line)`` is kept in
        ``rejected_rows`` once, however often the file is ingested).
    broken : str
        Empty, or where and why the file broke part-way (e.g. ``truncated gzip stream
        after line 870 (byte 65,536)``); the rows before the break were ingested.
    """

    file: str
    table: str
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    broken: str = ""

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
    # Per row, a rejection the reader already decided ('' for none); None when no row has one.
    reasons: pa.Array | None = None


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


def _size_text(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size:,} bytes"


def _too_long_reason(limit: int) -> str:
    return f"line longer than {_size_text(limit)}"


def _break_text(exc: BaseException, where: str) -> str:
    """One line for a file that broke part-way: what broke and after which row."""
    if isinstance(exc, EOFError):
        return f"truncated gzip stream after {where}"
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return f"corrupt gzip stream after {where} ({exc})"
    return f"read error after {where} ({exc})"


def _raw_array(rows: list[bytes]) -> pa.LargeStringArray:
    """Rows as one Arrow string column, bytes as they are (the SQL parser judges them)."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in rows], out=offsets[1:])
    return pa.LargeStringArray.from_buffers(len(rows), pa.py_buffer(offsets), pa.py_buffer(b"".join(rows)))


def _rows_to_batch(line_numbers: list[int], rows: list[bytes], consumed: int,
                   reasons: list[str] | None = None) -> _Batch:
    flagged = pa.array(reasons, pa.string()) if reasons is not None and any(reasons) else None
    return _Batch(pa.array(line_numbers, pa.uint64()), _raw_array(rows), consumed, flagged)


def _blocks(handle: IO[bytes], size: int) -> Iterator[bytes]:
    """The stream in blocks of ``size`` bytes, yielding what was read before a read error.

    ``read1`` returns what one decompression step produced, so a gzip stream that breaks
    loses nothing that came before the break (``read(size)`` would drop the whole block).
    """
    read = getattr(handle, "read1", handle.read)
    while True:
        parts: list[bytes] = []
        got = 0
        try:
            while got < size:
                piece = read(size - got)
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
        except _READ_ERRORS:
            if parts:
                yield b"".join(parts)
            raise
        if not parts:
            return
        yield parts[0] if len(parts) == 1 else b"".join(parts)
        if got < size:  # the stream ended
            return


def split_lines(body: memoryview | bytes, first_line: int) -> tuple[np.ndarray, pa.LargeStringArray, pa.Array]:
    """The whole lines of ``body`` as a zero-copy Arrow view (each keeps its ``\\n``, trimmed in SQL).

    Returns the line offsets (one more than the lines), the lines, and their numbers from ``first_line``.
    """
    newlines = np.flatnonzero(np.frombuffer(body, dtype=np.uint8) == 10)
    offsets = np.empty(len(newlines) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = newlines + 1
    raw = pa.LargeStringArray.from_buffers(len(newlines), pa.py_buffer(offsets), pa.py_buffer(body))
    return offsets, raw, pa.array(np.arange(first_line, first_line + len(newlines), dtype=np.uint64))


def _jsonl_batches(path: Path, batch_bytes: int) -> Iterator[_Batch]:
    """Cut a JSON Lines file into batches of whole lines without copying them line by line.

    A line longer than :data:`MAX_LINE_BYTES` is not accumulated: once it passes the
    limit the rest of it is read and dropped, and it comes out as a one-row batch of its
    first :data:`RAW_PREFIX_BYTES` with a reader reason.
    """
    limit = MAX_LINE_BYTES  # read at call time, so a test can lower it
    too_long = _too_long_reason(limit)
    line_no = 1
    consumed = 0  # uncompressed bytes of the lines handed out so far
    pending: list[bytes] = []  # the unfinished last line, in pieces (joined once it ends)
    pending_bytes = 0
    skipping: bytes | None = None  # the prefix of an over-long line being skipped
    skipped_bytes = 0

    def long_line(prefix: bytes, end: int) -> _Batch:
        return _Batch(pa.array([line_no], pa.uint64()), _raw_array([prefix]), end, pa.array([too_long]))

    def whole_lines(body: memoryview | bytes) -> Iterator[_Batch]:
        nonlocal line_no, consumed
        offsets, raw, lines = split_lines(body, line_no)
        # Lines over the limit that still fit a block (rare): cut around them, vectorised.
        long = np.flatnonzero(np.diff(offsets) > limit + 1)
        start = 0
        for index in [*long.tolist(), len(raw)]:
            if index > start:
                yield _Batch(lines.slice(start, index - start), raw.slice(start, index - start),
                             consumed + int(offsets[index]))
            if index < len(raw):
                prefix = bytes(body[offsets[index]: offsets[index] + RAW_PREFIX_BYTES])
                yield _Batch(lines.slice(index, 1), _raw_array([prefix]), consumed + int(offsets[index + 1]),
                             pa.array([too_long]))
            start = index + 1
        line_no += len(raw)
        consumed += len(body)

    with _open_binary(path) as handle:
        try:
            for block in _blocks(handle, batch_bytes):
                if skipping is not None:
                    newline = block.find(b"\n")
                    if newline < 0:
                        skipped_bytes += len(block)
                        continue
                    consumed += skipped_bytes + newline + 1
                    yield long_line(skipping, consumed)
                    line_no += 1
                    skipping, skipped_bytes = None, 0
                    block = block[newline + 1:]
                    if not block:
                        continue
                cut = block.rfind(b"\n") + 1
                if cut == 0:  # no line ends in this block: keep it, unless the line is too long
                    pending.append(block)
                    pending_bytes += len(block)
                    if pending_bytes > limit:
                        skipping, skipped_bytes = b"".join(pending)[:RAW_PREFIX_BYTES], pending_bytes
                        pending, pending_bytes = [], 0
                    continue
                view = memoryview(block)
                body = b"".join([*pending, view[:cut]]) if pending else view[:cut]
                yield from whole_lines(body)
                pending = [block[cut:]] if cut < len(block) else []
                pending_bytes = len(block) - cut
        except _READ_ERRORS as exc:
            # The unfinished line at the break is not a row: it ends where the file broke.
            raise _Broken(_break_text(exc, f"line {line_no - 1} (byte {consumed:,})")) from exc
        if skipping is not None:  # the file ended inside an over-long line
            yield long_line(skipping, consumed + skipped_bytes)
        elif pending_bytes:  # last line without a trailing newline
            yield from whole_lines(b"".join([*pending, b"\n"]))


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
    """Values orjson does not know, as the text the SQL checks accept or reject with a reason."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date | time_of_day):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, timedelta):  # ISO-8601 text: a duration is no count of bytes or rows
        seconds = format(abs(value.total_seconds()), "f").rstrip("0").rstrip(".")
        return f"{'-' if value < timedelta(0) else ''}PT{seconds}S"
    return str(value)  # Decimal and the rest: their text, for the checks to judge


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


class _CsvLines:
    """The physical lines of a CSV text, none longer than ``limit`` characters.

    An over-long line is read in ``limit``-sized pieces and dropped; the csv reader sees
    an empty line in its place (neutral: it opens no quote) and the line's number and
    prefix are kept in :attr:`too_long` for the row that spans it to be rejected.
    """

    def __init__(self, text: io.TextIOBase, limit: int):
        self.text = text
        self.limit = limit
        self.number = 0  # physical lines handed out (the csv reader's line_num)
        self.last = ""  # the latest line, for the raw text of a row the csv module cannot parse
        self.too_long: dict[int, str] = {}

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.limit + 2)
        if not line:
            raise StopIteration
        self.number += 1
        ending = 2 if line.endswith("\r\n") else 1 if line[-1] in "\r\n" else 0
        if len(line) - ending > self.limit:
            self.too_long[self.number] = line[:RAW_PREFIX_BYTES]
            end = line[-1]
            while end != "\n" and (rest := self.text.readline(self.limit + 2)):
                end = rest[-1]
            line = "\n"
        self.last = line
        return line


def _csv_batches(path: Path, table: str, batch_rows: int) -> Iterator[_Batch]:
    columns = {c.name: c for c in COLUMNS[table]}
    limit = MAX_LINE_BYTES
    too_long = _too_long_reason(limit)
    # A cell may be as long as a line (the module's default is 128 KiB). The limit is
    # process-wide (the csv module has no per-reader one), so it is only ever raised.
    csv.field_size_limit(max(csv.field_size_limit(), limit))
    with _open_binary(path) as binary:
        counted = _CountingReader(binary)
        # utf-8-sig: spreadsheet exports start with a BOM. Bytes that are not UTF-8 are
        # kept (surrogateescape) so that their row is rejected rather than altered.
        text = io.TextIOWrapper(counted, encoding="utf-8-sig", errors="surrogateescape", newline="")
        physical = _CsvLines(text, limit)
        reader = csv.reader(physical)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            return
        except csv.Error as exc:
            raise IngestError(f"{path}: unreadable CSV header ({exc})") from exc
        except _READ_ERRORS as exc:
            raise _Broken(_break_text(exc, "the header")) from exc
        if physical.too_long:
            raise IngestError(f"{path}: CSV header {too_long}")
        lines: list[int] = []
        rows: list[bytes] = []
        reasons: list[str] = []

        def reject(line: int, reason: str, raw: str) -> None:
            lines.append(line)
            rows.append(raw.encode("utf-8", "surrogateescape"))
            reasons.append(reason)

        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a quoted cell past the field limit: this row only
                reject(start, f"malformed CSV ({exc})", physical.last[:RAW_PREFIX_BYTES])
                cells = None
            except _READ_ERRORS as exc:
                if rows:
                    yield _rows_to_batch(lines, rows, counted.count, reasons)
                raise _Broken(_break_text(exc, f"line {start - 1}")) from exc
            if physical.too_long:  # rare: a line of this row was skipped
                spanned = [n for n in physical.too_long if n <= reader.line_num]
                prefix = physical.too_long[spanned[0]]
                for n in spanned:
                    del physical.too_long[n]
                if cells is not None:
                    reject(start, too_long, prefix)
            elif cells:
                record = {name: _csv_cell(columns.get(name), cell) for name, cell in zip(header, cells)}
                try:
                    row = orjson.dumps(record)
                except orjson.JSONEncodeError:  # lone surrogates: bytes that were not UTF-8
                    reject(start, "not UTF-8", ",".join(cells)[:RAW_PREFIX_BYTES])
                else:
                    lines.append(start)
                    rows.append(row)
                    reasons.append("" if len(cells) == len(header) else "wrong number of CSV cells")
            start = reader.line_num + 1
            if len(rows) >= batch_rows:
                yield _rows_to_batch(lines, rows, counted.count, reasons)
                lines, rows, reasons = [], [], []
        if rows:
            yield _rows_to_batch(lines, rows, counted.count, reasons)


def _parquet_batches(path: Path, batch_rows: int) -> Iterator[_Batch]:
    try:
        parquet = pq.ParquetFile(_open_binary(path))
    except (pa.ArrowException, *_READ_ERRORS) as exc:
        raise IngestError(f"{path}: not a readable Parquet file ({exc})") from exc
    row_no = 1
    total_rows = max(parquet.metadata.num_rows, 1)
    size = path.stat().st_size
    record_batches = parquet.iter_batches(batch_size=batch_rows)
    while True:
        try:
            record_batch = next(record_batches, None)
        except (pa.ArrowException, *_READ_ERRORS) as exc:
            raise _Broken(_break_text(exc, f"row {row_no - 1}")) from exc
        if record_batch is None:
            return
        rows, reasons = _parquet_rows(record_batch)
        row_no += len(rows)
        # Progress in file bytes, prorated by rows (Parquet is read by row group, not by byte).
        yield _rows_to_batch(list(range(row_no - len(rows), row_no)), rows, size * (row_no - 1) // total_rows,
                             reasons)


def _parquet_column(column: pa.Array) -> pa.Array:
    # Times, dates and decimals as text in Arrow: vectorised, and no Python datetime
    # overflow on year 0 or 10000 (the SQL checks reject those with a reason).
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind) or pa.types.is_decimal(kind):
        try:
            return column.cast(pa.string())
        except pa.ArrowException:
            pass  # left to the Python conversion
    return column


def _parquet_rows(batch: pa.RecordBatch) -> tuple[list[bytes], list[str] | None]:
    """A record batch as JSON objects, and per row a reason when a row cannot be encoded."""
    batch = pa.RecordBatch.from_arrays([_parquet_column(c) for c in batch.columns], names=batch.schema.names)
    # Arrow maps, at any depth (Security Lake nests them in structs), as objects; a map with
    # a repeated key raises and that row is rejected with the reason rather than losing one.
    def encode(row: dict[str, Any]) -> bytes:
        return orjson.dumps(row, default=_json_default, option=orjson.OPT_NON_STR_KEYS)

    try:
        return [encode(row) for row in batch.to_pylist(maps_as_pydicts="strict")], None
    except (TypeError, ValueError, OverflowError, pa.ArrowException):
        pass
    # Some value did not convert (a nested time out of range, say): row by row, this batch only.
    rows: list[bytes] = []
    reasons: list[str] = []
    for index in range(batch.num_rows):
        try:
            rows.append(encode(batch.slice(index, 1).to_pylist(maps_as_pydicts="strict")[0]))
            reasons.append("")
        except (TypeError, ValueError, OverflowError, pa.ArrowException) as exc:
            rows.append(b"{}")
            reasons.append(f"unreadable Parquet value ({exc})")
    return rows, reasons


class _CountingReader(io.RawIOBase):
    """Counts bytes read through it, for the progress bar of row-wise readers."""

    def __init__(self, inner: IO[bytes]):
        self.inner = inner
        self.count = 0
        # read1: a stream that breaks loses nothing that was decompressed before the break.
        self._read = getattr(inner, "read1", inner.read)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


# --------------------------------------------------------------------------- SQL


def _json_tuple_type(columns: tuple[Column, ...]) -> str:
    """The ``JSONExtract`` type that pulls every column as text in one parse of the line.

    Arrays and maps come out as their raw JSON text too: checking and parsing that small
    fragment is far cheaper than asking ClickHouse to parse the whole line again.
    """
    return f"Tuple({', '.join(f'`{column.name}` Nullable(String)' for column in columns)})"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class _ColumnSql:
    """How one column is converted and checked (SQL over the middle layers' columns).

    Attributes
    ----------
    value : str
        The typed value (outer layer).
    flag : str or None
        A classification to materialise once as ``f_<name>``, beside the conversion
        (which may use it).
    conversion : str or None
        A conversion to materialise once as ``c_<name>`` (NULL when the text does not
        convert), because both the value and a check need it.
    checks : list of (condition, reason)
        Conditions that reject the row, in order.
    """

    value: str
    flag: str | None = None
    conversion: str | None = None
    checks: list[tuple[str, str]] = field(default_factory=list)


def _time_sql(name: str, default: str | None) -> _ColumnSql:
    """A DateTime64 column: strict ISO-8601 and years in [FIRST_YEAR, LAST_YEAR].

    ``parseDateTime64BestEffort`` alone rolls invalid fields over (25:00 is the next
    day, +99:99 moves days) and throws on years it cannot represent, so it only sees
    text that the regex (days of the month included) and the year bounds have passed.
    """
    text, flag, converted = f"`t_{name}`", f"`f_{name}`", f"`c_{name}`"
    year = f"toUInt16OrZero(substring({text}, 1, 4))"
    # 0: not ISO-8601, 1: fit to parse, 2: a year outside the bounds. Kept small: the
    # engine analyses this statement anew for every batch. Within the bounds a year is
    # leap when divisible by 4, but for 2100.
    classify = (f"match({text}, {_quote(_ISO_8601)}) * (2 - ({year} BETWEEN {FIRST_YEAR} AND {LAST_YEAR})) "
                f"* (substring({text}, 6, 5) != '02-29' OR ({year} % 4 = 0 AND {year} != 2100))")
    # The regex lets 'z' only be the zone, which the parser wants upper-case.
    conversion = f"if({flag} = 1, parseDateTime64BestEffortOrNull(replaceOne({text}, 'z', 'Z'), 3, 'UTC'), NULL)"
    lowest = f"toDateTime64('{FIRST_YEAR}-01-01 00:00:00', 3, 'UTC')"
    beyond = f"toDateTime64('{LAST_YEAR + 1}-01-01 00:00:00', 3, 'UTC')"
    checks = [
        (f"{text} != '' AND ({flag} = 0 OR ({flag} = 1 AND {converted} IS NULL))",
         f"unparsable {name} (want ISO-8601)"),
        # An offset can carry a bound year across the bound once in UTC.
        (f"{flag} = 2 OR ifNull({converted} < {lowest} OR {converted} >= {beyond}, 0)",
         f"{name} outside {FIRST_YEAR}-{LAST_YEAR}"),
    ]
    fallback = default or "toDateTime64(0, 3, 'UTC')"
    return _ColumnSql(f"ifNull({converted}, {fallback})", classify, conversion, checks)


def _column_sql(table: str, column: Column) -> _ColumnSql:
    """How one column is converted and checked (see :class:`_ColumnSql`)."""
    name = column.name
    text = f"`t_{name}`"  # the field's trimmed text, computed once in the middle layer
    converted = f"`c_{name}`"
    kind = column.clickhouse_type
    default = _DEFAULTS.get((table, name))
    if kind.startswith(("Array", "Map")):
        # Valid JSON that starts with the bracket is that type; checking the first
        # character alone let "[bad" or "{" through as an empty list or map.
        is_array = kind.startswith("Array")
        bracket, empty = ("[", "'[]'") if is_array else ("{", "'{}'")
        if is_array:
            value = f"if({text} IN ('', '[]', 'null'), [], " \
                f"arrayFilter(x -> x != '', JSONExtract({text}, 'Array(String)')))"
        else:
            value = f"if({text} IN ('', '{{}}', 'null'), map(), JSONExtract({text}, 'Map(String, String)'))"
        check = f"{text} NOT IN ('', {empty}, 'null') AND NOT (startsWith({text}, '{bracket}') AND isValidJSON({text}))"
        return _ColumnSql(value, checks=[(check, f"{name} must be {'a list' if is_array else 'an object'}")])
    if kind.startswith("DateTime64"):
        timed = _time_sql(name, default)
        if column.required:
            timed.checks.insert(0, (f"{text} = ''", f"missing {name}"))
        return timed
    checks: list[tuple[str, str]] = []
    if column.required:
        checks.append((f"{text} = ''", f"missing {name}"))
    if kind.startswith("UInt"):
        number = f"multiIf({text} IN ('true', 'false'), toString({text} = 'true'), {text} = '', '0', {text})"
        checks.append((f"startsWith({text}, '-')", f"negative {name}"))
        checks.append((f"{converted} IS NULL", f"{name} is not a whole number in range"))
        return _ColumnSql(f"ifNull({converted}, 0)", conversion=f"to{kind}OrNull({number})", checks=checks)
    if column.allowed is not None:
        allowed = ", ".join(_quote(v) for v in column.allowed if v)
        checks.append((f"{text} != '' AND {text} NOT IN ({allowed})", f"unknown {name}"))
    return _ColumnSql(f"if({text} = '', {default}, {text})" if default else text, checks=checks)


def _parse_sql(table: str, raw_table: str, parsed_table: str) -> str:
    """One statement that parses and validates a staged batch into typed columns plus a reason.

    Layers: the innermost parses each line once (``JSONExtract`` into a tuple of
    texts), the next materialises each field's trimmed text once, the next each
    classification (times) and conversion (times, integers) once, and the outer one
    derives typed values and the first failing check. Expressions inside a
    short-circuiting ``multiIf`` are not shared, hence the explicit middle layers.
    """
    columns = COLUMNS[table]
    values, flags, conversions, reasons = [], [], [], []
    for column in columns:
        sql = _column_sql(table, column)
        values.append(f"{sql.value} AS `{column.name}`")
        if sql.flag is not None:
            flags.append(f"{sql.flag} AS `f_{column.name}`")
        if sql.conversion is not None:
            conversions.append(f"{sql.conversion} AS `c_{column.name}`")
        reasons.extend(sql.checks)
    # The first failing check names the row's reason: the reader's own first (an
    # over-long line, a ragged or non-UTF-8 CSV row), then structural problems.
    # Only a line whose first non-blank character is '{' can be an object (JSONExtract
    # would read an array's values by position), and invalid JSON extracts as all NULLs,
    # so the costly re-parse that says why runs only for rows that fail one of those.
    conditions = [
        ("(not_object OR required_missing) AND NOT isValidJSON(raw)", "malformed JSON"),
        ("not_object", "not a JSON object"),
        *reasons,
    ]
    reason = "multiIf(reader_reason != '', reader_reason, " + \
        ", ".join(f"{cond}, {_quote(why)}" for cond, why in conditions) + ", '')"
    if table == "access_log":
        # A row without an id gets one from its content, so re-ingesting it still dedups.
        identity = "sipHash128(event_time, principal, action, resource, related, grantee, bytes, rows)"
        values[1] = f"if(`t_event_id` = '', concat('h:', lower(hex({identity}))), `t_event_id`) AS `event_id`"
        values.insert(1, "`t_event_id` AS `event_id_given`")
    texts = ", ".join(f"trimBoth(ifNull(j.`{c.name}`, '')) AS `t_{c.name}`" for c in columns)
    flagged = "".join(f", {flag}" for flag in flags)
    converted = "".join(f", {conversion}" for conversion in conversions)
    required_missing = " OR ".join(f"j.`{c.name}` IS NULL" for c in columns if c.required)
    targets = ["line", "reason"] + [value.rsplit(" AS ", 1)[1] for value in values]
    # Blank lines are not rows. Anchored patterns stop at the first character that decides.
    parsed_once = f"SELECT line, raw, reader_reason, JSONExtract(raw, {_quote(_json_tuple_type(columns))}) AS j " \
        f"FROM {raw_table} WHERE reader_reason != '' OR NOT match(raw, '^[ \\t\\r\\n]*$')"
    texts_once = f"SELECT line, raw, reader_reason, {texts}, ({required_missing}) AS required_missing, " \
        f"NOT match(raw, '^[ \\t\\r\\n]*\\\\{{') AS not_object FROM ({parsed_once})"
    converted_once = f"SELECT *{flagged}{converted} FROM ({texts_once})"
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
        client.command(
            f"CREATE TABLE {self.raw} (line UInt64, raw String, reader_reason String DEFAULT '') ENGINE = Memory"
        )
        client.command(
            f"CREATE TABLE {self.parsed} (line UInt64, reason String, {extra}{columns}) ENGINE = Memory"
        )
        # A source's records mapped to contract rows (raw), beside the record as it came.
        self.mapped = f"_ingest_{tag}_mapped"
        client.command(f"CREATE TABLE {self.mapped} (line UInt64, raw String, reader_reason String,"
                       " original String) ENGINE = Memory")

    def clear(self) -> None:
        for name in (self.raw, self.parsed, self.mapped):
            self.client.command(f"TRUNCATE TABLE {name}")

    def drop(self) -> None:
        for name in (self.raw, self.parsed, self.mapped):
            self.client.command(f"DROP TABLE IF EXISTS {name}")


def drop_leftover_staging(client: Client) -> list[str]:
    """Drop the staging tables of ingests that were killed before they could drop their own.

    Only for a store that one process owns (the embedded store, at open): on a shared
    server another process's ingest may be using its staging tables right now.
    """
    names = [row[0] for row in client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
        " AND match(name, '^_ingest_[0-9a-f]{12}_(raw|parsed|mapped)$')").result_rows]
    for name in names:
        client.command(f"DROP TABLE IF EXISTS `{name}`")
    return names


def _dedup_condition(table: str, parsed: str) -> str:
    """Rows of the batch the store does not hold yet (by the table's identity)."""
    key = ", ".join(f"`{c}`" for c in _IDENTITY[table])
    if table == "access_log":
        # By id alone, whatever the time: event_ids (fed from every insert into
        # access_log by a materialised view, see features.contract) is sorted by id,
        # so this is a primary-key look-up of the batch's ids.
        return f"""event_id NOT IN (
    SELECT event_id FROM event_ids
    WHERE event_id IN (SELECT event_id FROM {parsed} WHERE reason = ''))"""
    # Catalogue rows: the same content as the newest stored version is a duplicate.
    content = [f"`{c.name}`" for c in COLUMNS[table] if c.name != "updated_at"]
    digest = f"cityHash64({', '.join(content)})"
    return f"""({key}, {digest}) NOT IN (
    SELECT {key}, argMax({digest}, updated_at) FROM {table}
    WHERE ({key}) IN (SELECT {key} FROM {parsed} WHERE reason = '')
    GROUP BY {key})"""


def _map_sql(source: Source, staging: _Staging, document: str) -> str:
    """The statement that maps a batch's records to contract rows (see :mod:`features.sources`).

    A record that is not a JSON object passes through unmapped, so the contract parser
    rejects it for what it is ("malformed JSON", "not a JSON object").
    """
    is_object = "match(rec, '^[ \\t\\r\\n]*\\{') AND isValidJSON(rec)"
    record_sql, reject_sql, parsed = _single_parse(source.record_sql, source.reject_sql)
    mapped = f"if({is_object}, {record_sql}, rec)"
    # The source's own reason for a record it cannot place (e.g. an unsupported class).
    rejected = f"if({is_object}, {reject_sql}, '')" if reject_sql else "''"
    if document:  # one staged row holds the whole document: its records, numbered from 1
        records = f"JSONExtractArrayRaw(raw{', ' + _quote(source.envelope) if document == 'envelope' else ''})"
        if document == "object":  # the document is one record
            records = "[raw]"
        # A document that is not valid JSON cannot be told apart into records: it passes
        # through whole, as line 1, for the parser to reject ("malformed JSON").
        rows = (f"SELECT position AS line, '' AS reader_reason, recs[position] AS rec FROM ("
                f"SELECT {records} AS recs, arrayJoin(arrayEnumerate(recs)) AS position FROM {staging.raw}"
                f" WHERE isValidJSON(raw)) UNION ALL SELECT 1, '', raw FROM {staging.raw} WHERE NOT isValidJSON(raw)")
    else:
        rows = (f"SELECT line, reader_reason, trimRight(raw) AS rec FROM {staging.raw}"
                f" WHERE reader_reason != '' OR NOT match(raw, '^[ \\t\\r\\n]*$')")
    # The record is parsed in an inner query, so its fields are columns the mapping reads,
    # not expressions it might evaluate again.
    parsed_rows = f"SELECT line, reader_reason, rec, {', '.join(parsed)} FROM ({rows})"
    return (f"INSERT INTO {staging.mapped} (line, raw, reader_reason, original) "
            f"SELECT line, if(reader_reason != '', rec, {mapped}),"
            f" if(reader_reason != '', reader_reason, {rejected}), rec FROM ({parsed_rows})")


@functools.lru_cache(maxsize=64)
def _single_parse(record_sql: str, reject_sql: str) -> tuple[str, str, tuple[str, ...]]:
    """The source's SQL reading each record's JSON once (:func:`features.sources.single_parse`)."""
    both, parsed = single_parse(f"{record_sql}\x00{reject_sql}")
    record, reject = both.split("\x00")
    return record, reject, tuple(parsed)


def _load_batch(client: Client, table: str, staging: _Staging, batch: _Batch, file_label: str,
                source: Source | None = None, document: str = "") -> IngestSummary:
    staging.clear()
    staged = {"line": batch.lines, "raw": batch.raw}
    if batch.reasons is not None:
        staged["reader_reason"] = batch.reasons
    client.insert_arrow(staging.raw, pa.table(staged))
    parse_from, raw_text = staging.raw, "raw"
    if source is not None:
        # Without short-circuiting: lazily evaluated branches each re-read the parsed record,
        # which made the mapping several times slower (benchmarks/sources.py).
        client.command(_map_sql(source, staging, document), parameters=dict(source.parameters),
                       settings={"short_circuit_function_evaluation": "disable"})
        parse_from, raw_text = staging.mapped, "original"
    client.command(_parse_sql(table, parse_from, staging.parsed))
    counts = client.query(
        f"SELECT countIf(reason = ''), countIf(reason != '') FROM {staging.parsed}"
    ).result_rows[0]
    valid, rejected = int(counts[0]), int(counts[1])
    summary = IngestSummary(file_label, table, rejected=rejected)
    if rejected:
        # Once per (table, file, line): a re-ingest or a resumed ingest adds no rows here.
        client.command(
            f"INSERT INTO rejected_rows (`table`, `file`, line, reason, raw) "
            f"SELECT {{table:String}}, {{file:String}}, line, reason, trim(TRAILING '\\r\\n' FROM {raw_text}) "
            f"FROM {staging.parsed} AS parsed INNER JOIN {parse_from} AS staged USING (line) "
            f"WHERE reason != '' AND line NOT IN ("
            f"SELECT line FROM rejected_rows WHERE `file` = {{file:String}} AND `table` = {{table:String}} "
            f"AND line IN (SELECT line FROM {staging.parsed} WHERE reason != ''))",
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
    source: Source | str | None = None,
) -> IngestSummary:
    """Load one contract file (or, with ``source``, one file of a real log format) into ``table``.

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
    source : Source or str, optional
        A real log format (:func:`features.sources.discover`; its records are JSON Lines,
        a JSON array, an envelope such as CloudTrail's ``{"Records": [...]}``, one JSON
        object, or Parquet rows, whatever the file is named, gzip too) for ``access_log``.
        ``None``: a contract file.

    Returns
    -------
    IngestSummary
        Loaded, duplicate and rejected row counts; ``broken`` is set when the file broke
        part-way (the rows before the break are loaded).

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
    if source is not None:
        return _ingest_source(client, path, _source(source), batch_bytes, on_progress, batch_rows)
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
    except _Broken as exc:
        total.broken = str(exc)
    except _READ_ERRORS as exc:  # a reader that could not say where (should not happen)
        total.broken = f"unreadable after {total.rows} rows ({exc})"
    finally:
        staging.drop()
    total.seconds = time.perf_counter() - started
    return total


def _source(source: Source | str) -> Source:
    if isinstance(source, Source):
        return source
    found = discover_sources()
    if source not in found:
        raise IngestError(f"unknown source {source!r}; choose one of {', '.join(found)}")
    return found[source]


def _document_start(path: Path) -> bytes:
    """The first non-blank bytes of a file (gzip undone), to tell a document from JSON Lines."""
    with _open_binary(path) as handle:
        try:
            return handle.read(4096).lstrip()[:64]
        except _READ_ERRORS:
            return b""


def _is_parquet(path: Path) -> bool:
    with _open_binary(path) as handle:
        try:
            return handle.read(4) == b"PAR1"
        except _READ_ERRORS:
            return False


def _one_object(path: Path) -> bool:
    """Whether the file is one JSON object over several lines (pretty-printed), not JSON Lines.

    Its first line opens an object without closing it, and the next line does not open
    another (a JSON Lines file whose first line is broken stays JSON Lines, rejected line
    by line).
    """
    with _open_binary(path) as handle:
        try:
            head = handle.read(65536).lstrip()
        except _READ_ERRORS:
            return False
    first, newline, rest = head.partition(b"\n")
    return (head.startswith(b"{") and bool(newline) and not first.rstrip().endswith(b"}")
            and not rest.lstrip().startswith(b"{"))


def _document_kind(path: Path, source: Source) -> str:
    """``array`` (a JSON array of records), ``envelope`` (``{"Records": [...]}``), ``object`` (one
    record, e.g. pretty-printed) or ``""`` (JSON Lines)."""
    start = _document_start(path)
    if start.startswith(b"["):
        return "array"
    envelope = f'"{source.envelope}"'.encode() if source.envelope else None
    if envelope and start.startswith(b"{") and start[1:].lstrip().startswith(envelope):
        return "envelope"
    if start.startswith(b"{") and _one_object(path):
        return "object"
    return ""


def sniff_source(path: Path) -> Source | None:
    """The source whose records the file holds (``None``: a contract file or unknown)."""
    start = _document_start(path)
    envelopes = [f'"{s.envelope}"'.encode() for s in discover_sources().values() if s.envelope]
    whole = start.startswith(b"[") or (start.startswith(b"{") and (
        start[1:].lstrip().startswith(tuple(envelopes)) or _one_object(path)))
    try:
        with _open_binary(path) as handle:
            if start.startswith(b"PAR1"):  # a Parquet row as the record's JSON
                first_rows = next(pq.ParquetFile(handle).iter_batches(batch_size=1))
                record = orjson.loads(_parquet_rows(first_rows)[0][0])
            elif whole:
                record = orjson.loads(handle.read(MAX_DOCUMENT_BYTES + 1))
                if isinstance(record, list):
                    record = record[0]
                elif isinstance(record, dict):  # an envelope's first record, else the object itself
                    listed = [record[e.decode()[1:-1]] for e in envelopes
                              if isinstance(record.get(e.decode()[1:-1]), list)]
                    record = listed[0][0] if listed else record
            else:
                first = next(line for line in handle if line.strip())
                record = orjson.loads(first)
    except (StopIteration, orjson.JSONDecodeError, KeyError, IndexError, TypeError, pa.ArrowException,
            *_READ_ERRORS):
        return None
    return recognise_source(record) if isinstance(record, dict) else None


def _ingest_source(client: Client, path: Path, source: Source, batch_bytes: int,
                   on_progress: Callable[[int], None] | None, batch_rows: int = DEFAULT_BATCH_ROWS) -> IngestSummary:
    document = "" if (parquet := _is_parquet(path)) else _document_kind(path, source)
    if parquet:  # each row becomes the record's JSON (nested structs, lists, maps), batch by batch
        batches: Iterator[_Batch] = _parquet_batches(path, batch_rows)
    elif document:
        with _open_binary(path) as handle:
            try:
                body = handle.read(MAX_DOCUMENT_BYTES + 1)
            except _READ_ERRORS as exc:
                raise IngestError(f"{path}: unreadable ({exc})") from exc
        if len(body) > MAX_DOCUMENT_BYTES:
            raise IngestError(f"{path}: a JSON document over {_size_text(MAX_DOCUMENT_BYTES)}; split it or "
                              "write JSON Lines")
        batches = iter([_Batch(pa.array([1], pa.uint64()), _raw_array([body]), len(body))])
    else:
        batches = _jsonl_batches(path, batch_bytes)
    started = time.perf_counter()
    total = IngestSummary(str(path), "access_log")
    staging = _Staging(client, "access_log")
    try:
        for batch in _prefetched(batches):
            total.add(_load_batch(client, "access_log", staging, batch, str(path), source, document))
            if on_progress is not None:
                on_progress(batch.source_bytes)
    except _Broken as exc:
        total.broken = str(exc)
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
