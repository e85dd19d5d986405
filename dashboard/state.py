"""Console plumbing shared by the views: options, the cached store client, the engine, the jobs.

Everything here is created once per console process (``st.cache_resource``) and shared
by every session. One lock guards the store client: Streamlit runs each session's script
in its own thread and the hosted scheduler runs in another, and the embedded engine is
one connection.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st
from clickhouse_connect.driver.client import Client

from blastwall.access import (
    AccessDenied,
    AccountsError,
    ConsoleActions,
    SignInThrottle,
    User,
    default_accounts_path,
    load_accounts,
)
from blastwall.config import Settings, load_settings
from blastwall.environment import environment
from blastwall.store import open_store, parse_dsn, resolve_dsn
from dashboard import style
from playbooks.engine import Responder
from playbooks.model import Library, load_library

log = logging.getLogger("blastwall.console")
T = TypeVar("T")


@dataclass(frozen=True)
class ConsoleOptions:
    """What ``blastwall console``/``demo`` give the console.

    The store, the settings and the accounts arrive in the environment (``BLASTWALL_DSN``,
    ``BLASTWALL_CONFIG``, ``BLASTWALL_ACCOUNTS``: see :mod:`blastwall.environment`), so a
    server password never shows on a command line; ``--demo`` and ``--no-scheduler`` come
    after ``--`` on ``streamlit run``'s.
    """

    dsn: str
    config: Path | None = None
    accounts: Path | None = None
    demo: bool = False
    scheduler: bool = True


def options_from_argv(argv: list[str] | None = None) -> ConsoleOptions:
    """The console's options: the environment, and flags from the command line (the rest is Streamlit's)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--no-scheduler", dest="scheduler", action="store_false")
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    env = environment()
    return ConsoleOptions(resolve_dsn(None), env.config, env.accounts, known.demo, known.scheduler)


def options() -> ConsoleOptions:
    """This session's options (tests set them in ``st.session_state['options']``)."""
    if "options" not in st.session_state:
        found = options_from_argv()
        if "dsn" in st.session_state:  # a test (or an older caller) set only the DSN
            found = ConsoleOptions(st.session_state["dsn"], found.config, found.accounts, found.demo, False)
        st.session_state["options"] = found
    return st.session_state["options"]


@st.cache_resource(show_spinner=False)
def store_client(dsn: str) -> Client:
    """One client per DSN for the console process (the embedded engine allows one)."""
    return open_store(dsn, holder="blastwall console")


# Kept in the module, not in st.cache_resource: any session can ask Streamlit to clear its
# caches, and a second lock or a second scheduler over the one connection must never exist.
_LOCKS: dict[str, threading.RLock] = {}
_HOSTED: dict[str, HostedJobs | None] = {}
#: How often the demo organisation's live traffic is written (each write is an ingest batch).
LIVE_TRAFFIC_EVERY = timedelta(seconds=10)
_GUARD = threading.RLock()  # hosted_jobs takes it, then store_lock again


def store_lock(dsn: str) -> threading.RLock:
    """The lock every use of the store client takes (sessions and the hosted jobs)."""
    with _GUARD:
        return _LOCKS.setdefault(dsn, threading.RLock())


@contextmanager
def store() -> Iterator[Client]:
    """The store client, held exclusively for the block."""
    opts = options()
    with store_lock(opts.dsn):
        yield store_client(opts.dsn)


