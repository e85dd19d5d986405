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
    respond_max_age: 6h          # older incidents (a backfill) are not contained or paged

The HMAC secret of signed webhooks comes from ``BLASTWALL_WEBHOOK_SECRET``, never the file.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from playbooks.actions import Integrations
from playbooks.durations import parse_duration
from playbooks.engine import Responder
from playbooks.model import LIBRARY, Library, load_library
from playbooks.paging import Pager, RoutingConfig, default_routing


class ConfigError(ValueError):
    """A settings file that cannot be used; the message names the file and every problem."""


class Settings(BaseModel):
    """The response settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    # Without settings every SEV1-SEV3 page is still recorded (as unrouted), never dropped.
    paging: RoutingConfig = Field(default_factory=default_routing)
    integrations: Integrations = Field(default_factory=Integrations)
    playbooks: list[Path] = Field(default_factory=list)
    respond_max_age: timedelta = timedelta(hours=6)

    @field_validator("respond_max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    def playbook_folders(self, extra: tuple[Path, ...] = ()) -> list[Path]:
        """The built-in library first, then the configured folders, then ``extra``."""
        return [LIBRARY, *self.playbooks, *extra]

    def responder(self, client: Client, library: Library | None = None, extra: tuple[Path, ...] = ()) -> Responder:
        """The playbook engine these settings describe: its playbooks, its pager, its integrations.

        ``library`` (already loaded, e.g. cached by the console) replaces loading the folders.
        """
        library = library if library is not None else load_library(self.playbook_folders(extra))
        return Responder(client, library, Pager(client, self.paging), self.integrations)


def load_settings(path: Path | None, webhook_secret: str = "") -> Settings:
    """Read the settings file (``None``: the defaults).

    Raises
    ------
    ConfigError
        Unreadable file, bad YAML, or invalid settings (all problems, one per line).
    """
    if path is None:
        settings = Settings()
    else:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ConfigError(f"{path}:{mark.line + 1 if mark else 0}: not valid YAML") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with paging, integrations, playbooks")
        try:
            settings = Settings.model_validate(data)
        except ValidationError as exc:
            lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise ConfigError(f"{path}: " + "; ".join(lines)) from None
        settings.playbooks = [p if p.is_absolute() else (path.parent / p) for p in settings.playbooks]
    if webhook_secret:
        settings.integrations.secret = webhook_secret
    return settings
