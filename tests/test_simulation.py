"""The simulated organisation: determinism, labelled attacks, realism invariants, files and store."""

from __future__ import annotations

import gzip
import io
import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from builders import epoch_ms

from blastwall.simulation import (
    AttackLabel,
    Organisation,
    OrgSpec,
    build_organisation,
    iter_access_log,
    write_files,
    write_to_store,
)
from blastwall.simulation.attacks import FAMILIES as SCENARIO_NAMES
from detector.families import FAMILIES as REGISTRY
from features import contract

SMALL = OrgSpec(principals=120, days=10, seed=11)
#: What the registry's families say they catch (detector.families): one vocabulary.
FAMILIES = {scenario: {f.id for f in REGISTRY.values() if scenario in f.scenarios} for scenario in SCENARIO_NAMES}
EVENT_ID = re.compile(r"^[0-9a-f]+-\d{3}-[0-9a-f]{8}$")


@pytest.fixture(scope="module")
def org() -> Organisation:
    return build_organisation(SMALL)


@pytest.fixture(scope="module")
def log(org: Organisation) -> pa.Table:
    return pa.Table.from_batches(list(iter_access_log(org)), schema=contract.arrow_schema("access_log"))


@pytest.fixture(scope="module")
def rows(log: pa.Table) -> dict[str, np.ndarray]:
    """Columns as numpy arrays (times as epoch milliseconds) for quick checks."""
    out = {name: np.asarray(log.column(name).to_pylist(), dtype=object) for name in
           ("event_id", "principal", "principal_type", "action", "resource", "grantee", "via", "status")}
    out["time"] = log.column("event_time").cast(pa.int64()).to_numpy()
    return out


@pytest.fixture(scope="module")
def attack_ids(org: Organisation) -> set[str]:
    return {e for label in org.labels for e in label.event_ids}




# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_catalogue_log_and_labels(org: Organisation, log: pa.Table) -> None:
    again = build_organisation(SMALL)
    for name in ("principals", "memberships", "resources"):
        assert getattr(again, name).equals(getattr(org, name)), name
    assert again.labels == org.labels
    assert pa.Table.from_batches(list(iter_access_log(again))).equals(log)


def test_a_different_seed_gives_a_different_organisation(org: Organisation, log: pa.Table) -> None:
    other = build_organisation(OrgSpec(principals=SMALL.principals, days=SMALL.days, seed=SMALL.seed + 1))
    assert not other.principals.equals(org.principals)
    first_day = next(iter_access_log(other, batch_rows=5_000))
    assert first_day.column("event_id")[0] != log.column("event_id")[0]
    assert first_day.column("principal").to_pylist() != log.column("principal")[:5_000].to_pylist()


def test_batch_rows_changes_batching_not_content(org: Organisation, log: pa.Table) -> None:
    batches = list(iter_access_log(org, batch_rows=7_777))
    assert all(b.num_rows == 7_777 for b in batches[:-1]) and 0 < batches[-1].num_rows <= 7_777
    assert pa.Table.from_batches(batches).equals(log)
    # Days can be generated on their own, in any order, with the same result.
    day_3 = pa.Table.from_batches(list(iter_access_log(org, days=[3])))
    start, end = org.day_bounds(3)
    times = log.column("event_time").cast(pa.int64())
    mask = pc.and_(pc.greater_equal(times, start), pc.less(times, end))
    assert log.filter(mask).equals(day_3)


# --------------------------------------------------------------------------- labels


def test_every_attack_family_is_labelled_with_its_detectors_and_severity(org: Organisation) -> None:
    by_family = {label.family: label for label in org.labels}
    assert set(by_family) == set(FAMILIES)
    for family, detectors in FAMILIES.items():
        label = by_family[family]
        assert detectors and set(label.detector_families) == detectors, family
        expected = {"low_and_slow": "SEV3", "permission_fanout": "SEV1", "external_grant": "SEV1"}.get(family, "SEV2")
        assert label.expected_min_severity == expected, family
        assert label.description and label.principals and label.resources and label.event_ids
    assert len({label.scenario_id for label in org.labels}) == len(org.labels)


