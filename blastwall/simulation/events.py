"""Events as columns of integer codes, and their conversion to Arrow.

Generators never build strings per event: they emit codes into the vocabularies
of :class:`~blastwall.simulation.model.OrgModel` and :func:`to_record_batch`
gathers the strings with Arrow's ``take``. A chunk's ``related`` lists are kept
sparse (most events have none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa

from features import contract

ACTION = {a: i for i, a in enumerate(contract.ACTIONS)}
VIA = {v: i for i, v in enumerate(contract.VIA)}
STATUS = {s: i for i, s in enumerate(contract.STATUSES)}
PTYPE = {t: i for i, t in enumerate(contract.PRINCIPAL_TYPES)}
KIND = {k: i for i, k in enumerate(contract.RESOURCE_KINDS)}
SENSITIVITY = {s: i for i, s in enumerate(contract.SENSITIVITIES)}
#: Keys of ``attributes``; an event carries at most two of them.
ATTR_KEYS = ("destination", "on_behalf_of", "job", "role", "framework", "gpus")
ATTR = {k: i for i, k in enumerate(ATTR_KEYS)}

ACCESS_LOG_SCHEMA = contract.arrow_schema("access_log")
#: Attack rows are numbered from here before the id permutation (benign rows below).
ATTACK_INDEX_BASE = 2**31


@dataclass
class EventChunk:
    """Events of one generator for one day, as parallel code arrays.

    ``grantee`` 0 is the empty string; ``key0``/``key1`` -1 means no attribute.
    ``rel_row[i]`` is the row whose related resources are ``rel[i]`` (-1 padded).
    """

    time: np.ndarray
    principal: np.ndarray
    action: np.ndarray
    resource: np.ndarray
    grantee: np.ndarray
    nbytes: np.ndarray
    nrows: np.ndarray
    via: np.ndarray
    status: np.ndarray
    ip: np.ndarray
    key0: np.ndarray
    val0: np.ndarray
    key1: np.ndarray
    val1: np.ndarray
    rel_row: np.ndarray
    rel: np.ndarray

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def build(cls, time: np.ndarray, principal: np.ndarray, action: np.ndarray, resource: np.ndarray, *,
              grantee: np.ndarray | int = 0, nbytes: np.ndarray | int = 0, nrows: np.ndarray | int = 0,
              via: np.ndarray | int = 0, status: np.ndarray | int = 0, ip: np.ndarray | int = 0,
              key0: np.ndarray | int = -1, val0: np.ndarray | int = 0, key1: np.ndarray | int = -1,
              val1: np.ndarray | int = 0, rel_row: np.ndarray | None = None,
              rel: np.ndarray | None = None) -> EventChunk:
        """Build a chunk, broadcasting scalar columns to the length of ``time``."""
        n = len(time)

        def col(value: np.ndarray | int, dtype: type) -> np.ndarray:
            arr = np.asarray(value, dtype=dtype)
            return np.broadcast_to(arr, (n,)).copy() if arr.ndim == 0 else arr

        return cls(
            time=col(time, np.int64), principal=col(principal, np.int32), action=col(action, np.int8),
            resource=col(resource, np.int32), grantee=col(grantee, np.int32), nbytes=col(nbytes, np.uint64),
            nrows=col(nrows, np.uint64), via=col(via, np.int8), status=col(status, np.int8), ip=col(ip, np.int32),
            key0=col(key0, np.int8), val0=col(val0, np.int32), key1=col(key1, np.int8), val1=col(val1, np.int32),
            rel_row=np.zeros(0, np.int64) if rel_row is None else np.asarray(rel_row, np.int64),
            rel=np.zeros((0, 1), np.int32) if rel is None else np.asarray(rel, np.int32),
        )

    @classmethod
    def empty(cls) -> EventChunk:
        """A chunk without events."""
        z = np.zeros(0, np.int64)
        return cls.build(z, z, z, z)

    def take(self, order: np.ndarray) -> EventChunk:
        """Rows ``order`` (a permutation or a selection) of this chunk, related lists kept."""
        order = np.asarray(order, np.int64)
        new_pos = np.full(len(self), -1, np.int64)
        new_pos[order] = np.arange(len(order))
        moved = new_pos[self.rel_row]
        keep = moved >= 0
        columns = {f.name: getattr(self, f.name)[order] for f in fields(self) if f.name not in ("rel_row", "rel")}
        return EventChunk(**columns, rel_row=moved[keep], rel=self.rel[keep])


    def slice(self, start: int, stop: int) -> EventChunk:
        """Rows ``start:stop`` (cheaper than :meth:`take` for a contiguous range)."""
        inside = (self.rel_row >= start) & (self.rel_row < stop)
        columns = {f.name: getattr(self, f.name)[start:stop] for f in fields(self) if f.name not in ("rel_row", "rel")}
        return EventChunk(**columns, rel_row=self.rel_row[inside] - start, rel=self.rel[inside])


def concat(chunks: Sequence[EventChunk]) -> EventChunk:
    """Concatenate chunks in order, re-basing their related rows."""
    chunks = [c for c in chunks if len(c)]
    if not chunks:
        return EventChunk.empty()
    if len(chunks) == 1:
        return chunks[0]
    width = max(c.rel.shape[1] for c in chunks)
    rel_rows, rels, offset = [], [], 0
    for c in chunks:
        rel_rows.append(c.rel_row + offset)
        padded = np.full((len(c.rel), width), -1, np.int32)
        padded[:, : c.rel.shape[1]] = c.rel
        rels.append(padded)
        offset += len(c)
    columns = {f.name: np.concatenate([getattr(c, f.name) for c in chunks])
               for f in fields(EventChunk) if f.name not in ("rel_row", "rel")}
    return EventChunk(**columns, rel_row=np.concatenate(rel_rows), rel=np.concatenate(rels))


class EventBuffer:
    """Row-at-a-time builder for the few hand-placed events (attacks, grants, training runs)."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []
        self._related: list[tuple[int, tuple[int, ...]]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, time_ms: int, principal: int, action: str, resource: int, *, related: Iterable[int] = (),
            grantee: int = 0, nbytes: int = 0, nrows: int = 0, via: str = "", status: str = "ok", ip: int = 0,
            attributes: Mapping[int, int] | None = None) -> int:
        """Append one event; ``attributes`` maps attribute-key codes to value codes.

        Returns
        -------
        int
            Position of the event in this buffer.
        """
        attrs = sorted((attributes or {}).items())
        if len(attrs) > 2:
            raise ValueError("an event carries at most two attributes")
        attrs += [(-1, 0)] * (2 - len(attrs))
        related = tuple(related)
        if related:
            self._related.append((len(self._rows), related))
        self._rows.append((int(time_ms), principal, ACTION[action], resource, grantee, max(0, int(nbytes)),
                           max(0, int(nrows)), VIA[via], STATUS[status], ip, attrs[0][0], attrs[0][1], attrs[1][0],
                           attrs[1][1]))
        return len(self._rows) - 1

    def to_chunk(self) -> EventChunk:
        """The buffered events as a chunk (in insertion order)."""
        if not self._rows:
            return EventChunk.empty()
        cols = list(zip(*self._rows))
        width = max([len(r) for _, r in self._related], default=1)
        rel = np.full((len(self._related), width), -1, np.int32)
        for i, (_, related) in enumerate(self._related):
            rel[i, : len(related)] = related
        return EventChunk.build(
            np.array(cols[0], np.int64), np.array(cols[1]), np.array(cols[2]), np.array(cols[3]),
            grantee=np.array(cols[4]), nbytes=np.array(cols[5], np.uint64), nrows=np.array(cols[6], np.uint64),
            via=np.array(cols[7]), status=np.array(cols[8]), ip=np.array(cols[9]), key0=np.array(cols[10]),
            val0=np.array(cols[11]), key1=np.array(cols[12]), val1=np.array(cols[13]),
            rel_row=np.array([r for r, _ in self._related], np.int64), rel=rel,
        )


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def format_event_ids(seed: int, day: int, numbers: np.ndarray) -> pa.StringArray:
    """``f"{seed:x}-{day:03d}-{n:08x}"`` for every ``n``, without a Python loop.

    Parameters
    ----------
    seed, day : int
        Constant prefix of the ids.
    numbers : numpy.ndarray
        Values below ``2**32``.

    Returns
    -------
    pyarrow.StringArray
    """
    prefix = np.frombuffer(f"{seed:x}-{day:03d}-".encode(), np.uint8)
    n = len(numbers)
    width = len(prefix) + 8
    chars = np.empty((n, width), np.uint8)
    chars[:, : len(prefix)] = prefix
    shifts = np.arange(28, -4, -4, dtype=np.uint64)
    digits = (np.asarray(numbers, np.uint64)[:, None] >> shifts[None, :]) & np.uint64(0xF)
    chars[:, len(prefix):] = _HEX[digits.astype(np.intp)]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.reshape(-1)))


