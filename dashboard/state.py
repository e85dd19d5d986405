"""Console plumbing shared by the views: the DSN and the cached store client."""

from __future__ import annotations

import argparse
import sys

import streamlit as st
from clickhouse_connect.driver.client import Client

from blastwall.store import open_store, resolve_dsn


def dsn_from_argv(argv: list[str] | None = None) -> str:
    """The DSN passed after ``--`` to ``streamlit run``, else the usual resolution."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dsn")
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return resolve_dsn(known.dsn)


@st.cache_resource(show_spinner=False)
def store_client(dsn: str) -> Client:
    """One client per DSN for the console process (the embedded engine allows one)."""
    return open_store(dsn, holder="blastwall console")