def test_label_events_exist_and_bound_the_scenario(org: Organisation, rows: dict[str, np.ndarray]) -> None:
    time_of = dict(zip(rows["event_id"], rows["time"]))
    principals = set(org.principals.column("principal").to_pylist())
    resources = set(org.resources.column("resource").to_pylist())
    warmup_end = org.day_bounds(SMALL.warmup_days)[0]
    seen: set[str] = set()
    for label in org.labels:
        assert len(set(label.event_ids)) == len(label.event_ids)
        assert not seen & set(label.event_ids), "scenarios share no rows"
        seen |= set(label.event_ids)
        times = [time_of[e] for e in label.event_ids]  # KeyError: an id missing from the log
        assert min(times) == epoch_ms(label.start) and max(times) == epoch_ms(label.end), label.scenario_id
        assert min(times) >= warmup_end, "attacks start after the benign warm-up"
        assert set(label.principals) <= principals, label.scenario_id
        assert set(label.resources) <= resources, label.scenario_id


def test_labels_round_trip_through_json(org: Organisation) -> None:
    text = json.dumps([label.to_dict() for label in org.labels])
    restored = [AttackLabel.from_dict(d) for d in json.loads(text)]
    assert restored == org.labels
    assert all(d["start"].endswith("Z") for d in json.loads(text))


def test_attack_rows_carry_no_label(log: pa.Table, rows: dict[str, np.ndarray], attack_ids: set[str]) -> None:
    assert all(EVENT_ID.match(e) for e in rows["event_id"])
    is_attack = np.array([e in attack_ids for e in rows["event_id"]])
    keys = [[k for k, _ in m] for m in log.column("attributes").to_pylist()]
    attack_keys = {k for ks, a in zip(keys, is_attack) if a for k in ks}
    benign_keys = {k for ks, a in zip(keys, is_attack) if not a for k in ks}
    assert attack_keys <= benign_keys
    text = " ".join(str(v) for m in log.column("attributes").to_pylist() for kv in m for v in kv).lower()
    for word in ("attack", "scenario", "label", "malicious", "inject"):
        assert word not in text


def test_scenarios_show_their_signal(org: Organisation, log: pa.Table, rows: dict[str, np.ndarray]) -> None:
    by_family = {label.family: label for label in org.labels}
    catalogue = {r["resource"]: r for r in org.resources.to_pylist()}
    index = {e: i for i, e in enumerate(rows["event_id"])}
    related = log.column("related").to_pylist()
    attributes = [dict(m) for m in log.column("attributes").to_pylist()]

    fanout = [index[e] for e in by_family["permission_fanout"].event_ids]
    grant = next(i for i in fanout if rows["action"][i] == "grant")
    assert rows["grantee"][grant] == "all-staff"
    assert rows["via"][grant] == "ai_assistant" or rows["principal_type"][grant] == "agent"
    dataset = rows["resource"][grant]
    assert catalogue[dataset]["sensitivity"] == "restricted"
    assert {"employee_telemetry"} <= set(catalogue[dataset]["categories"])
    readers = {rows["principal"][i] for i in fanout if rows["time"][i] > rows["time"][grant]}
    earlier = {rows["principal"][i] for i in range(len(rows["time"]))
               if rows["resource"][i] == dataset and rows["time"][i] < rows["time"][grant]}
    assert len(readers) >= 24 and not readers & earlier, "dozens of first-time readers"

    train = [index[e] for e in by_family["unsanitised_training"].event_ids if rows["action"][index[e]] == "train"]
    run = rows["resource"][train[0]]
    assert catalogue[run]["kind"] == "training_run" and run.startswith("run.")
    assert any(catalogue[r]["sanitized"] == 0 for r in related[train[0]])

    grant = next(index[e] for e in by_family["external_grant"].event_ids if rows["action"][index[e]] == "grant")
    assert not rows["grantee"][grant].endswith("@corp.example")
    assert catalogue[rows["resource"][grant]]["sensitivity"] == "restricted"

    exports = [index[e] for e in by_family["embedding_export"].event_ids if rows["action"][index[e]] == "export"]
    destination = attributes[exports[0]]["destination"]
    attack_ids = {e for label in org.labels for e in label.event_ids}
    benign_destinations = {a.get("destination") for a, e in zip(attributes, rows["event_id"]) if e not in attack_ids}
    assert destination not in benign_destinations
    assert sum(log.column("bytes")[i].as_py() for i in exports) > 10e9

    sweep = [index[e] for e in by_family["secrets_sweep"].event_ids]
    assert all(catalogue[rows["resource"][i]]["kind"] == "secret" for i in sweep)
    assert "denied" in {rows["status"][i] for i in sweep} and len(sweep) >= 30

    agent_rows = [index[e] for e in by_family["runaway_agent"].event_ids]
    assert {rows["principal_type"][i] for i in agent_rows} == {"agent"}
    gaps = np.diff(rows["time"][agent_rows])
    assert len(agent_rows) > 1_000 and np.std(gaps) < 0.05 * np.mean(gaps), "machine-regular timing"

    join = [index[e] for e in by_family["unusual_join"].event_ids if rows["action"][index[e]] == "join"]
    joined = {c for i in join for r in [rows["resource"][i], *related[i]] for c in catalogue[r]["categories"]}
    assert {"chat", "performance", "employee_telemetry"} <= joined