def format_event_id(seed: int, day: int, number: int) -> str:
    """One event id; identical to an element of :func:`format_event_ids`."""
    return f"{seed:x}-{day:03d}-{number:08x}"


@dataclass(frozen=True)
class Vocabularies:
    """Arrow string arrays that the code columns index into."""

    principal: pa.StringArray
    principal_type: pa.StringArray  # per principal code, its type name
    resource: pa.StringArray
    grantee: pa.StringArray
    ip: pa.StringArray
    value: pa.StringArray
    action: pa.StringArray = field(default_factory=lambda: pa.array(contract.ACTIONS, pa.string()))
    via: pa.StringArray = field(default_factory=lambda: pa.array(contract.VIA, pa.string()))
    status: pa.StringArray = field(default_factory=lambda: pa.array(contract.STATUSES, pa.string()))
    attr_key: pa.StringArray = field(default_factory=lambda: pa.array(ATTR_KEYS, pa.string()))


def _list_array(n: int, rel_row: np.ndarray, rel: np.ndarray, names: pa.StringArray) -> pa.ListArray:
    counts = np.zeros(n, np.int64)
    order = np.argsort(rel_row, kind="stable")
    rel_sorted = rel[order]
    valid = rel_sorted >= 0
    counts[rel_row[order]] = valid.sum(axis=1)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = names.take(pa.array(rel_sorted[valid].astype(np.int32)))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _map_array(chunk: EventChunk, vocab: Vocabularies) -> pa.MapArray:
    keys = np.stack([chunk.key0, chunk.key1], axis=1)
    vals = np.stack([chunk.val0, chunk.val1], axis=1)
    present = keys >= 0
    offsets = np.zeros(len(chunk) + 1, np.int32)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    key_arr = vocab.attr_key.take(pa.array(keys[present].astype(np.int32)))
    val_arr = vocab.value.take(pa.array(vals[present].astype(np.int32)))
    return pa.MapArray.from_arrays(pa.array(offsets), key_arr, val_arr)


