"""The detection refactors change no behaviour: a replay gives the incidents recorded before them.

``tests/golden/incidents-seed9.json`` was recorded by the code before the detector
families moved into ``detector/families`` (and before rule files existed): a 50-principal,
5-day organisation (seed 9) replayed in 2-hour steps (11 incidents of 6 families). The same replay must give the same
incidents — ids, detectors, severities, titles, scores, times, principals, resources.
Re-record it only for a change that is meant to alter detection, and say so in the commit.
Re-recorded once, for issue 16 (detection that generalises): two unusual exports of a few
megabytes from embedding stores went from SEV2 to SEV3 (nothing sizeable was taken), and the
runaway agent's weak signals added up to one more incident, a SEV3 ``entity_risk``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from blastwall.simulation import OrgSpec, build_organisation, write_to_store
from detector.incidents import list_incidents
from detector.replay import run_steps

GOLDEN = Path(__file__).parent / "golden" / "incidents-seed9.json"


def _incidents(client: Client) -> list[dict]:
    rows = [{"id": str(i["id"]), "detector": i["detector"], "severity": i["severity"], "title": i["title"],
             "detected_at": str(i["detected_at"]), "principals": sorted(i["principals"]),
             "resources": sorted(i["resources"]), "score": round(float(i["score"]), 6),
             "techniques": i["techniques"]} for i in list_incidents(client, limit=1_000_000)]
    return sorted(rows, key=lambda r: r["id"])


@pytest.mark.slow  # a whole replay
def test_a_replay_gives_the_recorded_incidents(client: Client) -> None:
    spec = OrgSpec(principals=50, days=5, seed=9)
    write_to_store(client, build_organisation(spec))
    run_steps(client, spec.start + timedelta(days=spec.days), timedelta(hours=2), since=spec.start)
    assert _incidents(client) == json.loads(GOLDEN.read_text())
