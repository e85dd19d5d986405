"""Each numba kernel against a slow, obviously-correct NumPy oracle, on random and edge-case inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features import _kernels

# ---------------------------------------------------------------- segments of sorted times

segments = st.lists(st.lists(st.integers(0, 400_000), max_size=30).map(sorted), max_size=8)


def to_arrays(groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(g) for g in groups])
    values = np.array([v for g in groups for v in g], dtype=np.int64)
    return offsets, values


def oracle_max_in_span(times: list[int], span: int) -> int:
    return max((sum(1 for u in times if t <= u < t + span) for t in times), default=0)


def oracle_regularity(times: list[int], min_events: int) -> float:
    if len(times) < min_events:
        return 0.0
    gaps = np.diff(np.array(times, dtype=np.float64))
    if gaps.mean() == 0:
        return 1.0
    return max(0.0, 1.0 - gaps.std() / gaps.mean())


@settings(max_examples=200, deadline=None)
@given(segments, st.integers(1, 120_000))
def test_max_events_in_span_matches_oracle(groups: list[list[int]], span: int) -> None:
    offsets, values = to_arrays(groups)
    got = _kernels.max_events_in_span(offsets, values, span)
    assert got.tolist() == [oracle_max_in_span(g, span) for g in groups]


@settings(max_examples=200, deadline=None)
@given(segments, st.integers(2, 6))
def test_timing_regularity_matches_oracle(groups: list[list[int]], min_events: int) -> None:
    offsets, values = to_arrays(groups)
    got = _kernels.timing_regularity(offsets, values, min_events)
    np.testing.assert_allclose(got, [oracle_regularity(g, min_events) for g in groups], rtol=1e-9, atol=1e-12)


def test_timing_edge_cases() -> None:
    periodic = list(range(0, 60_000 * 10, 60_000))
    offsets, values = to_arrays([periodic, [5, 5, 5, 5, 5], [1, 2, 3], []])
    np.testing.assert_allclose(_kernels.timing_regularity(offsets, values, 5), [1.0, 1.0, 0.0, 0.0])
    assert _kernels.max_events_in_span(offsets, values, 60_000).tolist() == [1, 5, 3, 0]


# ---------------------------------------------------------------- hours: histograms and off-hours share

@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.integers(0, 167), max_size=40), max_size=6))
def test_segment_histograms_match_bincount(groups: list[list[int]]) -> None:
    offsets, values = to_arrays(groups)
    got = _kernels.segment_histograms(offsets, values.astype(np.uint8), 168)
    expected = np.array([np.bincount(np.array(g, dtype=np.int64), minlength=168) for g in groups],
                        dtype=np.int64).reshape(len(groups), 168)
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 167), max_size=20),
                          st.lists(st.integers(0, 30), min_size=168, max_size=168)), max_size=6),
       st.integers(0, 200), st.sampled_from([0.0, 0.01, 0.05]))
def test_off_hours_share_matches_oracle(rows, min_history: int, usual_share: float) -> None:
    window = np.array([np.bincount(np.array(hours, dtype=np.int64), minlength=168) for hours, _ in rows],
                      dtype=np.int64).reshape(len(rows), 168)
    history = np.array([h for _, h in rows], dtype=np.int64).reshape(len(rows), 168)

    got = _kernels.off_hours_share(window, history, min_history, usual_share)

    expected = []
    for events, past in rows:
        total = sum(past)
        if total == 0 or total < min_history or not events:
            expected.append(0.0)
        else:
            expected.append(sum(1 for h in events if past[h] / total < usual_share) / len(events))
    np.testing.assert_allclose(got, expected, rtol=1e-12)



def oracle_running_share(rows: list[tuple[int, list[int]]], initial: list[list[int]], min_history: int,
                         usual_share: float) -> tuple[list[float], list[int], list[list[int]]]:
    """Per row the off-hours share (as in the oracle above) against its key's history so far, and that
    history's size; the row's hours are then added to it. Also returns the final histories."""
    history = [list(past) for past in initial]
    shares, pasts = [], []
    for key, events in rows:
        past = history[key]
        total = sum(past)
        pasts.append(total)
        if total == 0 or total < min_history or not events:
            shares.append(0.0)
        else:
            shares.append(sum(1 for h in events if past[h] / total < usual_share) / len(events))
        for h in events:
            past[h] += 1
    return shares, pasts, history


# Few entities and few hours, so that rows of one key follow each other, keys interleave and a
# key's history crosses ``min_history`` and changes which hours are usual as rows are added.
running_rows = st.integers(1, 4).flatmap(lambda entities: st.tuples(
    st.lists(st.dictionaries(st.integers(0, 167), st.integers(1, 60), max_size=6).map(
        lambda counts: [counts.get(h, 0) for h in range(168)]), min_size=entities, max_size=entities),
    st.lists(st.tuples(st.integers(0, entities - 1),
                       st.lists(st.one_of(st.integers(0, 167), st.sampled_from((0, 1, 2, 167))), max_size=25)),
             max_size=12),
))


@settings(max_examples=200, deadline=None)
@given(running_rows, st.integers(0, 120), st.sampled_from([0.0, 0.01, 0.05, 0.2]))
def test_running_off_hours_share_matches_oracle(case, min_history: int, usual_share: float) -> None:
    initial, rows = case
    offsets, hours = to_arrays([events for _, events in rows])
    keys = np.array([key for key, _ in rows], dtype=np.int64)
    history = np.array(initial, dtype=np.int64).reshape(len(initial), 168)
    start = history.copy()

    share, past = _kernels.running_off_hours_share(offsets, hours.astype(np.uint8), keys, history, min_history,
                                                   usual_share)

    expected_share, expected_past, expected_history = oracle_running_share(rows, initial, min_history, usual_share)
    np.testing.assert_allclose(share, expected_share, rtol=1e-12)
    assert past.tolist() == expected_past
    np.testing.assert_array_equal(history, np.array(expected_history, dtype=np.int64).reshape(history.shape))
    added = np.zeros_like(start)  # the history after the call: initial + every row's hours
    for key, events in rows:
        np.add.at(added[key], np.array(events, dtype=np.int64), 1)
    np.testing.assert_array_equal(history, start + added)


def test_running_off_hours_share_equals_off_hours_share_row_by_row() -> None:
    # ann (0): 60 events at hour 9 before; her first window (hours 9, 3) is judged on that alone,
    # her second (hour 3 twice) after the first was added: 1 of 62 at hour 3 is still < 5 %.
    # bob (1): 49 events before, his first window is a cold start, his second (after 2 more) is not.
    initial = np.zeros((2, 168), dtype=np.int64)
    initial[0, 9] = 60
    initial[1, 10] = 49
    rows = [(0, [9, 3]), (1, [10, 11]), (1, []), (0, [3, 3]), (1, [11, 10, 10])]
    offsets, hours = to_arrays([events for _, events in rows])
    keys = np.array([key for key, _ in rows], dtype=np.int64)
    history = initial.copy()

    share, past = _kernels.running_off_hours_share(offsets, hours.astype(np.uint8), keys, history, 50, 0.05)

    running = initial.copy()
    for i, (key, events) in enumerate(rows):  # the step loop: one window at a time, the history advanced after
        window = np.bincount(np.array(events, dtype=np.int64), minlength=168).reshape(1, 168)
        assert share[i] == _kernels.off_hours_share(window, running[key:key + 1].copy(), 50, 0.05)[0]
        assert past[i] == running[key].sum()
        running[key] += window[0]
    assert share.tolist() == [0.5, 0.0, 0.0, 1.0, 1 / 3]
    assert past.tolist() == [60, 49, 51, 62, 51]
    np.testing.assert_array_equal(history, running)
    empty, none = _kernels.running_off_hours_share(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8),
                                                   np.zeros(0, dtype=np.int64), history, 50, 0.05)
    assert empty.shape == none.shape == (0,)
    np.testing.assert_array_equal(history, running)


# ---------------------------------------------------------------- effective audiences

def oracle_reach(edges: dict[int, list[int]], groups: set[int], sources: list[int]) -> set[int]:
    seen, stack, reached = set(sources), list(sources), set()
    while stack:
        node = stack.pop()
        if node not in groups:
            reached.add(node)
            continue
        for member in edges.get(node, []):
            if member not in seen:
                seen.add(member)
                stack.append(member)
    return reached


graphs = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=30),  # cycles and self-loops too
    st.lists(st.tuples(st.lists(st.integers(0, n - 1), max_size=4), st.integers(0, n - 1)), max_size=6),
))


@settings(max_examples=300, deadline=None)
@given(graphs)
def test_grant_audiences_match_oracle(graph) -> None:
    n, edge_list, grants = graph
    edge_list = sorted(set(edge_list))
    edges: dict[int, list[int]] = {}
    for group, member in edge_list:
        edges.setdefault(group, []).append(member)
    indptr = np.zeros(n + 1, dtype=np.int64)
    for group, _ in edge_list:
        indptr[group + 1] += 1
    indptr = np.cumsum(indptr)
    indices = np.array([m for _, m in edge_list], dtype=np.int64)  # sorted by group already
    is_group = np.zeros(n, dtype=np.bool_)
    is_group[[g for g, _ in edge_list]] = True
    base_offsets, base = to_arrays([sources for sources, _ in grants])
    grantees = np.array([g for _, g in grants], dtype=np.int64)

    before, after = _kernels.grant_audiences(indptr, indices, is_group, base_offsets, base, grantees)

    groups = set(edges)
    for k, (sources, grantee) in enumerate(grants):
        assert before[k] == len(oracle_reach(edges, groups, sources))
        assert after[k] == len(oracle_reach(edges, groups, sources) | oracle_reach(edges, groups, [grantee]))


def test_cyclic_nesting_counts_each_person_once() -> None:
    # 0 = all-staff contains 1 = eng, 1 contains 0 back (a cycle), and people 2 and 3.
    indptr = np.array([0, 2, 4, 4, 4], dtype=np.int64)
    indices = np.array([1, 2, 0, 3], dtype=np.int64)
    is_group = np.array([True, True, False, False])
    before, after = _kernels.grant_audiences(indptr, indices, is_group, np.array([0, 1, 1], dtype=np.int64),
                                             np.array([3], dtype=np.int64), np.array([0, 2], dtype=np.int64))
    assert before.tolist() == [1, 0] and after.tolist() == [2, 1]
