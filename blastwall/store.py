"""Where the store is and how to reach it: DSN resolution, the client factory, the embedded lock.

Every other package receives the client this module builds; none builds its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
import platformdirs
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from features.redaction import redact_text

LOCK_FILE_NAME = ".blastwall.lock"
#: Every query blastwall sends carries this ``log_comment`` (a client setting), so a pull of
#: ``system.query_log`` leaves blastwall's own queries out (features.pull).
LOG_COMMENT = "blastwall"
#: The embedded engine's configuration when asked for a query log (``open_store(query_log=True)``):
#: chdb keeps no ``system.query_log`` without one. Off by default: it costs about a fifth of
#: a replay's time, and an embedded engine's log holds only its own process's queries.
CHDB_CONFIG_NAME = ".blastwall-chdb.xml"
_CHDB_CONFIG = """<clickhouse>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>7500</flush_interval_milliseconds>
        <ttl>event_date + INTERVAL 7 DAY DELETE</ttl>
    </query_log>
</clickhouse>
"""


class StoreError(Exception):
    """A store problem explained in one line for the person at the terminal."""


class StoreLockedError(StoreError):
    """The embedded store directory is owned by another process."""


def data_dir() -> Path:
    """The per-user data directory that holds the default and the demo stores."""
    return Path(platformdirs.user_data_dir("blastwall"))


def default_dsn() -> str:
    """The embedded store in the per-user data directory (``chdb:///…/blastwall/store``)."""
    return f"chdb://{data_dir() / 'store'}"


def demo_dsn() -> str:
    """The demo's own embedded store, apart from the user's default store (``chdb:///…/blastwall/demo``)."""
    return f"chdb://{data_dir() / 'demo'}"


def holds_store(directory: Path) -> bool:
    """Whether an embedded store lives in ``directory`` (the engine has written its catalogue there).

    Opening a directory alone leaves only a lock file and ``tmp/``: that is no store yet.
    """
    return (directory / "metadata").is_dir()


def existing_stores() -> list[tuple[str, str]]:
    """The embedded stores in the user data directory: ``(dsn, what it is)``, the default first.

    What it is: ``"the default"``, ``"the demo's"``, or ``""`` for another folder holding a store.
    """
    root = data_dir()
    named = {"store": "the default", "demo": "the demo's"}
    order = list(named)
    try:
        folders = sorted((p for p in root.iterdir() if p.is_dir()),
                         key=lambda p: (order.index(p.name) if p.name in named else len(order), p.name))
    except OSError:  # no data directory yet: no stores
        return []
    return [(f"chdb://{folder}", named.get(folder.name, "")) for folder in folders if holds_store(folder)]


def require_store(dsn: str) -> None:
    """Refuse an embedded DSN that names no existing store, naming the stores there are.

    For commands that only read or act on what a store holds: opening the DSN would create
    an empty store, and the person would see nothing rather than learn they are in the wrong
    one. A server DSN is always accepted (the server says what it holds).

    Raises
    ------
    StoreError
        One line: where no store is, which stores exist and how to use one.
    """
    path = parse_dsn(dsn).embedded_path
    if path is None or holds_store(path):
        return
    others = [(other, what) for other, what in existing_stores() if parse_dsn(other).embedded_path != path]
    if others:
        listed = ", ".join(f"{other} ({what})" if what else other for other, what in others)
        raise StoreError(f"no store at {path}; stores in {data_dir()}: {listed}. Use --dsn {others[0][0]} "
                         "or $BLASTWALL_DSN, or create one with blastwall init.")
    raise StoreError(f"no store at {path}, and none in {data_dir()}. Create one with blastwall init "
                     "(or blastwall demo), or name yours with --dsn or $BLASTWALL_DSN.")


def resolve_dsn(cli_dsn: str | None) -> str:
    """Pick the DSN: ``--dsn``, else ``BLASTWALL_DSN``, else the embedded default."""
    from blastwall.environment import environment

    return cli_dsn or environment().dsn or default_dsn()


@dataclass(frozen=True)
class Dsn:
    """A parsed DSN.

    Attributes
    ----------
    text : str
        The DSN as given.
    embedded_path : Path or None
        The data directory for ``chdb://`` DSNs, ``None`` for a server.
    """

    text: str
    embedded_path: Path | None

    @property
    def is_embedded(self) -> bool:
        return self.embedded_path is not None


def parse_dsn(text: str) -> Dsn:
    """Validate a DSN and tell embedded from server.

    Raises
    ------
    StoreError
        For a scheme blastwall does not know or an embedded DSN without a path.
    """
    try:
        parsed = urlparse(text)
        port = parsed.port  # parsed lazily: a bad port raises here
    except ValueError as exc:
        raise StoreError(f"the DSN {redact_text(text)!r} is not a valid URL ({exc})") from None
    if parsed.scheme == "chdb":
        location = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
        if location in ("", "/", "memory", ":memory:"):
            raise StoreError(f"embedded DSN {redact_text(text)!r} needs a directory, e.g. chdb:///var/lib/blastwall")
        return Dsn(text, Path(location).expanduser().resolve())
    if parsed.scheme in ("clickhouse", "http", "https", "clickhouse+http", "clickhouse+https"):
        if not parsed.hostname:
            raise StoreError(f"server DSN {redact_text(text)!r} has no host, e.g. clickhouse://user:pass@host:8123/db")
        if port is not None and not 0 < port < 65536:
            raise StoreError(f"server DSN {redact_text(text)!r} has port {port}, outside 1-65535")
        return Dsn(text, None)
    raise StoreError(f"unknown DSN scheme in {redact_text(text)!r}: use chdb:///path or clickhouse://user:pass@host:8123/db")


class _EmbeddedLock:
    """An advisory lock on the embedded directory that names its holder.

    chdb refuses a second process with an opaque engine error; taking this lock first
    lets the second process say who holds the store and what to do instead.
    """

    def __init__(self, directory: Path, holder: str | None = None):
        self.path = directory / LOCK_FILE_NAME
        self.holder = holder or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]).strip() or "python"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(self._held_message()) from None
        holder = {
            "pid": os.getpid(),
            "command": self.holder,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _held_message(self) -> str:
        try:
            holder = json.loads(self.path.read_text())
            who = f"process {holder['pid']} ({holder['command']}, since {holder['since']})"
        except (OSError, ValueError, KeyError):
            who = "another process"
        return (
            f"the embedded store {self.path.parent} is in use by {who}; stop it first, "
            "or share the data through a ClickHouse server (--dsn clickhouse://user:pass@host:8123/db)"
        )


# Clients of this process by embedded path: chdb runs one engine per process, so
# every open_store() of the same directory shares one client and one lock.
_embedded: dict[Path, tuple[Client, _EmbeddedLock, list[int]]] = {}


def open_store(dsn: str, holder: str | None = None, *, query_log: bool = False) -> Client:
    """Open a clickhouse-connect client for a DSN (embedded or server).

    Parameters
    ----------
    dsn : str
        ``chdb:///path`` or ``clickhouse://user:pass@host:8123/db``.
    holder : str, optional
        How another process's error names this one (default: this command line).
    query_log : bool
        Embedded only: keep a ``system.query_log`` of this process's queries (tests of the
        query-log source; a server keeps its own).

    Returns
    -------
    clickhouse_connect.driver.client.Client
        Close it with :func:`close_store`.

    Raises
    ------
    StoreLockedError
        The embedded directory belongs to another process.
    StoreError
        Any other reason the store cannot be reached, in one line.
    """
    parsed = parse_dsn(dsn)
    if not parsed.is_embedded:
        try:
            interface = "https" if urlparse(dsn).scheme.endswith("https") else "http"
            return clickhouse_connect.get_client(dsn=dsn, interface=interface,
                                                 settings={"log_comment": LOG_COMMENT})
        except ClickHouseError as exc:
            raise StoreError(f"cannot reach ClickHouse at {redact_text(dsn)}: {_first_line(exc)}") from exc
        except OSError as exc:
            raise StoreError(f"cannot reach ClickHouse at {redact_text(dsn)}: {exc}") from exc
        except (ValueError, TypeError) as exc:  # the driver's own checks of the DSN's parts
            raise StoreError(f"the DSN {redact_text(dsn)!r} is not usable: {redact_text(str(exc))}") from exc
    path = parsed.embedded_path
    assert path is not None
    if path in _embedded:
        client, _, refs = _embedded[path]
        refs[0] += 1
        return client
    if _embedded:
        other = next(iter(_embedded))
        raise StoreError(f"this process already has the embedded store {other} open; one per process")
    lock = _EmbeddedLock(path, holder)
    try:
        lock.acquire()
    except OSError as exc:
        raise StoreError(f"cannot use {path} for the embedded store: {exc.strerror or exc}") from None
    try:
        options = {}
        if query_log:
            config = path / CHDB_CONFIG_NAME
            if not config.is_file() or config.read_text() != _CHDB_CONFIG:
                config.write_text(_CHDB_CONFIG)
            options["chdb_options"] = {"config-file": str(config)}
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}", settings={"log_comment": LOG_COMMENT},
                                               **options)
    except ClickHouseError as exc:
        lock.release()
        raise StoreLockedError(
            f"cannot open the embedded store {path}: {_first_line(exc)} "
            "(is another program using this directory?)"
        ) from exc
    except OSError as exc:  # the engine's configuration could not be written
        lock.release()
        raise StoreError(f"cannot use {path} for the embedded store: {exc.strerror or exc}") from None
    _embedded[path] = (client, lock, [1])
    # We own the directory: staging tables left in it by a killed ingest are nobody's now.
    from features.ingest import drop_leftover_staging

    drop_leftover_staging(client)
    return client