# --------------------------------------------------------------------------- realism invariants


def test_log_schema_order_and_enumerations(log: pa.Table, rows: dict[str, np.ndarray]) -> None:
    assert log.schema == contract.arrow_schema("access_log")
    assert log.schema.field("event_time").type == pa.timestamp("ms", tz="UTC")
    assert np.all(np.diff(rows["time"]) >= 0), "globally ordered by event time"
    assert len(set(rows["event_id"])) == log.num_rows
    for column, allowed in (("principal_type", contract.PRINCIPAL_TYPES), ("action", contract.ACTIONS),
                            ("via", contract.VIA), ("status", contract.STATUSES)):
        assert set(rows[column]) <= set(allowed), column
    assert set(rows["action"]) >= set(contract.ACTIONS) - {"delete"} or set(rows["action"]) >= set(contract.ACTIONS)
    start, end = SMALL.start_ms, SMALL.start_ms + SMALL.days * 86_400_000
    assert rows["time"].min() >= start and rows["time"].max() < end


def test_log_refers_only_to_the_catalogue(org: Organisation, log: pa.Table, rows: dict[str, np.ndarray]) -> None:
    principals = set(org.principals.column("principal").to_pylist())
    groups = set(org.memberships.column("group").to_pylist())
    resources = set(org.resources.column("resource").to_pylist())
    outsiders = {g for g in set(rows["grantee"]) - principals - groups - {""}}
    assert outsiders and all(not o.endswith("@corp.example") for o in outsiders)
    assert set(rows["principal"]) <= principals | outsiders
    assert set(rows["resource"]) <= resources
    assert {r for lst in log.column("related").to_pylist() for r in lst} <= resources
    # The principal_type of a row is the catalogue's.
    kinds = {p["principal"]: p["principal_type"] for p in org.principals.to_pylist()}
    mismatched = [p for p, t in zip(rows["principal"], rows["principal_type"]) if p in kinds and kinds[p] != t]
    assert not mismatched


def test_catalogue_tables_follow_the_contract(org: Organisation) -> None:
    for name in ("principals", "memberships", "resources"):
        assert getattr(org, name).schema == contract.arrow_schema(name), name
    res = org.resources.to_pylist()
    assert {r["kind"] for r in res} == set(contract.RESOURCE_KINDS) - {"other"} | {"other"}
    assert {r["sensitivity"] for r in res} == set(contract.SENSITIVITIES)
    names = {r["resource"] for r in res}
    assert len(names) == len(res)
    for expected in ("ds.hr.performance_reviews", "emb.support.chat_embeddings", "secret.prod.db-password"):
        assert expected in names
    assert any(re.fullmatch(r"model\.[a-z0-9-]+\.ckpt-\d{4}", n) for n in names)
    assert any(re.fullmatch(r"run\.[a-z0-9-]+\.\d{4}-\d{2}-\d{2}", n) for n in names)
    categories = {c for r in res for c in r["categories"]}
    assert {"employee_telemetry", "keystrokes", "chat", "performance", "pii", "health", "credentials",
            "source_code", "customer", "financial"} <= categories


