"""Response settings: paging routes, the webhooks of a user's real systems, extra playbook folders.

One YAML file, given by ``--config`` or ``BLASTWALL_CONFIG``; without one, nothing is
delivered (pages are recorded as unrouted) and only the built-in playbooks run::

    paging:                      # playbooks.paging.RoutingConfig
      timezone: Europe/Berlin
      channels: {oncall: "pagerduty://KEY@ROUTING", security: "slack://T/B/C"}
      routes: {SEV1: {channels: [oncall]}, SEV2: {channels: [oncall], when: working_hours}}
      escalation: [{after: 15m, channels: [security]}]
    integrations:                # playbooks.actions.Integrations
      webhooks: {revoke_grant: "https://iam.example.com/blastwall"}
    playbooks: [./our-playbooks] # searched after the built-in library
    rules: [./our-rules]         # detection rules, run after the built-in ones (detector.rules)
    respond_max_age: 6h          # older incidents (a backfill) are not contained or paged
    live:                        # the live loop (blastwall run and the console): defaults shown
      step: 5m                   # window per detect step (detect and the demo replay use it too)
      lateness: 1m               # a step is processed this long after it ends (late events)
      tick: 5s                   # the fast path: certain detections on new events, between steps
      detect_every: 1m           # how often the detect job looks for due steps
    sources:                     # scheduled pulls (blastwall run, and the console)
      clickhouse_query_log:      # ClickHouse's own system.query_log (blastwall.pulling)
        from: clickhouse://auditor:pass@ch:8123/default   # default: the store itself
        every: 30s               # how often (default 30s)
        settle: 10s              # leave queries younger than this (the log is flushed late)
        backfill: 1d             # where the first pull starts
        human_pattern: "^[^@]+@" # RE2 over the user name: human (default: e-mail-like)
        agent_pattern: "(?i)agent|bot"   # RE2: agent (else service)

The HMAC secret of signed webhooks comes from ``BLASTWALL_WEBHOOK_SECRET``, never the file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, ConfigDict, Field, field_validator

from blastwall.environment import environment
from features.durations import Duration
from features.settings_file import SettingsFileError, load_model
from playbooks.actions import Integrations
from playbooks.engine import Responder
from playbooks.model import LIBRARY, Library, load_library
from playbooks.paging import Pager, RoutingConfig, default_routing


class ConfigError(ValueError):
    """A settings file that cannot be used; the message names the file and every problem."""


class QueryLogPull(BaseModel):
    """``sources.clickhouse_query_log``: the scheduled pull of ClickHouse's query log."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_dsn: str | None = Field(default=None, alias="from")
    every: Duration = timedelta(seconds=30)
    settle: Duration = timedelta(seconds=10)
    backfill: Duration = timedelta(days=1)
    human_pattern: str | None = None
    agent_pattern: str | None = None

    @field_validator("from_dsn")
    @classmethod
    def _dsn(cls, value: str | None) -> str | None:
        if value is not None:
            from blastwall.store import StoreError, parse_dsn

            try:
                parse_dsn(value)
            except StoreError as exc:
                raise ValueError(str(exc)) from None
        return value

    def pull_settings(self) -> Any:
        """The :class:`features.pull.PullSettings` these describe."""
        from features.pull import PullSettings

        patterns = {k: v for k, v in (("human_pattern", self.human_pattern), ("agent_pattern", self.agent_pattern))
                    if v is not None}
        return PullSettings(settle=self.settle, backfill=self.backfill, **patterns)


class SourcesSettings(BaseModel):
    """``sources``: log sources blastwall pulls on a schedule (files come through ``ingest``)."""

    model_config = ConfigDict(extra="forbid")
    clickhouse_query_log: QueryLogPull | None = None


