"""A deterministic, seeded simulation of an organisation that trains AI models.

It draws people, service accounts and AI agents in nested groups, a catalogue of
datasets, embedding stores, checkpoints, training runs and secrets, and streams
their access log day by day: benign traffic with the hard cases a detector must
not page on, plus labelled attack scenarios of every detector family.

Examples
--------
>>> from blastwall.simulation import OrgSpec, build_organisation, iter_access_log
>>> org = build_organisation(OrgSpec(principals=120, days=10))
>>> rows = sum(batch.num_rows for batch in iter_access_log(org))
"""

from __future__ import annotations

from .files import write_files
from .labels import AttackLabel
from .loading import write_to_store
from .organisation import Organisation, build_organisation
from .spec import OrgSpec
from .stream import iter_access_log
from .style import OrgStyle, draw_style

__all__ = [
    "AttackLabel", "OrgSpec", "OrgStyle", "Organisation", "build_organisation", "draw_style", "iter_access_log",
    "write_files", "write_to_store",
]