def test_principals_mix_people_services_and_agents(org: Organisation, log: pa.Table) -> None:
    table = org.principals.to_pylist()
    counts = defaultdict(int)
    for p in table:
        counts[p["principal_type"]] += 1
    assert sum(counts.values()) == SMALL.principals
    assert counts["human"] / SMALL.principals > 0.7 and counts["service"] >= 6 and counts["agent"] >= 4
    names = {p["principal"]: p for p in table}
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+\d*@corp\.example", n) for n, p in names.items()
               if p["principal_type"] == "human")
    assert all(n.startswith("svc-") for n, p in names.items() if p["principal_type"] == "service")
    assert all(re.fullmatch(r"agent-[a-z-]+-\d+", n) for n, p in names.items() if p["principal_type"] == "agent")
    assert all(p["manager"] in names for p in table if p["manager"])
    assert sum(1 for p in table if not p["manager"]) == 1, "one CEO"
    on_behalf = {dict(m).get("on_behalf_of") for m, t in
                 zip(log.column("attributes").to_pylist(), log.column("principal_type").to_pylist()) if t == "agent"}
    assert on_behalf - {None} and (on_behalf - {None}) <= set(names)


def test_groups_nest_without_cycles_and_all_staff_holds_every_person(org: Organisation) -> None:
    members: dict[str, list[str]] = defaultdict(list)
    for g, m in zip(org.memberships.column("group").to_pylist(), org.memberships.column("member").to_pylist()):
        members[g].append(m)

    def closure(group: str, path: tuple[str, ...] = ()) -> set[str]:
        assert group not in path, f"cycle {path + (group,)}"
        out: set[str] = set()
        for m in members[group]:
            out |= closure(m, path + (group,)) if m in members else {m}
        return out

    def depth(group: str) -> int:
        return 1 + max((depth(m) for m in members[group] if m in members), default=0)

    for group in members:
        closure(group)
    humans = {p["principal"] for p in org.principals.to_pylist() if p["principal_type"] == "human"}
    assert closure("all-staff") == humans
    assert depth("all-staff") >= 4, "all-staff > department > division > team"
    assert {"oncall", "ml-readers"} <= set(members)


def test_new_joiners_start_mid_period_without_history(org: Organisation, rows: dict[str, np.ndarray]) -> None:
    created = {p["principal"]: epoch_ms(p["created_at"]) for p in org.principals.to_pylist()}
    joiners = {p for p, t in created.items() if t > SMALL.start_ms}
    assert len(joiners) >= 2
    first_seen: dict[str, int] = {}
    for p, t in zip(rows["principal"], rows["time"]):
        first_seen.setdefault(p, t)
    assert all(first_seen[p] >= created[p] for p in first_seen if p in created)
    assert any(p in first_seen for p in joiners), "new joiners get to work"