def read(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a read function of ours with the store client first; results are cached for 5 s.

    Every session shares the cache, so many analysts on one queue cost one query; an action
    clears it (:func:`acting`), so its effect shows at once.
    """
    name = f"{function.__module__}.{function.__qualname__}"
    return _cached_read(options().dsn, name, function, *args, **kwargs)


@st.cache_data(ttl=5, show_spinner=False, max_entries=512)
def _cached_read(dsn: str, name: str, _function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # Keyed by the function's name (a function object cannot be hashed; `_` skips it).
    with store_lock(dsn):
        return _function(store_client(dsn), *args, **kwargs)


def forget_reads() -> None:
    """Drop every cached read (after an action; before a timed render in the benchmark)."""
    _cached_read.clear()


@st.cache_resource(show_spinner=False)
def settings(config: Path | None) -> Settings:
    return load_settings(config)


@st.cache_resource(show_spinner=False, ttl=60)
def library(config: Path | None) -> Library:
    """The playbooks (reloaded every minute, so an edited file shows without a restart)."""
    return load_library(settings(config).playbook_folders())


def responder() -> Responder:
    """The playbook engine over the store (cheap: built per use from cached parts)."""
    opts = options()
    return settings(opts.config).responder(store_client(opts.dsn), library(opts.config))


def current_user() -> User | None:
    return st.session_state.get("user")


def actions() -> ConsoleActions:
    """The signed-in user's role-checked actions (every one is authorised on the server).

    The role is the one the accounts file gives *now*: a demoted or removed account loses
    its rights at its next action, not at its next sign-in.
    """
    user = current_user()
    if user is None:
        raise AccessDenied("sign in first", action="view")
    return ConsoleActions(store_client(options().dsn), _current_role(user), responder())


def _current_role(user: User) -> User:
    try:
        accounts = load_accounts(accounts_path())
    except AccountsError as error:
        raise AccessDenied(f"the accounts file cannot be read, so no action is allowed: {error}",
                           action="view") from None
    account = accounts.get(user.user)
    if account is not None:
        return account.to_user()
    return accounts.for_oidc(user.user, user.name)  # an OIDC identity: its mapping, or AccessDenied


@contextmanager
def acting() -> Iterator[ConsoleActions]:
    """Role-checked actions with the store held for the block."""
    try:
        with store_lock(options().dsn):
            yield actions()
    finally:
        forget_reads()  # what the action changed must show on the next read


#: One sign-in back-off for the console process: every session shares it (kept in the
#: module, like the locks, so clearing Streamlit's caches cannot reset it).
SIGN_IN_THROTTLE = SignInThrottle()


def client_address() -> str:
    """The browser's address as Streamlit sees it (empty when unknown, e.g. in AppTest)."""
    try:
        return str(st.context.ip_address or "")
    except Exception:  # noqa: BLE001 - no request context (a test)
        return ""


def viewer_zone() -> tzinfo:
    """The viewer's time zone as the browser reports it (UTC in tests and when unknown)."""
    try:
        return style.viewer_zone(st.context.timezone)
    except Exception:  # noqa: BLE001 - no browser context (AppTest)
        return UTC


def accounts_path() -> Path:
    return options().accounts or default_accounts_path()


# --- the jobs the console hosts for an embedded store --------------------------------


@dataclass
class HostedJobs:
    """The scheduler running inside the console, and what it last did."""

    scheduler: Any
    jobs: Any
    traffic: Any = None
    traffic_error: str = ""


def hosted_jobs(dsn: str, config: Path | None, demo: bool) -> HostedJobs | None:
    """Start detect, respond, escalate, retention (and the demo's live traffic) in this process, once.

    Only for an embedded store: one process owns it, so the console is where the jobs
    must run. Against a server, ``blastwall run`` runs them as its own process.
    """
    with _GUARD:
        if dsn not in _HOSTED:
            _HOSTED[dsn] = _start_jobs(dsn, config, demo) if parse_dsn(dsn).is_embedded else None
        return _HOSTED[dsn]


def _start_jobs(dsn: str, config: Path | None, demo: bool) -> HostedJobs:
    from apscheduler.schedulers.background import BackgroundScheduler

    from blastwall.jobs import DetectionJobs, LiveSettings, schedule

    client = store_client(dsn)
    conf = settings(config)
    # The settings' cadence (as blastwall run), in short, frequent runs: the lock is shared
    # with every analyst's clicks. The demo starts detecting a few hours back.
    detect_config, _ = conf.detect_config()  # a broken rule file is left out (`blastwall rule test` names it)
    live = conf.live.live_settings(
        max_steps_per_run=12, respond_max_age=conf.respond_max_age, config=detect_config,
        initial_backfill=timedelta(hours=6) if demo else LiveSettings().initial_backfill)
    jobs = DetectionJobs(client, live, responder=conf.responder(client, library(config)))
    jobs.lock = store_lock(dsn)
    scheduler = schedule(BackgroundScheduler(timezone="UTC", daemon=True), jobs,
                         detect_every=min(conf.live.detect_every, timedelta(seconds=15)))
    hosted = HostedJobs(scheduler, jobs)
    if conf.sources.clickhouse_query_log is not None:  # the pull job, under the same store lock
        from blastwall.pulling import PullJob, schedule_pull

        pulling = conf.sources.clickhouse_query_log
        schedule_pull(scheduler, PullJob(client, dsn, pulling.from_dsn, pulling.pull_settings(),
                                         lock=store_lock(dsn), after_pull=jobs.tick), pulling.every)
    if demo:
        try:
            _add_live_traffic(hosted, client, store_lock(dsn))
        except Exception as error:  # noqa: BLE001 - detection must run even if the simulation cannot
            hosted.traffic_error = f"live traffic could not start: {error}"
            log.error(hosted.traffic_error)
    if conf.unsigned_webhooks:
        log.warning(conf.unsigned_webhooks)  # once, as the jobs start (the Playbooks view says it too)
    scheduler.start()
    return hosted


def _add_live_traffic(hosted: HostedJobs, client: Client, lock: threading.RLock) -> None:
    """The demo organisation keeps working (and honours containment) while the visitor watches."""
    from blastwall.simulation.live import LiveTraffic, demo_spec

    traffic = LiveTraffic(client, demo_spec(client), started=datetime.now(UTC))
    hosted.traffic = traffic

    def tick() -> None:
        with lock:
            try:
                written = traffic.tick(datetime.now(UTC)).written
                hosted.traffic_error = ""
            except Exception as error:  # noqa: BLE001 - the next tick catches up
                hosted.traffic_error = str(error)
                log.error("live traffic failed: %s", error)
                return
        if written:  # what was just ingested gets the certain detections at once (never raises)
            hosted.jobs.tick()

    hosted.scheduler.add_job(tick, "interval", seconds=LIVE_TRAFFIC_EVERY.total_seconds(), id="live_traffic",
                             coalesce=True, max_instances=1,
                             next_run_time=datetime.now(UTC) + timedelta(seconds=5), replace_existing=True)