def to_record_batch(chunk: EventChunk, event_ids: pa.StringArray, vocab: Vocabularies) -> pa.RecordBatch:
    """Convert a (sorted) chunk to a batch of the ``access_log`` contract schema.

    Parameters
    ----------
    chunk : EventChunk
        Events in output order.
    event_ids : pyarrow.StringArray
        One id per event.
    vocab : Vocabularies
        The strings the codes refer to.

    Returns
    -------
    pyarrow.RecordBatch
        With schema ``features.contract.arrow_schema('access_log')``.
    """
    principal = pa.array(chunk.principal)
    arrays = [
        pa.array(chunk.time, type=ACCESS_LOG_SCHEMA.field("event_time").type),
        event_ids,
        vocab.principal.take(principal),
        vocab.principal_type.take(principal),
        vocab.action.take(pa.array(chunk.action)),
        vocab.resource.take(pa.array(chunk.resource)),
        _list_array(len(chunk), chunk.rel_row, chunk.rel, vocab.resource),
        vocab.grantee.take(pa.array(chunk.grantee)),
        pa.array(chunk.nbytes, pa.uint64()),
        pa.array(chunk.nrows, pa.uint64()),
        vocab.via.take(pa.array(chunk.via)),
        vocab.status.take(pa.array(chunk.status)),
        vocab.ip.take(pa.array(chunk.ip)),
        _map_array(chunk, vocab),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=ACCESS_LOG_SCHEMA)
