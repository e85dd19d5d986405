"""blastwall: the thin shell — configuration and DSN, the client factory, DDL, scheduled jobs, CLI."""

__version__ = "0.1.0"
