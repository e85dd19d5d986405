"""Ingest under hostile input: every bad row is rejected with its reason, nothing is shifted,
duplicated or lost to a traceback, and memory stays bounded whatever one line holds."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import features.ingest as ingest
from blastwall.cli import main
from blastwall.schema import init_schema
from blastwall.store import close_store, open_store
from features.contract import COLUMNS
from features.ingest import ingest_file, ingest_status, recent_rejections

GOOD = {"event_time": "2026-10-05T09:00:00Z", "principal": "ann", "action": "read", "resource": "ds.a"}
NAMES = [c.name for c in COLUMNS["access_log"]]


def write_lines(path: Path, lines: list[Any], *, compress: bool = False) -> Path:
    """One line per item: dicts as JSON, str and bytes as they are."""
    data = b"".join(
        (line if isinstance(line, bytes) else
         (line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)).encode()) + b"\n"
        for line in lines)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def csv_text(rows: list[dict[str, Any]], names: list[str] = NAMES) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=names)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()})
    return out.getvalue()


def rejections(client: Client, path: Path) -> list[tuple[int, str]]:
    result = client.query("SELECT line, reason FROM rejected_rows WHERE `file` = {f:String} ORDER BY line",
                          parameters={"f": str(path)})
    return [(int(line), reason) for line, reason in result.result_rows]


def stored(client: Client, column: str = "event_id") -> list[Any]:
    return [row[0] for row in client.query(f"SELECT {column} FROM access_log ORDER BY {column}").result_rows]


# --- 8. a line that is not a JSON object ------------------------------------------------


def test_a_line_that_is_not_a_json_object_is_rejected_as_such(client: Client, tmp_path: Path) -> None:
    # An array fills the contract's fields by position: six values reach `resource`.
    positional = ["2026-10-05T09:00:00Z", "e-array", "ann", "human", "read", "ds.a"]
    lines = [json.dumps(positional), json.dumps(list(range(15))), "   " + json.dumps(positional),
             "42", '"text"', "null", "true", {**GOOD, "event_id": "kept"}]
    path = write_lines(tmp_path / "arrays.jsonl", lines)

    summary = ingest_file(client, path)

    assert (summary.loaded, summary.rejected) == (1, 7)
    assert summary.reasons == {"not a JSON object": 7}
    assert stored(client) == ["kept"]


# --- 9. malformed list and map text --------------------------------------------------------


BAD_LISTS_AND_MAPS = [
    ("related", "[bad", "related must be a list"),
    ("related", "[", "related must be a list"),
    ("related", "[1] trailing", "related must be a list"),
    ("attributes", "{bad", "attributes must be an object"),
    ("attributes", "{", "attributes must be an object"),
]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_malformed_list_or_map_text_is_rejected_not_emptied(client: Client, tmp_path: Path, fmt: str) -> None:
    rows = [{**GOOD, "event_id": f"bad-{i}", column: text} for i, (column, text, _) in enumerate(BAD_LISTS_AND_MAPS)]
    rows.append({**GOOD, "event_id": "good", "related": ["ds.b"], "attributes": {"k": "v"}})
    if fmt == "jsonl":  # the text as a JSON string value
        path = write_lines(tmp_path / "lists.jsonl", rows)
    else:  # the text as the cell
        path = tmp_path / "lists.csv"
        path.write_text(csv_text(rows))

    summary = ingest_file(client, path)

    first = 2 if fmt == "csv" else 1
    assert rejections(client, path) == [(first + i, reason) for i, (_, _, reason) in enumerate(BAD_LISTS_AND_MAPS)]
    assert summary.loaded == 1 and stored(client) == ["good"]


def test_malformed_categories_of_a_resource_are_rejected(client: Client, tmp_path: Path) -> None:
    rows = [{"resource": "a", "kind": "dataset", "sensitivity": "public", "categories": "[pii"},
            {"resource": "b", "kind": "dataset", "sensitivity": "public", "categories": ["pii"]}]
    summary = ingest_file(client, write_lines(tmp_path / "resources.jsonl", rows), table="resources")
    assert (summary.loaded, summary.reasons) == (1, {"categories must be a list": 1})


# --- 10. times: strict ISO-8601, years 1970-2199 ----------------------------------------------

UNPARSABLE = "unparsable event_time (want ISO-8601)"
OUTSIDE = "event_time outside 1970-2199"


BAD_TIMES = [
    ("2026-10-05T25:00:00Z", UNPARSABLE),  # was the next day at 01:00
    ("2026-10-05T09:60:00Z", UNPARSABLE),
    ("2026-10-05T23:59:60Z", UNPARSABLE),
    ("2026-10-05T09:00:00+99:99", UNPARSABLE),  # was moved by days
    ("2026-10-05T09:00:00+14:30", UNPARSABLE),
    ("2026-10-05T09:00:00-15:00", UNPARSABLE),
    ("2026-10-05T09:00:00+05:60", UNPARSABLE),
    ("2026-02-30T09:00:00Z", UNPARSABLE),
    ("2026-02-29", UNPARSABLE),
    ("2100-02-29T00:00:00Z", UNPARSABLE),  # not a leap year
    ("2026-04-31T00:00:00Z", UNPARSABLE),
    ("2026-13-01", UNPARSABLE),
    ("2026-10-05T09:00:00,5Z", UNPARSABLE),
    ("0001-01-01T00:00:00Z", OUTSIDE),
    ("0001-01-01T00:00:00+14:00", OUTSIDE),  # was loaded
    ("9999-12-31T23:59:59-14:00", OUTSIDE),  # likewise (the parser alone throws on these)
    ("1969-12-31T23:59:59Z", OUTSIDE),
    ("1970-01-01T00:30:00+01:00", OUTSIDE),  # 1969 in UTC
    ("2200-01-01T00:00:00Z", OUTSIDE),
    ("2199-12-31T23:00:00-05:00", OUTSIDE),  # 2200 in UTC
]


def test_invalid_or_far_times_are_rejected_not_shifted(client: Client, tmp_path: Path) -> None:
    rows = [{**GOOD, "event_id": f"bad-{i}", "event_time": text} for i, (text, _) in enumerate(BAD_TIMES)]
    path = write_lines(tmp_path / "times.jsonl", [*rows, {**GOOD, "event_id": "ok"}])

    summary = ingest_file(client, path)

    assert rejections(client, path) == [(i + 1, reason) for i, (_, reason) in enumerate(BAD_TIMES)]
    assert summary.loaded == 1 and stored(client) == ["ok"]


GOOD_TIMES = [
    ("2026-10-05T09:00:00z", "2026-10-05 09:00:00.000"),
    ("2026-10-05 09:00:00 Z", "2026-10-05 09:00:00.000"),
    ("2024-02-29", "2024-02-29 00:00:00.000"),
    ("2000-02-29T12:00:00Z", "2000-02-29 12:00:00.000"),
    ("2026-12-31T23:59:59Z", "2026-12-31 23:59:59.000"),
    ("2026-04-30T00:00:00Z", "2026-04-30 00:00:00.000"),
    ("2026-10-05T09:00", "2026-10-05 09:00:00.000"),
    ("2026-10-05T09:00:00.123456789Z", "2026-10-05 09:00:00.123"),
    ("2026-10-05T09:00:00+14:00", "2026-10-04 19:00:00.000"),
    ("2026-10-05T09:00:00-1400", "2026-10-05 23:00:00.000"),
    ("2026-10-05T09:00:00+05", "2026-10-05 04:00:00.000"),
    ("2026-10-05T09:00:00-00:30", "2026-10-05 09:30:00.000"),
    ("1970-01-01T00:00:00Z", "1970-01-01 00:00:00.000"),
    ("2199-12-31T23:59:59.999Z", "2199-12-31 23:59:59.999"),
]


def test_valid_iso_times_are_stored_in_utc(client: Client, tmp_path: Path) -> None:
    rows = [{**GOOD, "event_id": f"t{i:02d}", "event_time": text} for i, (text, _) in enumerate(GOOD_TIMES)]
    summary = ingest_file(client, write_lines(tmp_path / "times.jsonl", rows))
    assert (summary.loaded, summary.rejected) == (len(GOOD_TIMES), 0)
    in_utc = client.query("SELECT toString(event_time) FROM access_log ORDER BY event_id").result_rows
    assert [utc for (utc,) in in_utc] == [utc for _, utc in GOOD_TIMES]


def test_every_time_column_of_every_table_is_checked(client: Client, tmp_path: Path) -> None:
    resources = [{"resource": "a", "kind": "dataset", "sensitivity": "public", "updated_at": "2026-10-05T25:00:00Z"},
                 {"resource": "b", "kind": "dataset", "sensitivity": "public", "updated_at": "2300-01-01"}]
    principals = [{"principal": "ann", "principal_type": "human", "created_at": "0001-01-01"},
                  {"principal": "bob", "principal_type": "human", "created_at": "2026-09-01",
                   "updated_at": "2026-02-30"}]
    memberships = [{"group": "g", "member": "m", "updated_at": "2026-10-05T09:00:00+99:99"}]
    r = ingest_file(client, write_lines(tmp_path / "r.jsonl", resources), table="resources")
    p = ingest_file(client, write_lines(tmp_path / "p.jsonl", principals), table="principals")
    m = ingest_file(client, write_lines(tmp_path / "m.jsonl", memberships), table="memberships")
    assert r.reasons == {"unparsable updated_at (want ISO-8601)": 1, "updated_at outside 1970-2199": 1}
    assert p.reasons == {"created_at outside 1970-2199": 1, "unparsable updated_at (want ISO-8601)": 1}
    assert m.reasons == {"unparsable updated_at (want ISO-8601)": 1}


# --- 11. an event id counts once, whatever its time ---------------------------------------------


def test_an_event_id_sent_again_with_another_time_is_a_duplicate(client: Client, tmp_path: Path) -> None:
    first = write_lines(tmp_path / "a.jsonl", [{**GOOD, "event_id": "e1"}])
    later = write_lines(tmp_path / "b.jsonl", [{**GOOD, "event_id": "e1", "event_time": "2027-03-01T00:00:00Z"},
                                               {**GOOD, "event_id": "e2", "event_time": "2027-03-01T00:00:00Z"}])
    assert ingest_file(client, first).loaded == 1

    summary = ingest_file(client, later)

    assert (summary.loaded, summary.duplicates) == (1, 1)
    assert stored(client) == ["e1", "e2"]
    assert stored(client, "toString(event_time)")[0] == "2026-10-05 09:00:00.000"  # the first one stays


def test_ids_inserted_without_ingest_count_as_stored(client: Client, tmp_path: Path) -> None:
    # The simulation and other writers insert into access_log directly.
    client.command("INSERT INTO access_log (event_time, event_id, principal, action, resource) "
                   "VALUES ('2026-01-01 00:00:00', 'direct', 'ann', 'read', 'ds.a')")
    summary = ingest_file(client, write_lines(tmp_path / "a.jsonl", [{**GOOD, "event_id": "direct"}]))
    assert (summary.loaded, summary.duplicates) == (0, 1)


def test_an_upgraded_store_knows_the_ids_it_already_held(store_dsn: str, tmp_path: Path) -> None:
    client = open_store(store_dsn)
    try:
        init_schema(client, up_to={"features.contract": 2})
        client.command("INSERT INTO access_log (event_time, event_id, principal, action, resource) "
                       "VALUES ('2026-01-01 00:00:00', 'old', 'ann', 'read', 'ds.a')")
        init_schema(client)
        summary = ingest_file(client, write_lines(tmp_path / "a.jsonl", [{**GOOD, "event_id": "old"}]))
        assert (summary.loaded, summary.duplicates) == (0, 1)
        assert stored(client) == ["old"]
    finally:
        close_store(client)


# --- 12. rejections are kept once per file and line -----------------------------------------


def test_reingesting_or_resuming_a_file_adds_no_rejection_rows(client: Client, tmp_path: Path) -> None:
    lines: list[Any] = []
    for index in range(600):
        lines.append({**GOOD, "event_id": f"id-{index}"} if index % 2 else {**GOOD, "action": "steal"})
    path = write_lines(tmp_path / "mixed.jsonl", lines)

    summaries = [ingest_file(client, path, batch_bytes=4096),  # many small batches
                 ingest_file(client, path),
                 ingest_file(client, path, batch_bytes=20_000)]

    assert [s.rejected for s in summaries] == [300, 300, 300]  # each ingest still reports its own
    assert [s.loaded for s in summaries] == [300, 0, 0]
    assert len(rejections(client, path)) == 300
    assert ingest_status(client).rejected == {"unknown action": 300}


# --- 13. an over-long line ----------------------------------------------------------------------


def test_an_over_long_line_is_rejected_without_being_held(client: Client, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "MAX_LINE_BYTES", 4 << 20)
    path = tmp_path / "long.jsonl"
    size = 40 << 20
    with path.open("wb") as handle:
        handle.write(json.dumps({**GOOD, "event_id": "before"}).encode() + b"\n")
        handle.write(b'{"event_time": "2026-10-05T09:00:00Z", "principal": "')
        for _ in range(size >> 20):
            handle.write(b"x" * (1 << 20))
        handle.write(b'", "action": "read", "resource": "r"}\n')
        for index in range(3):
            handle.write(json.dumps({**GOOD, "event_id": f"after-{index}"}).encode() + b"\n")

    tracemalloc.start()
    try:
        summary = ingest_file(client, path, batch_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert (summary.loaded, summary.reasons) == (4, {"line longer than 4 MiB": 1})
    assert stored(client) == ["after-0", "after-1", "after-2", "before"]
    kept = recent_rejections(client)
    assert [r["line"] for r in kept] == [2] and len(kept[0]["raw"]) == ingest.RAW_PREFIX_BYTES
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB for a {size >> 20} MiB line"


@pytest.mark.parametrize("name", ["long.jsonl", "long.jsonl.gz", "long.csv", "long.csv.gz"])
def test_over_long_lines_inside_a_batch_and_at_the_end(client: Client, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(ingest, "MAX_LINE_BYTES", 64 << 10)
    long = {**GOOD, "event_id": "long", "principal": "x" * (200 << 10)}
    rows = [{**GOOD, "event_id": "a"}, long, {**GOOD, "event_id": "b"}, long]  # the last one ends the file
    if ".jsonl" in name:
        data = "\n".join(json.dumps(r) for r in rows).encode()  # no newline after the last line
    else:
        data = csv_text(rows).encode()
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)

    summary = ingest_file(client, tmp_path / name)

    assert (summary.loaded, summary.reasons) == (2, {"line longer than 64 KiB": 2})
    lines = [3, 5] if ".csv" in name else [2, 4]  # CSV: after the header
    assert [line for line, _ in rejections(client, tmp_path / name)] == lines


# --- 15. files that used to end in a traceback or lose everything --------------------------------


def test_a_csv_that_starts_with_a_bom_loads(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_text([{**GOOD, "event_id": "a"}, {**GOOD, "event_id": "b"}]).encode())
    summary = ingest_file(client, path)
    assert (summary.loaded, summary.rejected) == (2, 0)


def test_csv_bytes_that_are_not_utf8_are_rejected_not_replaced(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    text = csv_text([{**GOOD, "event_id": "a"}, {**GOOD, "event_id": "b", "principal": "MARKER"},
                     {**GOOD, "event_id": "c"}])
    path.write_bytes(text.encode().replace(b"MARKER", b"Jos\xe9"))  # Latin-1, not UTF-8

    summary = ingest_file(client, path)

    assert (summary.loaded, summary.reasons) == (2, {"not UTF-8": 1})
    assert rejections(client, path) == [(3, "not UTF-8")]
    assert "ann" in stored(client, "principal") and len(stored(client)) == 2


def test_a_huge_csv_cell_loads_and_a_row_csv_cannot_parse_is_rejected(client: Client, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.csv"
    path.write_text(csv_text([{**GOOD, "event_id": "big", "principal": "p" * 300_000},
                              {**GOOD, "event_id": "small"}]))
    assert ingest_file(client, path).loaded == 2  # over the csv module's 128 KiB default

    # A quoted cell spanning many short lines, past the csv module's limit: csv.Error for
    # that row; the lines left of the cell come out as ragged rows; the rows after load.
    monkeypatch.setattr(ingest, "MAX_LINE_BYTES", 64 << 10)
    before = csv.field_size_limit(1 << 20)  # process-wide; restored below
    try:
        spanning = "\n".join(["y" * 1000] * 1200)  # 1.2 MB in lines of 1 kB
        odd = tmp_path / "odd.csv"
        odd.write_text(csv_text([{**GOOD, "event_id": "x"}, {**GOOD, "event_id": "cell", "principal": spanning},
                                 {**GOOD, "event_id": "z"}]))
        summary = ingest_file(client, odd)
    finally:
        csv.field_size_limit(before)
    assert summary.reasons["malformed CSV (field larger than field limit (1048576))"] == 1
    assert set(summary.reasons) <= {"malformed CSV (field larger than field limit (1048576))",
                                    "wrong number of CSV cells"}
    assert summary.loaded == 2 and {"x", "z"} <= set(stored(client))


def test_parquet_decimals_durations_and_far_timestamps_get_reasons(client: Client, tmp_path: Path) -> None:
    table = pa.table({
        "event_time": pa.array([1_790_000_000_000, 1_790_000_001_000, 1_790_000_002_000, -62_135_596_800_000,
                                253_402_300_799_000 * 10], pa.timestamp("ms", tz="UTC")),
        "event_id": ["whole", "fraction", "huge", "year-1", "year-80000"],
        "principal": ["ann"] * 5, "action": ["read"] * 5, "resource": ["ds.a"] * 5,
        "bytes": pa.array([Decimal(5), Decimal("12.50"), Decimal(10) ** 30, Decimal(1), Decimal(1)],
                          pa.decimal128(38, 2)).cast(pa.decimal128(38, 2)),
        "rows": pa.array([Decimal(7), Decimal(1), Decimal(1), Decimal(1), Decimal(1)], pa.decimal128(10, 0)),
        "elapsed": pa.array([1_000_000] * 5, pa.duration("us")),  # not a contract column: ignored
    })
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    # 5.00 is not written as a whole number; the SQL check judges the text, as for JSON.
    summary = ingest_file(client, path)
    assert summary.reasons == {"bytes is not a whole number in range": 3, "event_time outside 1970-2199": 1,
                               "unparsable event_time (want ISO-8601)": 1}

    whole = pa.table({"event_time": pa.array(["2026-10-05T09:00:00Z"] * 2), "event_id": ["d1", "d2"],
                      "principal": ["ann"] * 2, "action": ["read"] * 2, "resource": ["ds.a"] * 2,
                      "bytes": pa.array([Decimal(5), Decimal(6)], pa.decimal128(20, 0)),
                      "rows": pa.array([1_000_000, 2], pa.duration("s"))})
    pq.write_table(whole, tmp_path / "durations.parquet")
    summary = ingest_file(client, tmp_path / "durations.parquet")
    assert (summary.loaded, summary.reasons) == (0, {"rows is not a whole number in range": 2})
    pq.write_table(whole.drop(["rows"]), tmp_path / "decimals.parquet")
    assert ingest_file(client, tmp_path / "decimals.parquet").loaded == 2
    assert stored(client, "bytes")[-2:] == [5, 6]


def _truncated(data: bytes) -> bytes:
    packed = gzip.compress(data)
    return packed[: len(packed) * 2 // 3]


def test_a_truncated_gzip_keeps_the_lines_before_the_break(client: Client, tmp_path: Path) -> None:
    rows = [{**GOOD, "event_id": f"id-{i}", "resource": f"ds.{i * 7919 % 10007}"} for i in range(3000)]
    jsonl = tmp_path / "cut.jsonl.gz"
    jsonl.write_bytes(_truncated("".join(json.dumps(r) + "\n" for r in rows).encode()))
    as_csv = tmp_path / "cut.csv.gz"
    as_csv.write_bytes(_truncated(csv_text([{**r, "event_id": f"c-{r['event_id']}"} for r in rows]).encode()))

    for path in (jsonl, as_csv):
        summary = ingest_file(client, path)
        assert 500 < summary.loaded < 3000 and summary.rejected == 0, summary
        assert summary.broken.startswith(f"truncated gzip stream after line {summary.loaded + (path == as_csv)}")

    # A corrupt stream (not just a short one) is reported the same way.
    packed = bytearray(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    packed[len(packed) // 2] ^= 0xFF
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(bytes(packed))
    assert ingest_file(client, corrupt).broken.startswith(("corrupt gzip stream", "truncated gzip stream"))


def test_the_cli_reports_a_broken_file_in_one_line_and_fails(capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch, store_dsn: str,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(_truncated("".join(json.dumps({**GOOD, "event_id": f"id-{i}"}) + "\n"
                                        for i in range(3000)).encode()))
    monkeypatch.setattr("sys.argv", ["blastwall", "--dsn", store_dsn, "ingest", str(path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert f"{path}: loaded " in out
    assert err.startswith(f"blastwall: {path}: truncated gzip stream after line ") and "Traceback" not in err


# --- every format, hostile rows: each row accounted for, each rejection with a reason -------------

TIMES = ["2026-10-05T09:00:00Z", "2026-10-05T09:00:00.5+02:00", "2026-10-05 09:00", "2026-10-05",
         "2026-10-05T25:00:00Z", "2026-02-30", "0001-01-01", "9999-12-31T23:59:59-14:00", "+99:99",
         "2026-10-05T09:00:00+99:99", "yesterday", ""]
ODD_TEXT = st.text(alphabet=st.sampled_from(["a", "é", "名", "\u200f", "\ufeff", "\u2028", "\x00", "\r", "\n", ",",
                                             '"', "'", "\\", "{", "[", " ", "\t", "😀", "\U0010ffff"]), max_size=12)
VALUES = st.one_of(
    st.sampled_from(TIMES),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    ODD_TEXT,
    st.lists(ODD_TEXT, max_size=3),
    st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=2),
    st.sampled_from(["null", "read", "human", "ok", "denied", "api", "true"]),
)
NUMBERS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70),
                    st.sampled_from(["-5", "5.5", "1e30", "18446744073709551616", "0x10", " 7 ", "-0", "true"]))
LISTS_AND_MAPS = st.sampled_from(["[bad", "[", "{bad", "{", "[]", "{}", "[1] x", '["a", 1]', '{"k": 1}', "a;b"])
# Per field, the values most likely to break it, besides anything at all.
FIELDS = {name: VALUES for name in NAMES} | {
    "event_time": st.one_of(st.sampled_from(TIMES), VALUES),
    "bytes": st.one_of(NUMBERS, VALUES), "rows": st.one_of(NUMBERS, VALUES),
    "related": st.one_of(LISTS_AND_MAPS, VALUES), "attributes": st.one_of(LISTS_AND_MAPS, VALUES),
    "principal": st.one_of(ODD_TEXT, st.just("p" * 140_000), VALUES),  # over the csv module's default cell limit
}
CHANGES = st.lists(st.sampled_from(NAMES), unique=True, max_size=4).flatmap(
    lambda names: st.fixed_dictionaries({name: FIELDS[name] for name in names}))
# One known-hostile value per row on top of the random changes, so that each example hits some.
HOSTILE = [("event_time", t) for t in TIMES] + [(f, v) for f in ("related", "attributes") for v in
                                                ("[bad", "[", "{bad", "{", "[1] x")] + [
    ("principal", "p" * 140_000), ("bytes", 2**64), ("bytes", -1), ("rows", 1.5), ("event_id", ""),
    ("status", "maybe"), ("principal", "\x00\u2028名\ufeff"), ("event_time", None), ("action", ["read"])]
ROWS = st.builds(lambda base, hostile, changes: {**base, **dict([hostile]), **changes},
                 st.fixed_dictionaries({**{k: st.just(v) for k, v in GOOD.items()},
                                        "event_id": st.sampled_from([f"id-{i}" for i in range(8)])}),
                 st.sampled_from(HOSTILE), CHANGES)
NOT_OBJECTS = st.sampled_from(['[1, 2]', '42', '"text"', 'null', '[bad', '{bad', '{"event_time": 1} trailing',
                               json.dumps(["2026-10-05T09:00:00Z", "e", "ann", "human", "read", "ds.a"]),
                               b'{"principal": "\xff\xfe"}'])
LINES = st.lists(st.one_of(ROWS, ROWS, ROWS, NOT_OBJECTS), min_size=1, max_size=25)
_files = itertools.count()


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else str(value)


def _write(path: Path, fmt: str, lines: list[Any], blanks: int, compress: bool) -> int:
    """Write ``lines`` as ``fmt``; returns how many rows the file holds (blank lines are none)."""
    rows = [line for line in lines if isinstance(line, dict)] if fmt != "jsonl" else lines
    if fmt == "jsonl":
        data = b"".join((line if isinstance(line, bytes) else
                         (line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)).encode()) + b"\n"
                        for line in lines)
        data += b"   \n\t\n\n" * blanks
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(NAMES)
        for row in rows:
            writer.writerow(["" if _cell(row.get(n)) is None else _cell(row.get(n)) for n in NAMES])
        writer.writerow(["2026-10-05T09:00:00Z", "ragged"])  # a wrong number of cells
        data = (out.getvalue() + "\r\n" * blanks).encode()
        rows = [*rows, {}]
    else:
        table = pa.table({n: pa.array([_cell(row.get(n)) for row in rows], pa.string()) for n in NAMES})
        sink = io.BytesIO()
        pq.write_table(table, sink)
        data = sink.getvalue()
    path.write_bytes(gzip.compress(data) if compress else data)
    return len(rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=LINES, compress=st.booleans(), blanks=st.integers(0, 3))
@example(lines=[{**GOOD, "event_id": f"known-{i}", **dict([hostile])} for i, hostile in enumerate(HOSTILE)],
         compress=True, blanks=1)  # every known-hostile value, every run
def test_every_hostile_row_is_loaded_a_duplicate_or_rejected_with_a_reason(
        client: Client, tmp_path: Path, lines: list[Any], compress: bool, blanks: int) -> None:
    for fmt in ("jsonl", "csv", "parquet"):
        path = tmp_path / f"hostile-{next(_files)}.{fmt}{'.gz' if compress else ''}"
        rows = _write(path, fmt, lines, blanks, compress)

        summary = ingest_file(client, path)

        assert summary.broken == ""
        assert summary.loaded + summary.duplicates + summary.rejected == rows, fmt
        kept = rejections(client, path)
        assert len(kept) == summary.rejected and all(reason for _, reason in kept), fmt
        assert sum(summary.reasons.values()) == summary.rejected