class LiveCadence(BaseModel):
    """``live``: the live loop's cadence (``blastwall run``, the console's hosted jobs, and the
    step length ``detect`` and the demo replay with, so their baselines fit the live loop's).

    The defaults come from ``benchmarks/latency.py`` (see the README's "Detection"): a
    5-minute step costs 6-9 s at 10k events/s and 12-21 s at 50k (well under its length; shorter
    steps would change the baselines, which are per step length, and the detection
    evaluation is measured at 5 minutes); events land within a second of their time when
    written live, and a pull of the query log leaves at most its settle plus its interval
    (40 s by default) behind, so a minute of lateness covers them.
    """

    model_config = ConfigDict(extra="forbid")
    step: Duration = timedelta(minutes=5)
    lateness: Duration = timedelta(minutes=1)
    tick: Duration = timedelta(seconds=5)
    detect_every: Duration = timedelta(minutes=1)

    @field_validator("step")
    @classmethod
    def _step(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(hours=1):
            raise ValueError("step must be between 1m and 1h")
        if timedelta(days=1) % value:
            raise ValueError("step must divide a day (1m, 2m, 5m, 10m, 15m, 30m, 1h …)")
        return value

    @field_validator("tick", "detect_every")
    @classmethod
    def _often(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(hours=1):
            raise ValueError("must be between 1s and 1h")
        return value

    def live_settings(self, **changes: Any) -> Any:
        """The :class:`blastwall.jobs.LiveSettings` of this cadence, with ``changes`` (config, …)."""
        from blastwall.jobs import LiveSettings

        return LiveSettings(step=self.step, lateness=self.lateness, tick=self.tick, **changes)


class Settings(BaseModel):
    """The response settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    # Without settings every SEV1-SEV3 page is still recorded (as unrouted), never dropped.
    paging: RoutingConfig = Field(default_factory=default_routing)
    integrations: Integrations = Field(default_factory=Integrations)
    playbooks: list[Path] = Field(default_factory=list)
    rules: list[Path] = Field(default_factory=list)
    respond_max_age: Duration = timedelta(hours=6)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    live: LiveCadence = Field(default_factory=LiveCadence)

    @property
    def unsigned_webhooks(self) -> str:
        """A warning when webhooks would go out unsigned (no secret), else ``""``."""
        if self.integrations.secret:
            return ""
        return ("webhooks go out unsigned: set BLASTWALL_WEBHOOK_SECRET so your systems can verify "
                "X-Blastwall-Signature")

    def playbook_folders(self, extra: tuple[Path, ...] = ()) -> list[Path]:
        """The built-in library first, then the configured folders, then ``extra``."""
        return [LIBRARY, *self.playbooks, *extra]

    def rule_folders(self, extra: tuple[Path, ...] = ()) -> list[Path]:
        """The built-in rules first, then the configured folders, then ``extra``."""
        from detector.rules import LIBRARY as RULES

        return [RULES, *self.rules, *extra]

    def detect_config(self, base: Any = None) -> tuple[Any, list[Any]]:
        """A :class:`detector.detect.DetectConfig` carrying the valid rules, and the problems of the others.

        A broken rule file never stops detection: it is left out, and the caller shows
        its problems (file and line).
        """
        from dataclasses import replace

        from detector.detect import DetectConfig
        from detector.rules import load_rules

        library = load_rules(self.rule_folders())
        return replace(base or DetectConfig(), rules=tuple(library.rules.values())), library.problems

    def responder(self, client: Client, library: Library | None = None, extra: tuple[Path, ...] = ()) -> Responder:
        """The playbook engine these settings describe: its playbooks, its pager, its integrations.

        ``library`` (already loaded, e.g. cached by the console) replaces loading the folders.
        """
        library = library if library is not None else load_library(self.playbook_folders(extra))
        return Responder(client, library, Pager(client, self.paging), self.integrations)


def load_settings(path: Path | None, webhook_secret: str | None = None) -> Settings:
    """Read the settings file (``None``: the defaults).

    Parameters
    ----------
    path : Path or None
    webhook_secret : str, optional
        The HMAC secret of signed webhooks; default ``BLASTWALL_WEBHOOK_SECRET``.

    Raises
    ------
    ConfigError
        Unreadable file, bad YAML, or invalid settings: every problem, each on its own
        line as ``file:line: field: problem``.
    """
    if path is None:
        settings = Settings()
    else:
        try:
            settings = load_model(path, Settings, expected="paging, integrations, playbooks, rules")
        except SettingsFileError as exc:
            raise ConfigError(str(exc)) from None
        settings.playbooks = [p if p.is_absolute() else (path.parent / p) for p in settings.playbooks]
        settings.rules = [p if p.is_absolute() else (path.parent / p) for p in settings.rules]
    secret = environment().webhook_secret if webhook_secret is None else webhook_secret
    if secret:
        settings.integrations.secret = secret
    return settings

