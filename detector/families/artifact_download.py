"""Artifact download: atypical model-artifact downloads — count, bytes, hours, new artifacts."""

from __future__ import annotations

from typing import Any

from detector.explain import Driver
from detector.families import Family, format_bytes


def _title(key: str, group: str, v: dict[str, float], lead: Driver) -> str:
    return f"{key} downloaded {int(v['artifact_downloads'])} model artifacts ({format_bytes(v['bytes_downloaded'])})"


def _severity_extra(v: dict[str, float]) -> dict[str, Any]:
    # Artifacts are measured in bytes and in how many were taken, not in rows.
    return {"bytes_exposed": int(v["bytes_downloaded"]), "items_taken": int(v["artifact_downloads"])}


FAMILY = Family(
    id="artifact_download", entity="principal",
    description="atypical model-artifact downloads: count, bytes, hours, new artifacts",
    signals=("artifact_downloads", "bytes_downloaded"), evidence_action="download",
    # ATLAS AML.T0035 ML Artifact Collection; ATT&CK T1530 Data from Cloud Storage
    techniques=("AML.T0035", "T1530"),
    title=_title, severity_extra=_severity_extra, scenarios=("artifact_download",),
    example={"artifact_downloads": 24, "bytes_downloaded": 3.1e11},
)
