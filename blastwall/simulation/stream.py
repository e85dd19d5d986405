"""Stream the access log, one day at a time, in event-time order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

from ._random import event_id_key, permute32
from .events import ATTACK_INDEX_BASE, EventChunk, concat, format_event_ids, to_record_batch
from .organisation import Organisation, as_organisation
from .spec import OrgSpec
from .traffic import benign_day


def day_events(org: Organisation, day: int) -> tuple[EventChunk, pa.StringArray]:
    """Every event of ``day`` in output order, with their ids.

    Parameters
    ----------
    org : Organisation
        The organisation.
    day : int
        0-based day of the period.

    Returns
    -------
    events : EventChunk
        Sorted by event time (ties keep generation order).
    event_ids : pyarrow.StringArray
        ``f"{seed:x}-{day:03d}-{n:08x}"`` per event.
    """
    model = org.model
    benign = benign_day(model, day)
    attack = model.planned_attack.get(day, EventChunk.empty())
    # Benign rows are numbered from 0, attack rows from 2**31 (their ids were fixed
    # when the labels were made); the keyed permutation hides which is which.
    index = np.concatenate([np.arange(len(benign), dtype=np.int64),
                            ATTACK_INDEX_BASE + np.arange(len(attack), dtype=np.int64)])
    events = concat([benign, attack])
    order = np.argsort(events.time, kind="stable")
    numbers = permute32(index[order], event_id_key(model.spec.seed, day))
    return events.take(order), format_event_ids(model.spec.seed, day, numbers)


def iter_access_log(org: OrgSpec | Organisation, batch_rows: int = 200_000, *,
                    days: Iterable[int] | None = None) -> Iterator[pa.RecordBatch]:
    """Generate the access log as Arrow record batches, globally ordered by event time.

    Memory stays bounded by one day of events: days are generated one after the
    other and converted to Arrow ``batch_rows`` at a time. The content does not
    depend on ``batch_rows``.

    Parameters
    ----------
    org : Organisation or OrgSpec
        The organisation (a spec is built first).
    batch_rows : int
        Rows per batch; every batch but the last has exactly this many.
    days : iterable of int, optional
        Only these days (in the given order); default every day of the period.

    Yields
    ------
    pyarrow.RecordBatch
        With schema ``features.contract.arrow_schema('access_log')``.
    """
    if batch_rows <= 0:
        raise ValueError("batch_rows must be positive")
    org = as_organisation(org)
    vocab = org.model.vocabularies()
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for day in (range(org.spec.days) if days is None else days):
        events, ids = day_events(org, day)
        start = 0
        while start < len(events):
            take = min(batch_rows - pending_rows, len(events) - start)
            part = events.slice(start, start + take)
            pending.append(to_record_batch(part, ids.slice(start, take), vocab))
            pending_rows += take
            start += take
            if pending_rows == batch_rows:
                yield _concat_batches(pending)
                pending, pending_rows = [], 0
    if pending_rows:
        yield _concat_batches(pending)


def _concat_batches(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch from several (``pa.concat_batches`` needs pyarrow 19; the project allows 18)."""
    if len(batches) == 1:
        return batches[0]
    if hasattr(pa, "concat_batches"):
        return pa.concat_batches(batches)
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
