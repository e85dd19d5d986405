"""data/sample is what the generator produces, and it satisfies the input contract."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from blastwall.simulation import OrgSpec, write_files
from features.ingest import ingest_file

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
SPEC = OrgSpec(principals=60, days=6, seed=7)
TABLES = ("resources", "memberships", "principals", "access_log")


def test_sample_matches_the_generator(tmp_path: Path) -> None:
    write_files(SPEC, tmp_path, fmt="jsonl", gzip=True)
    for table in TABLES:
        name = f"{table}.jsonl.gz"
        # Compare contents, not bytes: a gzip header carries its write time.
        assert gzip.decompress((tmp_path / name).read_bytes()) == gzip.decompress((SAMPLE / name).read_bytes()), (
            f"data/sample/{name} is stale: regenerate it (see data/README.md)"
        )
    assert json.loads((tmp_path / "labels.json").read_text()) == json.loads((SAMPLE / "labels.json").read_text())


def test_sample_ingests_without_a_rejected_row_and_labels_point_at_real_events(client) -> None:
    for table in TABLES:
        summary = ingest_file(client, SAMPLE / f"{table}.jsonl.gz", table=table)
        assert summary.rejected == 0 and summary.loaded > 0, summary
    labels = json.loads((SAMPLE / "labels.json").read_text())
    assert len({label["family"] for label in labels}) == 9
    ids = [event_id for label in labels for event_id in label["event_ids"]]
    stored = client.query(
        "SELECT count() FROM access_log WHERE event_id IN {ids:Array(String)}", parameters={"ids": ids}
    ).result_rows[0][0]
    assert stored == len(set(ids))
