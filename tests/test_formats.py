"""The organisation written in real log formats and read back through the sources: the round trip.

The writer (``blastwall.simulation.formats``) and the source (``features.sources``) are
written independently of each other; the oracle is the native contract row. For every row
of a generated organisation, each column the format carries must come back equal to the
native row's (resources under the format's names), and no row may be lost or rejected.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import run

from blastwall.simulation import OrgSpec, build_organisation
from blastwall.simulation.formats import discover, groups_of, renamed_catalogue, write_log_files
from blastwall.simulation.stream import iter_access_log
from features.ingest import ingest_file

FORMATS = sorted(discover())


def _stored(client: Client) -> dict[str, dict[str, Any]]:
    result = client.query("SELECT * EXCEPT ingested_at FROM access_log")
    return {row[result.column_names.index("event_id")]: dict(zip(result.column_names, row))
            for row in result.result_rows}


def _round_trip_differences(client: Client, tmp_path: Path, fmt: str, spec: OrgSpec) -> tuple[int, Counter]:
    """Write ``spec`` in ``fmt``, ingest it through its source, count every carried difference."""
    org = build_organisation(spec)
    log_format = discover()[fmt]
    write_log_files(org, tmp_path, fmt)
    summary = ingest_file(client, tmp_path / f"access_log.{fmt}.jsonl", source=fmt)
    assert summary.rejected == 0, summary.reasons
    _, _, renaming = renamed_catalogue(org, log_format)
    groups = groups_of(org)
    stored = _stored(client)
    differences: Counter = Counter()
    rows = 0
    for batch in iter_access_log(org, 100_000):
        for row in batch.to_pylist():
            rows += 1
            got = stored.get(row["event_id"])
            if got is None:
                differences[("lost", row["action"])] += 1
                continue
            expected = {**row, "event_time": row["event_time"].replace(tzinfo=None),
                        "resource": renaming.get(row["resource"], row["resource"]),
                        "related": [renaming.get(r, r) for r in row["related"]],
                        "grantee": log_format.group_name(row["grantee"]) if row["grantee"] in groups
                        else row["grantee"]}
            for column in log_format.carried(row):
                if expected[column] != got[column]:
                    differences[(column, row["action"], repr(expected[column]), repr(got[column]))] += 1
    assert summary.loaded == rows
    return rows, differences


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_labelled_organisation_comes_back_through_each_source(client: Client, tmp_path: Path, fmt: str) -> None:
    rows, differences = _round_trip_differences(client, tmp_path, fmt, OrgSpec(principals=40, days=5, seed=11))
    assert rows > 10_000
    assert not differences, differences.most_common(10)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), principals=st.integers(40, 70))
def test_the_round_trip_holds_for_random_organisations(client: Client, tmp_path_factory, fmt: str, seed: int,
                                                       principals: int) -> None:
    client.command("TRUNCATE TABLE access_log")
    client.command("TRUNCATE TABLE event_ids")
    _, differences = _round_trip_differences(client, tmp_path_factory.mktemp(fmt), fmt,
                                             OrgSpec(principals=principals, days=5, seed=seed))
    assert not differences, differences.most_common(10)


def test_generate_format_writes_files_that_ingest_says_what_it_chose(capsys, monkeypatch, store_dsn: str,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "org"
    code, text, err = run(capsys, monkeypatch, "generate", str(out), "--format", "cloudtrail", "--principals", "40",
                          "--days", "5")
    assert code == 0, err
    labels = json.loads((out / "labels.json").read_text())
    assert labels and all(r.startswith("s3://") or not r.startswith("ds.") for lab in labels
                          for r in lab["resources"])
    code, text, err = run(capsys, monkeypatch, "--dsn", store_dsn, "ingest", "--source", "auto",
                          str(out / "access_log.cloudtrail.jsonl"))
    assert code == 0, err
    assert "cloudtrail: loaded" in text and "rejected 0" in text
