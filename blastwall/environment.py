"""The ``BLASTWALL_*`` environment variables: the one place they are read.

========================  ===================================================================
variable                  what
========================  ===================================================================
BLASTWALL_DSN             the store, when ``--dsn`` is not given
BLASTWALL_CONFIG          the response settings file, when ``--config`` is not given
BLASTWALL_ACCOUNTS        the console's accounts file, when ``--file``/``--accounts`` is not given
BLASTWALL_WEBHOOK_SECRET  the HMAC secret of signed webhooks (never in a file or on a command line)
BLASTWALL_PASSWORD        the password for ``blastwall account add`` in scripts
========================  ===================================================================

The console's Streamlit child receives its DSN through ``BLASTWALL_DSN`` rather than its
command line, so a server password is never visible to other users in ``ps``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(BaseSettings):
    """The ``BLASTWALL_*`` variables of this process (empty values count as unset)."""

    model_config = SettingsConfigDict(env_prefix="BLASTWALL_", env_ignore_empty=True, extra="ignore")

    dsn: str | None = None
    config: Path | None = None
    accounts: Path | None = None
    webhook_secret: str = ""
    password: str = ""


def environment() -> Environment:
    """The variables as they are now (read afresh: tests and the CLI set them per run)."""
    return Environment()
