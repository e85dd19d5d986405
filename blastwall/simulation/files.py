"""Write a simulated organisation to files in the ingest formats (JSON Lines, CSV, Parquet)."""

from __future__ import annotations

import gzip as gzip_module
import io
import json
from pathlib import Path
from typing import IO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .events import ACCESS_LOG_SCHEMA
from .organisation import Organisation, as_organisation
from .spec import OrgSpec
from .stream import iter_access_log

FORMATS = ("jsonl", "csv", "parquet")
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # %S carries the milliseconds of a timestamp[ms]


def _quoted(strings: pa.Array) -> pa.Array:
    """JSON string literals: escape backslashes and quotes, then wrap in quotes.

    The generator writes no control characters, so these two escapes suffice.
    """
    escaped = pc.replace_substring(pc.replace_substring(strings, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _rebuild_list(lengths: pa.Array, values: pa.Array) -> pa.ListArray:
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths.to_numpy(zero_copy_only=False), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _json_values(column: pa.Array) -> pa.Array:
    """Each value of an Arrow column as JSON text, with Arrow kernels (no per-row Python).

    Strings and ISO-8601 times become string literals, integers numbers, lists
    arrays and maps objects.
    """
    kind = column.type
    if pa.types.is_timestamp(kind):
        return _quoted(pc.strftime(column, format=_ISO_FORMAT))
    if pa.types.is_map(kind):
        entries = column.cast(pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())])))
        flat = pc.list_flatten(entries)
        pairs = pc.binary_join_element_wise(_quoted(flat.field("key")), _quoted(flat.field("value")), ":")
        body = pc.binary_join(_rebuild_list(pc.list_value_length(entries), pairs), ",")
        return pc.binary_join_element_wise("{", body, "}", "")
    if pa.types.is_list(kind):
        body = pc.binary_join(_rebuild_list(pc.list_value_length(column), _quoted(pc.list_flatten(column))), ",")
        return pc.binary_join_element_wise("[", body, "]", "")
    if pa.types.is_integer(kind):
        return pc.cast(column, pa.string())
    return _quoted(column.cast(pa.string()))


def _jsonl_bytes(batch: pa.RecordBatch | pa.Table) -> bytes:
    """The rows of ``batch`` as JSON Lines (one object per line, fields in schema order)."""
    if batch.num_rows == 0:
        return b""
    pieces: list[pa.Array | str] = []
    for i, (name, column) in enumerate(zip(batch.schema.names, batch.columns)):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        value = pc.if_else(pc.is_null(column), "null", _json_values(column)) if column.null_count else \
            _json_values(column)
        pieces += [("{" if i == 0 else ",") + orjson.dumps(name).decode() + ":", value]
    lines = pc.binary_join_element_wise(*pieces, "}\n", "")
    # The lines end in "\n" already: the array's character buffer is the file content.
    offsets = np.frombuffer(lines.buffers()[1], np.int32)[lines.offset: lines.offset + len(lines) + 1]
    return lines.buffers()[2][int(offsets[0]): int(offsets[-1])].to_pybytes()


def _csv_table(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Columns as CSV needs them: times in ISO-8601 with ``Z``; lists and maps as JSON text."""
    columns = {}
    for name, column in zip(batch.schema.names, batch.columns):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_timestamp(column.type):
            column = pc.strftime(column, format=_ISO_FORMAT)
        elif pa.types.is_map(column.type) or pa.types.is_list(column.type):
            column = _json_values(column)
        columns[name] = column
    return pa.table(columns)


class _TableWriter:
    """Writes one table, batch after batch, in one format."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema, gzip: bool) -> None:
        self.fmt = fmt
        self.rows = 0
        self._header = True
        self._parquet: pq.ParquetWriter | None = None
        self._raw: IO[bytes] | None = None
        if fmt == "parquet":
            self._parquet = pq.ParquetWriter(path, schema, compression="gzip" if gzip else "zstd")
        else:
            self._raw = gzip_module.open(path, "wb", compresslevel=5) if gzip else open(path, "wb")

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        self.rows += batch.num_rows
        if self._parquet is not None:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            self._parquet.write_table(table)
        elif self.fmt == "jsonl":
            self._raw.write(_jsonl_bytes(batch))
        else:
            buffer = io.BytesIO()
            pa_csv.write_csv(_csv_table(batch), buffer, pa_csv.WriteOptions(include_header=self._header))
            self._header = False
            self._raw.write(buffer.getvalue())

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._raw is not None:
            self._raw.close()


def write_files(spec_or_org: OrgSpec | Organisation, out_dir: str | Path, fmt: str = "jsonl",
                gzip: bool = False, batch_rows: int = 200_000) -> dict[str, int]:
    """Write the four contract tables and ``labels.json`` to ``out_dir``.

    Parameters
    ----------
    spec_or_org : OrgSpec or Organisation
        What to write (a spec is built first).
    out_dir : str or Path
        Created if missing; existing files of the same names are replaced.
    fmt : {'jsonl', 'csv', 'parquet'}
        JSON Lines (one object per line, times ISO-8601 with ``Z``), CSV (header
        row; ``related``, ``categories`` as JSON arrays and ``attributes`` as a
        JSON object) or Parquet (native types).
    gzip : bool
        Compress: ``.jsonl.gz``/``.csv.gz`` files, or gzip pages inside Parquet.
    batch_rows : int
        Rows generated and written at a time.

    Returns
    -------
    dict
        Rows written per table (``access_log``, ``resources``, ``memberships``,
        ``principals``) and the number of ``labels``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    org = as_organisation(spec_or_org)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f".{fmt}" + (".gz" if gzip and fmt != "parquet" else "")
    counts: dict[str, int] = {}
    catalogue = {"resources": org.resources, "memberships": org.memberships, "principals": org.principals}
    for name, table in catalogue.items():
        writer = _TableWriter(out / f"{name}{suffix}", fmt, table.schema, gzip)
        writer.write(table)
        writer.close()
        counts[name] = writer.rows
    writer = _TableWriter(out / f"access_log{suffix}", fmt, ACCESS_LOG_SCHEMA, gzip)
    try:
        for batch in iter_access_log(org, batch_rows):
            writer.write(batch)
    finally:
        writer.close()
    counts["access_log"] = writer.rows
    (out / "labels.json").write_text(json.dumps([label.to_dict() for label in org.labels], indent=2) + "\n")
    counts["labels"] = len(org.labels)
    return counts
