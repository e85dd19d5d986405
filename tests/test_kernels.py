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