def test_weekends_are_quieter_and_people_keep_office_hours(org: Organisation, rows: dict[str, np.ndarray]) -> None:
    day = (rows["time"] - SMALL.start_ms) // 86_400_000
    per_day = np.bincount(day, minlength=SMALL.days)
    weekend = np.array([(SMALL.start + timedelta(days=d)).weekday() >= 5 for d in range(SMALL.days)])
    assert per_day[weekend].mean() < 0.6 * per_day[~weekend].mean()
    humans = rows["principal_type"] == "human"
    hour = (rows["time"][humans] // 3_600_000) % 24
    assert np.bincount(hour, minlength=24).min() > 0, "a global team works around the clock (UTC)"


def test_services_run_like_clockwork(rows: dict[str, np.ndarray], log: pa.Table) -> None:
    jobs = [dict(m).get("job", "") for m in log.column("attributes").to_pylist()]
    mask = np.array([j == next((x for x in jobs if "every-5m" in x), None) for j in jobs])
    first_step = mask & (rows["action"] == rows["action"][mask][0])
    gaps = np.diff(rows["time"][first_step]) / 1000
    assert np.median(gaps) == pytest.approx(300, abs=2)
    assert np.median(np.abs(gaps - 300)) < 2
    assert set(rows["via"][rows["principal_type"] == "service"]) == {"pipeline"}


def test_benign_hard_cases_are_present(org: Organisation, log: pa.Table, rows: dict[str, np.ndarray],
                                       attack_ids: set[str]) -> None:
    catalogue = {r["resource"]: r for r in org.resources.to_pylist()}
    benign = np.array([e not in attack_ids for e in rows["event_id"]])
    related = log.column("related").to_pylist()
    # Training runs by services consume sanitised data only.
    train = np.flatnonzero(benign & (rows["action"] == "train"))
    assert len(train) >= SMALL.days and set(rows["principal_type"][train]) == {"service"}
    assert all(catalogue[r]["sanitized"] == 1 for i in train for r in related[i])
    # Grants to everyone are of non-sensitive data; team grants exist too.
    grants = np.flatnonzero(benign & (rows["action"] == "grant"))
    to_all = [i for i in grants if rows["grantee"][i] == "all-staff"]
    assert to_all and all(catalogue[rows["resource"][i]]["sensitivity"] in ("public", "internal") for i in to_all)
    assert any(rows["grantee"][i].startswith("team-") for i in grants)
    # Joins never combine chat with performance data.
    for i in np.flatnonzero(benign & (rows["action"] == "join")):
        cats = {c for r in [rows["resource"][i], *related[i]] for c in catalogue[r]["categories"]}
        assert not {"chat", "performance"} <= cats
    # Exports go to known destinations; checkpoint downloads are gigabytes.
    attributes = log.column("attributes").to_pylist()
    exports = np.flatnonzero(benign & (rows["action"] == "export"))
    assert exports.size and all("destination" in dict(attributes[i]) for i in exports)
    nbytes = log.column("bytes").to_numpy()
    downloads = [i for i in np.flatnonzero(benign & (rows["action"] == "download"))
                 if catalogue[rows["resource"][i]]["kind"] == "model"]
    assert downloads and np.median(nbytes[downloads]) > 1e9
    assert np.median(nbytes[exports]) < 1e9
    # People log in; some requests are denied or fail; agents act for people through assistants.
    assert {"login", "read", "query", "join", "export", "write"} <= set(rows["action"][benign])
    assert {"denied", "error"} <= set(rows["status"][benign])
    assert "ai_assistant" in set(rows["via"][benign & (rows["principal_type"] == "agent")])
    # The on-call engineer's night sweep: a burst of reads between 00:00 and 05:00 local time.
    oncall = set(org.groups["oncall"])
    tz = {org.model.principals[i].name: int(org.model.people.tz_min[i]) for i in org.model.oncall}
    night = [i for i in np.flatnonzero(benign) if rows["principal"][i] in oncall
             and ((rows["time"][i] // 60_000 + tz[rows["principal"][i]]) % 1440) < 300]
    per_night = np.bincount((rows["time"][night] - SMALL.start_ms) // 86_400_000) if night else np.array([0])
    assert per_night.max() >= 25
    # Quarter close: finance and analytics work harder on close days.
    teams = {p["principal"]: p["team"] for p in org.principals.to_pylist()}
    closing = np.array([teams.get(p) in ("finance", "analytics") for p in rows["principal"]]) & benign
    day = (rows["time"] - SMALL.start_ms) // 86_400_000
    close_days = list(org.quarter_close_days)
    workdays = [d for d in range(SMALL.days) if (SMALL.start + timedelta(days=d)).weekday() < 5]
    per_day = np.bincount(day[closing], minlength=SMALL.days)
    normal = [d for d in workdays if d not in close_days]
    assert close_days and per_day[close_days].mean() > 1.8 * per_day[normal].mean()


def test_spec_rejects_what_cannot_be_simulated() -> None:
    with pytest.raises(ValueError):
        OrgSpec(principals=10)
    with pytest.raises(ValueError):
        OrgSpec(days=3)
    with pytest.raises(ValueError):
        OrgSpec(start=datetime(2026, 10, 5, 12, tzinfo=UTC))
    assert OrgSpec(days=2, attacks=False).days == 2


def test_without_attacks_there_are_no_labels() -> None:
    org = build_organisation(OrgSpec(principals=60, days=3, attacks=False))
    assert org.labels == []
    assert sum(b.num_rows for b in iter_access_log(org)) > 0


# --------------------------------------------------------------------------- files and store


def _read_back(path: Path, fmt: str) -> list[dict]:
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    if fmt == "jsonl":
        return [orjson.loads(line) for line in raw.splitlines()]
    return pa_csv.read_csv(io.BytesIO(raw), convert_options=pa_csv.ConvertOptions(
        column_types={"event_time": pa.string(), "created_at": pa.string(), "updated_at": pa.string()})).to_pylist()


@pytest.mark.parametrize(("fmt", "compressed"), [("jsonl", False), ("csv", False), ("parquet", False),
                                                 ("jsonl", True), ("csv", True)])
def test_write_files_round_trip(org: Organisation, log: pa.Table, tmp_path: Path, fmt: str, compressed: bool) -> None:
    counts = write_files(org, tmp_path, fmt=fmt, gzip=compressed)
    suffix = f".{fmt}" + (".gz" if compressed else "")
    assert counts == {"resources": org.resources.num_rows, "memberships": org.memberships.num_rows,
                      "principals": org.principals.num_rows, "access_log": log.num_rows, "labels": len(org.labels)}
    for table in ("resources", "memberships", "principals", "access_log"):
        records = _read_back(tmp_path / f"{table}{suffix}", fmt)
        assert len(records) == counts[table], table
        assert list(records[0]) == contract.arrow_schema(table).names, table
    events = _read_back(tmp_path / f"access_log{suffix}", fmt)
    assert [e["event_id"] for e in events[:50]] == log.column("event_id")[:50].to_pylist()
    if fmt != "parquet":
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["event_time"]) for e in events[:100])
        joins = [e for e in events if e["action"] == "join"][:5]
        related = [e["related"] if fmt == "jsonl" else json.loads(e["related"]) for e in joins]
        assert joins and all(isinstance(r, list) and r for r in related)
        attrs = [e["attributes"] if fmt == "jsonl" else json.loads(e["attributes"]) for e in events[:200]]
        assert all(isinstance(a, dict) for a in attrs) and any(attrs)
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert [AttackLabel.from_dict(d) for d in labels] == org.labels


def test_write_to_store_loads_everything(client, org: Organisation, log: pa.Table) -> None:
    counts = write_to_store(client, org, batch_rows=40_000)
    expected = {"principals": org.principals.num_rows, "memberships": org.memberships.num_rows,
                "resources": org.resources.num_rows, "access_log": log.num_rows, "scenario_labels": len(org.labels)}
    assert {k: counts[k] for k in expected} == expected
    assert counts["seconds"] > 0
    for table, n in expected.items():
        assert int(client.command(f"SELECT count() FROM {table}")) == n, table
    attack = org.labels[0]
    stored = client.query("SELECT family, length(event_ids), start FROM scenario_labels WHERE scenario_id = {s:String}",
                          parameters={"s": attack.scenario_id}).result_rows
    assert stored[0][:2] == (attack.family, len(attack.event_ids))
    found = client.query("SELECT count() FROM access_log WHERE has({ids:Array(String)}, event_id)",
                         parameters={"ids": list(attack.event_ids)}).result_rows[0][0]
    assert found == len(attack.event_ids)


def test_only_a_store_given_an_organisation_has_its_labels_table(client, store_dsn: str) -> None:
    """`init` makes a production store: the demo's labels table is not in it."""
    assert not int(client.command("EXISTS TABLE scenario_labels"))
    write_to_store(client, OrgSpec(principals=40, days=5, seed=3))
    assert int(client.command("EXISTS TABLE scenario_labels"))
    assert int(client.command("SELECT count() FROM scenario_labels")) > 0