def close_store(client: Client) -> None:
    """Release a client from :func:`open_store`; the embedded engine closes with its last user."""
    for path, (held, lock, refs) in list(_embedded.items()):
        if held is client:
            refs[0] -= 1
            if refs[0] == 0:
                client.close()
                lock.release()
                del _embedded[path]
            return
    client.close()


def is_open(dsn: str) -> bool:
    """Whether this process holds the embedded store of ``dsn`` open."""
    return parse_dsn(dsn).embedded_path in _embedded


def reset_embedded(dsn: str) -> None:
    """Delete an embedded store's data, holding its lock so no other process is using it."""
    parsed = parse_dsn(dsn)
    if parsed.embedded_path is None:
        raise StoreError("only an embedded store can be reset")
    if parsed.embedded_path in _embedded:
        raise StoreError(f"this process has {parsed.embedded_path} open; close it before resetting")
    lock = _EmbeddedLock(parsed.embedded_path)
    lock.acquire()
    try:
        for entry in parsed.embedded_path.iterdir():
            if entry.name != LOCK_FILE_NAME:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    finally:
        lock.release()


@contextmanager
def store(dsn: str) -> Iterator[Client]:
    """``with store(dsn) as client:`` — open, then always close."""
    client = open_store(dsn)
    try:
        yield client
    finally:
        close_store(client)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def embedded_open() -> Path | None:
    """The embedded store this process has open, if any (chdb runs one per process)."""
    return next(iter(_embedded), None)


@contextmanager
def scratch_store(directory: Path) -> Iterator[Client]:
    """A fresh embedded store in ``directory`` with the schema applied, closed on exit (rule tests)."""
    from blastwall.schema import init_schema

    client = open_store(f"chdb://{directory}", holder="blastwall rule test")
    try:
        init_schema(client)
        yield client
    finally:
        close_store(client)
