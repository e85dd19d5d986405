"""The feature oracle itself, on tiny hand-built logs whose expected values are worked out by hand here."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from builders import MONDAY, event_row
from builders import contract_frame as frame
from builders import membership_row as member
from builders import principal_row as person
from builders import resource_row as res

from features.reference import effective_audience, hour_of_week, reference_features
from features.registry import ENTITY_KEYS, SENSITIVE_CATEGORIES, features_of

#: A Monday 00:00 UTC: hour of week of T0 + h hours is h (for h < 168).
T0 = MONDAY
#: The window used by most tests: day 2 (Tuesday) of that week.
START, END = T0 + timedelta(days=1), T0 + timedelta(days=2)
U64 = 2**64 - 1

_counter = iter(range(1, 10**9))


def at(hours: float = 0.0, ms: int = 0, base: datetime = START) -> datetime:
    """A time ``hours`` hours plus ``ms`` milliseconds after ``base`` (default: window start)."""
    return base + timedelta(hours=hours, milliseconds=ms)


def ev(time: datetime, principal: str, action: str, resource: str, **fields: Any) -> dict[str, Any]:
    """An access-log row with contract defaults and the next event id."""
    return event_row(time, principal, action, resource, **({"event_id": f"e{next(_counter):06d}"} | fields))


def features(events: list[dict[str, Any]], resources: list[dict[str, Any]] = (),
             memberships: list[dict[str, Any]] = (), principals: list[dict[str, Any]] = (),
             start: datetime = START, end: datetime = END) -> dict[str, pd.DataFrame]:
    return reference_features(frame("access_log", list(events)), frame("resources", list(resources)),
                              frame("memberships", list(memberships)), frame("principals", list(principals)),
                              start, end)


def row_of(frame_: pd.DataFrame, **keys: Any) -> dict[str, Any]:
    """The single row matching ``keys``, as Python values."""
    mask = np.ones(len(frame_), dtype=bool)
    for k, v in keys.items():
        mask &= (frame_[k] == v).to_numpy()
    assert mask.sum() == 1, f"{keys}: {mask.sum()} rows"
    return {k: v.item() if hasattr(v, "item") else v for k, v in frame_[mask].iloc[0].items()}


# ------------------------------------------------------------------ layout and edges


def expected_columns(entity: str) -> list[str]:
    return [*ENTITY_KEYS[entity], *(f.name for f in features_of(entity))]


def check_layout(out: dict[str, pd.DataFrame]) -> None:
    assert list(out) == ["principal", "grant", "resource", "training_run"]
    for entity, df in out.items():
        assert list(df.columns) == expected_columns(entity)
        assert list(df.index) == list(range(len(df)))
        for f in features_of(entity):
            want = "float64" if f.unit in ("share", "ratio") else "int64"
            assert str(df[f.name].dtype) == want, (entity, f.name)


def test_empty_log_gives_empty_frames_with_the_layout():
    out = features([])
    check_layout(out)
    assert all(len(df) == 0 for df in out.values())


def test_empty_window_with_history_only():
    out = features([ev(at(-2), "ann", "read", "ds"), ev(at(-1), "ann", "grant", "ds", grantee="bob"),
                    ev(at(24), "ann", "train", "run", related=["ds"])])  # at END: excluded
    check_layout(out)
    assert all(len(df) == 0 for df in out.values())


def test_window_is_half_open():
    out = features([ev(START, "ann", "read", "ds"), ev(END - timedelta(milliseconds=1), "ann", "read", "ds"),
                    ev(END, "ann", "read", "ds"), ev(START - timedelta(milliseconds=1), "bob", "read", "ds")])
    assert out["principal"]["principal"].tolist() == ["ann"]
    assert row_of(out["principal"], principal="ann")["events"] == 2
    r = row_of(out["resource"], resource="ds")
    assert (r["readers"], r["first_time_readers"]) == (1, 1)


def test_one_event():
    out = features([ev(at(3), "ann", "read", "ds.hr", bytes=100, source_ip="10.0.0.1")],
                   resources=[res("ds.hr", sensitivity="confidential", categories=("pii", "source_code"))])
    check_layout(out)
    p = row_of(out["principal"], principal="ann")
    assert p == {
        "principal": "ann", "events": 1, "distinct_resources": 1, "sensitive_reads": 1, "bytes_read": 100,
        "bytes_exported": 0, "bytes_downloaded": 0, "exports": 0, "embedding_export_bytes": 0, "joins": 0,
        "grants": 0, "artifact_downloads": 0, "distinct_secrets": 0, "failed_actions": 0, "source_ips": 1,
        "ai_assistant_actions": 0, "join_sensitive_categories": 0, "new_resource_share": 1.0,
        "new_export_destinations": 0, "join_pair_rarity_global": 0.0, "join_pair_rarity_personal": 0.0,
        "max_events_per_minute": 1, "timing_regularity": 0.0, "off_hours_share": 0.0,
        "largest_grant_audience": 0, "events_vs_team": 1.0, "bytes_exported_vs_team": 1.0,
    }
    assert out["resource"].to_dict("records") == [
        {"resource": "ds.hr", "readers": 1, "first_time_readers": 1, "resource_sensitivity_rank": 2}]
    assert len(out["grant"]) == 0 and len(out["training_run"]) == 0


def test_principal_with_no_history():
    events = [ev(at(-5), "old", "read", "a"), ev(at(-5), "old", "export", "a", attributes={"destination": "s3://x"}),
              ev(at(1), "new", "read", "a"), ev(at(2), "new", "read", "b"),
              ev(at(3), "new", "export", "a", attributes={"destination": "s3://x"}),
              ev(at(4), "old", "read", "a"), ev(at(5), "old", "read", "c"),
              ev(at(6), "old", "export", "a", attributes={"destination": "s3://x"}),
              ev(at(7), "old", "export", "a", attributes={"destination": "s3://y"}),
              ev(at(8), "old", "export", "a", attributes={"destination": ""})]
    out = features(events)
    new, old = row_of(out["principal"], principal="new"), row_of(out["principal"], principal="old")
    assert new["new_resource_share"] == 1.0 and new["new_export_destinations"] == 1
    assert new["off_hours_share"] == 0.0
    assert old["new_resource_share"] == 0.5  # a seen before, c new
    assert old["new_export_destinations"] == 1  # s3://y only; s3://x is known, '' never counts
    a = row_of(out["resource"], resource="a")
    assert (a["readers"], a["first_time_readers"]) == (2, 1)  # export is a reading action too


def test_plain_counts_and_sums():
    cat = [res("emb", kind="embedding"), res("mdl", kind="model", sensitivity="restricted"),
           res("sec1", kind="secret"), res("sec2", kind="secret"), res("pub", sensitivity="public")]
    w = [
        ev(at(1), "ann", "export", "emb", bytes=10, via="ai_assistant", source_ip="1.1.1.1"),
        ev(at(1), "ann", "export", "pub", bytes=5, status="denied", source_ip="1.1.1.1"),
        ev(at(2), "ann", "download", "mdl", bytes=7, source_ip="2.2.2.2"),
        ev(at(2), "ann", "download", "pub", bytes=1, status="error"),
        ev(at(3), "ann", "read", "sec1", bytes=3), ev(at(3), "ann", "query", "sec1", bytes=4),
        ev(at(3), "ann", "write", "sec2", bytes=1000),  # not reading: no secret, no bytes_read
        ev(at(4), "ann", "join", "pub", related=["emb"], bytes=2),
        ev(at(5), "ann", "grant", "pub", grantee="bob", via="ai_assistant"),
        ev(at(5), "ann", "read", "uncatalogued", bytes=1),
    ]
    p = row_of(features(w, cat)["principal"], principal="ann")
    assert p["events"] == 10 and p["distinct_resources"] == 6
    assert p["sensitive_reads"] == 1  # the model download (restricted)
    assert (p["bytes_read"], p["bytes_exported"], p["bytes_downloaded"]) == (3 + 4 + 2 + 1, 15, 8)
    assert (p["exports"], p["embedding_export_bytes"], p["joins"], p["grants"]) == (2, 10, 1, 1)
    assert (p["artifact_downloads"], p["distinct_secrets"], p["failed_actions"]) == (1, 1, 2)
    assert (p["source_ips"], p["ai_assistant_actions"]) == (2, 2)


def test_catalogue_takes_the_newest_row_and_the_last_on_ties():
    cat = [res("ds", sensitivity="restricted", updated_at=T0 + timedelta(hours=2)),
           res("ds", sensitivity="public", updated_at=T0 + timedelta(hours=1)),
           res("tie", sensitivity="restricted", updated_at=T0),
           res("tie", sensitivity="public", updated_at=T0)]
    out = features([ev(at(1), "ann", "read", "ds"), ev(at(1), "ann", "read", "tie")], cat)
    assert out["resource"].set_index("resource")["resource_sensitivity_rank"].to_dict() == {"ds": 3, "tie": 0}


# ------------------------------------------------------------------ audiences


def test_effective_audience_cycles_and_non_groups():
    groups = {"a": {"b", "alice"}, "b": {"a", "bob", "alice"}, "c": {"d"}, "d": {"c"}}
    assert effective_audience("a", groups) == {"alice", "bob"}
    assert effective_audience("b", groups) == {"alice", "bob"}
    assert effective_audience("c", groups) == set()  # a cycle of groups with no people
    assert effective_audience("carol", groups) == {"carol"}


def test_cyclic_nesting_in_grants():
    ms = [member("a", "b"), member("b", "a"), member("a", "alice"), member("b", "bob"), member("b", "alice"),
          member("b", "gone"), member("b", "gone", removed=1, updated_at=T0 + timedelta(hours=1))]
    out = features([ev(at(1), "ann", "grant", "ds", grantee="a"), ev(at(2), "ann", "grant", "ds", grantee="ext")],
                   memberships=ms)
    assert row_of(out["principal"], principal="ann")["largest_grant_audience"] == 2
    g = out["grant"]
    assert g["grantee"].tolist() == ["a", "ext"]  # sorted by event_id = time order here
    assert g[["audience_before", "audience_after", "audience_gain"]].to_numpy().tolist() == [[0, 2, 2], [0, 1, 1]]


def test_grantee_not_a_group_external_and_flags():
    ms = [member("team-x", "bob")]
    ps = [person("ann"), person("bob")]
    w = [ev(at(1), "ann", "grant", "ds", grantee="bob", event_id="g1"),
         ev(at(2), "ann", "grant", "ds", grantee="team-x", event_id="g2", principal_type="agent"),
         ev(at(3), "ann", "grant", "ds", grantee="mallory@outside.example", event_id="g3", via="ai_assistant",
            status="denied")]
    g = features(w, [res("ds", sensitivity="restricted", categories=("chat", "pii", "pii", "source_code"))],
                 ms, ps)["grant"]
    assert g["event_id"].tolist() == ["g1", "g2", "g3"]
    assert g["audience_after"].tolist() == [1, 1, 1]
    assert g["grantee_external"].tolist() == [0, 0, 1]
    assert g["initiator_is_agent"].tolist() == [0, 1, 0]
    assert g["via_ai_assistant"].tolist() == [0, 0, 1]
    assert g["sensitivity_rank"].tolist() == [3, 3, 3]
    assert g["sensitive_categories"].tolist() == [2, 2, 2]  # chat, pii
    assert g["event_time"].tolist() == [pd.Timestamp(at(h)) for h in (1, 2, 3)]


def test_a_group_whose_memberships_were_all_removed_is_a_person():
    ms = [member("old-team", "bob"), member("old-team", "bob", removed=1, updated_at=T0 + timedelta(hours=1)),
          member("old-team", "carl", removed=1)]
    g = features([ev(at(1), "ann", "grant", "ds", grantee="old-team")], memberships=ms)["grant"]
    assert g[["audience_after", "grantee_external"]].to_numpy().tolist() == [[1, 1]]


def test_grant_on_uncatalogued_resource_has_rank_1_and_no_categories():
    g = row_of(features([ev(at(1), "ann", "grant", "nowhere", grantee="bob")])["grant"], grantee="bob")
    assert (g["sensitivity_rank"], g["sensitive_categories"]) == (1, 0)


def test_grant_then_revoke_in_history():
    ms = [member("all", "p1"), member("all", "p2"), member("all", "p3"), member("small", "p1")]
    h = [
        ev(at(-9), "adm", "grant", "ds", grantee="all", event_id="h1"),
        ev(at(-8), "adm", "revoke", "ds", grantee="all", event_id="h2"),  # all: revoked
        ev(at(-7), "adm", "grant", "ds", grantee="small", event_id="h3"),  # small: granted -> {p1}
        ev(at(-6), "adm", "revoke", "ds", grantee="p9", event_id="h4"),
        ev(at(-5), "adm", "grant", "ds", grantee="p9", event_id="h5"),  # p9: revoke then grant -> granted
        ev(at(-5), "adm", "grant", "ds", grantee="p8", event_id="h6"),
        ev(at(-4), "adm", "revoke", "ds", grantee="p8", event_id="h7", status="denied"),  # denied: ignored
        ev(at(-3), "adm", "grant", "ds", grantee="p7", event_id="h8", status="error"),  # never ok: ignored
        ev(at(-2), "adm", "grant", "other", grantee="all", event_id="h9"),  # another resource
        # same ms: the larger event_id is the newer one
        ev(at(-1), "adm", "revoke", "ds", grantee="p6", event_id="h_b"),
        ev(at(-1), "adm", "grant", "ds", grantee="p6", event_id="h_a"),
    ]
    w = [ev(at(1), "adm", "grant", "ds", grantee="all", event_id="w1"),
         ev(at(2), "adm", "revoke", "ds", grantee="p9", event_id="w2"),  # W revokes do not change H state
         ev(at(3), "adm", "grant", "ds", grantee="p1", event_id="w3")]
    g = features(h + w, memberships=ms)["grant"].set_index("event_id")
    # before = small {p1} U p9 U p8 = {p1, p9, p8}
    assert g.loc["w1", ["audience_before", "audience_after", "audience_gain"]].tolist() == [3, 5, 2]
    assert g.loc["w3", ["audience_before", "audience_after", "audience_gain"]].tolist() == [3, 3, 0]


def test_unicode_identifiers():
    w = [ev(at(1), "名前@corp.example", "read", "données.é"), ev(at(2), "zoë", "grant", "données.é", grantee="équipe"),
         ev(at(3), "ann", "read", "données.é"),
         ev(at(4), "名前@corp.example", "train", "run-🚀", related=["données.é"])]
    out = features(w, [res("données.é", sensitivity="restricted", categories=("santé", "health"))],
                   [member("équipe", "名前@corp.example"), member("équipe", "zoë")], [person("zoë", team="ÉQ")])
    assert out["principal"]["principal"].tolist() == ["ann", "zoë", "名前@corp.example"]  # code-point order
    assert row_of(out["principal"], principal="zoë")["largest_grant_audience"] == 2
    assert row_of(out["resource"], resource="données.é")["readers"] == 2
    assert out["training_run"].to_dict("records") == [{"resource": "run-🚀", "inputs": 1, "unsanitised_inputs": 0,
                                                       "sensitive_inputs": 1, "uncatalogued_inputs": 0}]


# ------------------------------------------------------------------ huge bytes


def test_byte_sums_are_exact_below_the_cap():
    w = [ev(at(1), "ann", "read", "ds", bytes=2**62), ev(at(2), "ann", "query", "ds", bytes=2**62 - 1),
         ev(at(1), "bob", "export", "emb", bytes=2**53 + 1), ev(at(2), "bob", "export", "emb", bytes=2**53 + 1)]
    out = features(w, [res("emb", kind="embedding")])
    ann, bob = row_of(out["principal"], principal="ann"), row_of(out["principal"], principal="bob")
    assert ann["bytes_read"] == 2**63 - 1  # exact: not float, not wrapped
    assert bob["bytes_exported"] == bob["embedding_export_bytes"] == 2**54 + 2  # beyond float64's exact integers
    assert out["principal"]["bytes_read"].dtype == np.int64


@pytest.mark.parametrize("amounts", [[U64], [2**63], [2**62, 2**62], [U64, 2], [U64] * 3],
                         ids=["2**64-1", "2**63", "2**62+2**62", "beyond 2**64", "3 x (2**64-1)"])
def test_byte_sums_saturate_at_int64_max(amounts):
    w = [ev(at(1, ms=k), "ann", "export", "emb", bytes=b) for k, b in enumerate(amounts)]
    w += [ev(at(1), "bob", "export", "emb", bytes=0), ev(at(1), "bob", "download", "emb", bytes=U64)]
    out = features(w, [res("emb", kind="embedding")])
    ann, bob = row_of(out["principal"], principal="ann"), row_of(out["principal"], principal="bob")
    cap = 2**63 - 1
    assert ann["bytes_exported"] == ann["embedding_export_bytes"] == cap and bob["bytes_downloaded"] == cap
    median = (float(cap) + 0.0) / 2  # one peer group of two
    assert ann["bytes_exported_vs_team"] == pytest.approx((float(cap) + 1) / (median + 1), rel=1e-12)
    assert bob["bytes_exported_vs_team"] == pytest.approx(1 / (median + 1), rel=1e-12)


# ------------------------------------------------------------------ joins


def test_join_with_only_one_resource_has_no_pair():
    h = [ev(at(-1), "bob", "join", "a", related=["b"])]
    w = [ev(at(1), "ann", "join", "a"), ev(at(2), "ann", "join", "a", related=["a"])]
    p = row_of(features(h + w)["principal"], principal="ann")
    assert (p["join_pair_rarity_global"], p["join_pair_rarity_personal"]) == (0.0, 0.0)


def test_join_pair_rarity_counts_history_joins_containing_the_pair():
    h = [ev(at(-5), "bob", "join", "a", related=["b", "c"]),  # contains {a,b}, {a,c}, {b,c}
         ev(at(-4), "bob", "join", "b", related=["a"]),
         ev(at(-3), "ann", "join", "a", related=["b", "b"]),
         ev(at(-2), "ann", "read", "a", related=["b"]),  # not a join
         ev(at(1, base=END), "ann", "join", "a", related=["b"])]  # after the window: not history
    w = [ev(at(1), "ann", "join", "a", related=["b"]),  # {a,b}: global 3, personal 1
         ev(at(2), "carl", "join", "c", related=["b", "a"]),  # min over {a,b} 3, {a,c} 1, {b,c} 1 -> 1; personal 0
         ev(at(3), "dora", "join", "x", related=["y"])]  # never joined: c = 0
    out = features(h + w)
    ann, carl, dora = (row_of(out["principal"], principal=p) for p in ("ann", "carl", "dora"))
    assert (ann["join_pair_rarity_global"], ann["join_pair_rarity_personal"]) == (1 / 4, 1 / 2)
    assert (carl["join_pair_rarity_global"], carl["join_pair_rarity_personal"]) == (1 / 2, 1.0)
    assert (dora["join_pair_rarity_global"], dora["join_pair_rarity_personal"]) == (1.0, 1.0)


def test_empty_strings_in_related_are_ignored():
    h = [ev(at(-1), "bob", "join", "a", related=["", "b"])]
    w = [ev(at(1), "ann", "join", "a", related=[""]),  # only a: no pair
         ev(at(2), "bob", "join", "a", related=["b", ""]),  # {a, b}: joined once before
         ev(at(3), "svc", "train", "run", related=["", "a", ""]), ev(at(4), "svc", "train", "run0", related=[""])]
    out = features(h + w, [res("", sensitivity="restricted", categories=("pii",))])  # even a catalogued ''
    p = out["principal"].set_index("principal")
    assert p.loc["ann", ["join_pair_rarity_global", "join_sensitive_categories"]].tolist() == [0.0, 0.0]
    assert p.loc["bob", ["join_pair_rarity_global", "join_pair_rarity_personal"]].tolist() == [0.5, 0.5]
    assert out["training_run"][["resource", "inputs", "uncatalogued_inputs"]].to_numpy().tolist() == [
        ["run", 1, 1], ["run0", 0, 0]]


def test_join_sensitive_categories_max_over_joins():
    cat = [res("chat", categories=("chat", "source_code")), res("perf", categories=("performance", "chat")),
           res("keys", categories=("keystrokes",))]
    w = [ev(at(1), "ann", "join", "chat", related=["perf", "nowhere"]),  # chat, performance -> 2
         ev(at(2), "ann", "join", "keys", related=["chat", "perf"]),  # keystrokes, chat, performance -> 3
         ev(at(3), "ann", "read", "keys", related=["chat", "perf"]),
         ev(at(3), "bob", "read", "keys")]
    out = features(w, cat)
    assert row_of(out["principal"], principal="ann")["join_sensitive_categories"] == 3
    assert row_of(out["principal"], principal="bob")["join_sensitive_categories"] == 0
    assert {"chat", "performance", "keystrokes"} <= set(SENSITIVE_CATEGORIES)


# ------------------------------------------------------------------ event-time features


def test_off_hours_needs_50_history_events():
    h = [ev(at(9, ms=i, base=T0), "ann", "read", "a") for i in range(49)]  # Monday 09:00
    w = [ev(at(3), "ann", "read", "a")]  # Tuesday 03:00: an hour never seen
    assert row_of(features(h + w)["principal"], principal="ann")["off_hours_share"] == 0.0


def test_off_hours_share_with_enough_history():
    # 100 H events: 98 on Monday 09:xx, 1 on Tuesday 03:xx the week before (exactly 1 %: usual), 1 on Monday 10:xx
    week_before = T0 - timedelta(days=7)
    h = [ev(at(9, ms=i * 1000, base=T0), "ann", "read", "a") for i in range(98)]
    h += [ev(at(24 + 3.5, base=week_before), "ann", "read", "a"), ev(at(10.5, base=T0), "ann", "read", "a")]
    assert hour_of_week(pd.Timestamp(at(3))) == 27 and hour_of_week(pd.Timestamp(at(9.5, base=T0))) == 9
    w = [ev(at(3), "ann", "read", "a"),  # how 27: 1 of 100 -> usual
         ev(at(4), "ann", "read", "a"),  # how 28: 0 -> unusual
         ev(at(9, base=T0 + timedelta(days=7)), "ann", "read", "a"),  # next Monday 09: usual
         ev(at(5), "ann", "read", "a")]  # unusual
    out = features(h + w, end=T0 + timedelta(days=8))
    assert row_of(out["principal"], principal="ann")["off_hours_share"] == 2 / 4
    # 101 H events: the hour holding 1 of them is now below 1 %
    h.append(ev(at(9, ms=999_000, base=T0), "ann", "read", "a"))
    out = features(h + w, end=T0 + timedelta(days=8))
    assert row_of(out["principal"], principal="ann")["off_hours_share"] == 3 / 4


def test_hour_of_week():
    assert hour_of_week(pd.Timestamp("2026-10-05T00:00Z")) == 0  # Monday
    assert hour_of_week(pd.Timestamp("2026-10-11T23:59:59.999Z")) == 167  # Sunday
    assert hour_of_week(pd.Timestamp("2026-10-05T01:30+02:00")) == 167  # Sunday 23:30 in UTC


def test_timing_regularity():
    def regularity(offsets_ms: list[int]) -> float:
        w = [ev(at(1, ms=o), "ann", "read", "a") for o in offsets_ms]
        return row_of(features(w)["principal"], principal="ann")["timing_regularity"]

    assert regularity([0, 1000, 2000, 3000]) == 0.0  # 4 events: too few
    assert regularity([0, 10_000, 20_000, 30_000, 40_000]) == 1.0  # perfectly periodic
    assert regularity([40_000, 0, 20_000, 10_000, 30_000]) == 1.0  # order of the input is irrelevant
    assert regularity([5, 5, 5, 5, 5]) == 1.0  # mean gap 0
    # gaps 1000, 1000, 1000, 4000: mean 1750, population std sqrt((3 * 750**2 + 2250**2) / 4)
    assert regularity([0, 1000, 2000, 3000, 7000]) == pytest.approx(1 - math.sqrt(1_687_500) / 1750, rel=1e-12)
    # gaps 0, 0, 0, 100: mean 25, std sqrt((3 * 625 + 75**2) / 4) = 43.3 > mean -> clipped to 0
    assert regularity([0, 0, 0, 0, 100]) == 0.0


def test_max_events_per_minute():
    w = [ev(at(1, ms=o), "ann", "read", "a") for o in (0, 59_999, 60_000, 60_000, 60_001, 119_999, 120_000)]
    # from 0: 2; from 59_999: 59_999, 60_000 x2, 60_001 -> 4 (119_999 = 59_999 + 60 s is out); from 60_000: 4
    assert row_of(features(w)["principal"], principal="ann")["max_events_per_minute"] == 4
    w = [ev(at(1, ms=o), "ann", "read", "a") for o in (0, 60_000, 120_000)]  # exactly 60 s apart
    assert row_of(features(w)["principal"], principal="ann")["max_events_per_minute"] == 1


# ------------------------------------------------------------------ peers


def test_peer_groups_by_team():
    ps = [person("a1", "red"), person("a2", "red"), person("a3", "red"), person("b1", ""),
          person("z", "red", updated_at=T0), person("z", "blue", updated_at=T0 + timedelta(hours=1))]
    w = [ev(at(1, ms=i), "a1", "read", "x") for i in range(1)]
    w += [ev(at(1, ms=i), "a2", "read", "x") for i in range(3)]
    w += [ev(at(1, ms=i), "a3", "export", "x", bytes=9) for i in range(5)]  # red: events 1, 3, 5; exported 0, 0, 45
    w += [ev(at(1, ms=i), "b1", "read", "x") for i in range(2)]  # no team ...
    w += [ev(at(1, ms=i), "stranger", "export", "x", bytes=3) for i in range(6)]  # ... and uncatalogued: one group
    w += [ev(at(1), "z", "read", "x")]  # newest row says blue: alone
    p = features(w, principals=ps)["principal"].set_index("principal")
    assert p["events_vs_team"].to_dict() == pytest.approx(
        {"a1": 1 / 3, "a2": 1.0, "a3": 5 / 3, "b1": 2 / 4, "stranger": 6 / 4, "z": 1.0})
    assert p["bytes_exported_vs_team"].to_dict() == pytest.approx(
        {"a1": 1.0, "a2": 1.0, "a3": 46.0, "b1": 1 / 10, "stranger": 19 / 10, "z": 1.0})


# ------------------------------------------------------------------ resources and training runs


def test_resource_rows_only_for_reading_actions():
    h = [ev(at(-1), "ann", "write", "ds"), ev(at(-1), "bob", "read", "other")]
    w = [ev(at(1), "ann", "read", "ds"), ev(at(1), "bob", "download", "ds"), ev(at(1), "bob", "query", "ds"),
         ev(at(1), "carl", "write", "ds"), ev(at(1), "carl", "write", "only-written"),
         ev(at(1), "dora", "grant", "granted", grantee="x")]
    r = features(h + w, [res("ds", sensitivity="public")])["resource"]
    assert r.to_dict("records") == [{"resource": "ds", "readers": 2, "first_time_readers": 1,
                                     "resource_sensitivity_rank": 0}]


def test_training_run_inputs():
    cat = [res("clean"), res("dirty", sanitized=0), res("secret-ish", sensitivity="confidential"),
           res("chatty", sensitivity="public", categories=("chat",)),
           res("dirty-sensitive", sensitivity="restricted", sanitized=0, categories=("health",))]
    w = [ev(at(1), "svc", "train", "run1", related=["clean", "dirty", "ghost"]),
         ev(at(2), "svc", "train", "run1", related=["dirty", "secret-ish", "chatty", "dirty-sensitive"],
            status="error"),
         ev(at(3), "svc", "train", "run0"),
         ev(at(-1), "svc", "train", "run2", related=["dirty"])]  # history: no row
    t = features(w, cat)["training_run"]
    assert t.to_dict("records") == [
        {"resource": "run0", "inputs": 0, "unsanitised_inputs": 0, "sensitive_inputs": 0, "uncatalogued_inputs": 0},
        {"resource": "run1", "inputs": 6, "unsanitised_inputs": 2, "sensitive_inputs": 3, "uncatalogued_inputs": 1},
    ]


def test_inputs_from_arrow_style_frames():
    """Frames straight from ``pyarrow.Table.to_pandas`` (maps as lists of pairs, numpy arrays as lists)."""
    import pyarrow as pa

    from features.contract import arrow_schema

    rows = [ev(at(1), "ann", "export", "a", related=["b"], attributes={"destination": "s3://q"}, bytes=U64)]
    events = pa.Table.from_pylist([{**r, "attributes": list(r["attributes"].items())} for r in rows],
                                  schema=arrow_schema("access_log")).to_pandas()
    empty = {t: pa.Table.from_pylist([], schema=arrow_schema(t)).to_pandas()
             for t in ("resources", "memberships", "principals")}
    out = reference_features(events, empty["resources"], empty["memberships"], empty["principals"], START, END)
    p = row_of(out["principal"], principal="ann")
    assert p["new_export_destinations"] == 1 and p["bytes_exported"] == 2**63 - 1
