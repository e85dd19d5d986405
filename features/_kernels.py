"""numba kernels for what SQL does badly: sequences within an entity, and graph traversal.

Each kernel takes and returns NumPy arrays only (no pandas, no I/O, no client), has an
explicit signature and ``cache=True`` so a second process does not recompile it. The
per-entity inputs are *segments*: ``offsets`` of length n + 1 delimit entity i's values
as ``values[offsets[i]:offsets[i + 1]]`` (an Arrow list column's offsets and values).
Each kernel is tested against a slow NumPy oracle in ``tests/test_kernels.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit("int64[:](int64[:], int64[:], int64)", cache=True, nogil=True)
def max_events_in_span(offsets: np.ndarray, times: np.ndarray, span: int) -> np.ndarray:
    """Per segment, the most values in any half-open span ``[t, t + span)`` starting at a value.

    Parameters
    ----------
    offsets : int64 array, shape (n + 1,)
    times : int64 array
        Each segment sorted ascending (e.g. epoch milliseconds).
    span : int
        Width of the span, same unit as ``times``.

    Returns
    -------
    int64 array, shape (n,)
        0 for an empty segment.
    """
    n = offsets.shape[0] - 1
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        lo, hi = offsets[i], offsets[i + 1]
        best = 0
        end = lo
        for begin in range(lo, hi):  # two pointers: end only moves forward
            if end < begin:
                end = begin
            limit = times[begin] + span
            while end < hi and times[end] < limit:
                end += 1
            if end - begin > best:
                best = end - begin
        out[i] = best
    return out


@njit("float64[:](int64[:], int64[:], int64)", cache=True, nogil=True)
def timing_regularity(offsets: np.ndarray, times: np.ndarray, min_events: int) -> np.ndarray:
    """Per segment, ``max(0, 1 - std(gaps) / mean(gaps))`` of consecutive sorted times.

    1 means perfectly periodic (machine-like), 0 irregular. Segments with fewer than
    ``min_events`` values give 0; all values equal (mean gap 0) gives 1.
    """
    n = offsets.shape[0] - 1
    out = np.zeros(n, dtype=np.float64)
    for i in range(n):
        lo, hi = offsets[i], offsets[i + 1]
        count = hi - lo
        if count < min_events:
            continue
        gaps = count - 1
        total = 0.0
        for k in range(lo + 1, hi):
            total += times[k] - times[k - 1]
        mean = total / gaps
        if mean == 0.0:
            out[i] = 1.0
            continue
        squares = 0.0
        for k in range(lo + 1, hi):
            delta = (times[k] - times[k - 1]) - mean
            squares += delta * delta
        regularity = 1.0 - np.sqrt(squares / gaps) / mean
        out[i] = regularity if regularity > 0.0 else 0.0
    return out


@njit("int64[:, :](int64[:], uint8[:], int64)", cache=True, nogil=True)
def segment_histograms(offsets: np.ndarray, values: np.ndarray, bins: int) -> np.ndarray:
    """Per segment, the count of each value ``0 .. bins - 1`` (e.g. events per hour of week)."""
    n = offsets.shape[0] - 1
    out = np.zeros((n, bins), dtype=np.int64)
    for i in range(n):
        for k in range(offsets[i], offsets[i + 1]):
            out[i, values[k]] += 1
    return out


@njit("float64[:](int64[:, :], int64[:, :], int64, float64)", cache=True, nogil=True)
def off_hours_share(window: np.ndarray, history: np.ndarray, min_history: int, usual_share: float) -> np.ndarray:
    """Per row, the share of window events that fall in hours unusual for that entity.

    Parameters
    ----------
    window, history : int64 arrays, shape (n, 168)
        Entity i's events per hour of week in the window, and in its history.
    min_history : int
        Fewer (or no) past events than this: no usual hours known, the share is 0.
    usual_share : float
        An hour is usual when it holds at least this share of the past events.
    """
    n = window.shape[0]
    out = np.zeros(n, dtype=np.float64)
    for i in range(n):
        total = 0
        events = 0
        for h in range(history.shape[1]):
            total += history[i, h]
            events += window[i, h]
        if total == 0 or total < min_history or events == 0:
            continue
        unusual = 0
        for h in range(history.shape[1]):
            if history[i, h] / total < usual_share:
                unusual += window[i, h]
        out[i] = unusual / events
    return out


@njit("int64(int64[:], int64[:], boolean[:], int64, int64[:], int64)", cache=True, nogil=True)
def _mark_reachable(indptr: np.ndarray, indices: np.ndarray, is_group: np.ndarray, source: int,
                    stamp: np.ndarray, mark: int) -> int:
    """Mark (with ``mark``) every principal reachable from ``source``; return how many were new."""
    if stamp[source] == mark:
        return 0
    stack = np.empty(stamp.shape[0], dtype=np.int64)  # each node is pushed at most once
    top = 0
    stack[top] = source
    top += 1
    stamp[source] = mark
    added = 0
    while top > 0:
        top -= 1
        node = stack[top]
        if not is_group[node]:
            added += 1
            continue
        for edge in range(indptr[node], indptr[node + 1]):
            member = indices[edge]
            if stamp[member] != mark:
                stamp[member] = mark
                stack[top] = member
                top += 1
    return added


@njit("Tuple((int64[:], int64[:]))(int64[:], int64[:], boolean[:], int64[:], int64[:], int64[:])",
      cache=True, nogil=True)
def grant_audiences(indptr: np.ndarray, indices: np.ndarray, is_group: np.ndarray,
                    base_offsets: np.ndarray, base_sources: np.ndarray, grantees: np.ndarray):
    """Effective audiences before and after each grant, over a CSR membership graph.

    Parameters
    ----------
    indptr, indices : int64 arrays
        CSR adjacency: the members of node g are ``indices[indptr[g]:indptr[g + 1]]``.
    is_group : bool array
        Whether each node is a group; only non-group nodes count as audience.
    base_offsets, base_sources : int64 arrays
        Segments: grant k's already-active grantees are
        ``base_sources[base_offsets[k]:base_offsets[k + 1]]``.
    grantees : int64 array
        The node granted access by grant k.

    Returns
    -------
    before, after : int64 arrays
        Distinct principals reachable from the active grantees, and from those plus the
        new grantee. Cycles in the graph are harmless (each node is visited once).
    """
    n = grantees.shape[0]
    before = np.zeros(n, dtype=np.int64)
    after = np.zeros(n, dtype=np.int64)
    stamp = np.zeros(is_group.shape[0], dtype=np.int64)
    for k in range(n):
        mark = k + 1  # a fresh mark per grant: no clearing of the visited array
        reached = 0
        for s in range(base_offsets[k], base_offsets[k + 1]):
            reached += _mark_reachable(indptr, indices, is_group, base_sources[s], stamp, mark)
        before[k] = reached
        after[k] = reached + _mark_reachable(indptr, indices, is_group, grantees[k], stamp, mark)
    return before, after


@njit("Tuple((float64[:], int64[:]))(int64[:], uint8[:], int64[:], int64[:, :], int64, float64)", cache=True,
      nogil=True)
def running_off_hours_share(offsets: np.ndarray, hours: np.ndarray, keys: np.ndarray, history: np.ndarray,
                            min_history: int, usual_share: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`off_hours_share` for consecutive windows of many entities, the history kept running.

    Row i is entity ``keys[i]``'s window; rows of one entity come in time order. Each row is
    judged against that entity's history as it stands before the row (``history[keys[i]]``),
    and its hours are then added to it, so a later window of the entity sees the earlier ones
    as history — what the step loop gets by advancing the history between steps.

    Parameters
    ----------
    offsets : int64 array, shape (n + 1,)
    hours : uint8 array
        Row i's events' hours of week (0 .. 167) are ``hours[offsets[i]:offsets[i + 1]]``.
    keys : int64 array, shape (n,)
        Each row's entity, an index into ``history``.
    history : int64 array, shape (entities, 168)
        Per entity, its events per hour of week before the first row; updated in place.
    min_history, usual_share
        As for :func:`off_hours_share`.

    Returns
    -------
    share : float64 array, shape (n,)
    history_events : int64 array, shape (n,)
        Each row's entity's past events before the row.
    """
    n = offsets.shape[0] - 1
    bins = history.shape[1]
    share = np.zeros(n, dtype=np.float64)
    past = np.zeros(n, dtype=np.int64)
    window = np.zeros(bins, dtype=np.int64)
    for i in range(n):
        key = keys[i]
        window[:] = 0
        for k in range(offsets[i], offsets[i + 1]):
            window[hours[k]] += 1
        total = 0
        for h in range(bins):
            total += history[key, h]
        events = offsets[i + 1] - offsets[i]
        past[i] = total
        if total > 0 and total >= min_history and events > 0:
            unusual = 0
            for h in range(bins):
                if history[key, h] / total < usual_share:
                    unusual += window[h]
            share[i] = unusual / events
        for h in range(bins):
            history[key, h] += window[h]
    return share, past
