"""Processes end cleanly: stopping the demo or the console stops the Streamlit child too.

Real processes, real signals: the installed ``blastwall`` command is started, the console
child is found through /proc, and after the signal the store must open again at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from builders import free_port

from blastwall.schema import init_schema
from blastwall.store import close_store, open_store

#: Real processes (a demo, a console): outside the fast subset, still in CI.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

BLASTWALL = Path(sys.executable).with_name("blastwall")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for its parent."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _serving(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _start(args: list[str], tmp_path: Path, port: int) -> tuple[subprocess.Popen, int]:
    """Start ``blastwall ARGS`` and wait until its console answers; returns it and the console's pid."""
    env = {**os.environ, "HOME": str(tmp_path), "BLASTWALL_ACCOUNTS": str(tmp_path / "accounts.yaml")}
    env.pop("BLASTWALL_DSN", None)
    process = subprocess.Popen([str(BLASTWALL), *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not _serving(port):
        if process.poll() is not None:
            pytest.fail(f"blastwall ended early ({process.returncode}): {process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the console did not start within 240 s")
        time.sleep(0.25)
    children = _children(process.pid)
    assert len(children) == 1, children
    return process, children[0]


def _store_opens_at_once(dsn: str) -> None:
    client = open_store(dsn)  # raises StoreLockedError while anything still holds it
    close_store(client)


def _new_store(tmp_path: Path) -> str:
    """An initialised embedded store (``console`` opens only a store that exists)."""
    dsn = f"chdb://{tmp_path / 'store'}"
    client = open_store(dsn)
    init_schema(client)
    close_store(client)
    return dsn


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_demo_stops_its_console(tmp_path: Path, signum: int) -> None:
    dsn = f"chdb://{tmp_path / 'demo'}"
    port = free_port()
    demo, console = _start(["--dsn", dsn, "demo", "--principals", "40", "--days", "5", "--port", str(port)],
                           tmp_path, port)

    demo.send_signal(signum)

    assert demo.wait(timeout=60) == 0
    assert not _alive(console), "the console outlived the demo"
    assert not _serving(port)
    _store_opens_at_once(dsn)


def test_a_killed_console_command_takes_its_child_along(tmp_path: Path) -> None:
    """SIGKILL cannot be forwarded: the kernel's parent-death signal ends the child."""
    dsn = _new_store(tmp_path)
    port = free_port()
    command, console = _start(["--dsn", dsn, "console", "--port", str(port)], tmp_path, port)

    command.kill()
    command.wait(timeout=10)

    deadline = time.monotonic() + 30
    while _alive(console) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(console), "the console outlived a killed parent"
    _store_opens_at_once(dsn)


def test_the_console_child_gets_no_password_on_its_command_line(tmp_path: Path) -> None:
    """The DSN travels in the child's environment, so ``ps`` never shows a server password."""
    dsn = _new_store(tmp_path)
    port = free_port()
    command, console = _start(["--dsn", dsn, "console", "--port", str(port)], tmp_path, port)
    try:
        argv = Path(f"/proc/{console}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{console}/environ").read_bytes().split(b"\0")
        assert not any(dsn.encode() in arg for arg in argv)
        assert f"BLASTWALL_DSN={dsn}".encode() in environ
    finally:
        command.terminate()
        assert command.wait(timeout=60) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_child_without_handlers_yet_ends_cleanly_on_either_signal(signum: int) -> None:
    """Streamlit installs its handlers only after its port opens; a signal before that must not
    end the child as a failure (a forwarded SIGINT became click's "Aborted!", exit code 1)."""
    import threading

    from blastwall.cli import run_child

    child = [sys.executable, "-c", "import click, time\n@click.command()\ndef main():\n    time.sleep(60)\nmain()"]
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signum))
    timer.start()
    try:
        started = time.monotonic()
        assert run_child(child, dict(os.environ), grace=30) == 0
        assert time.monotonic() - started < 20
    finally:
        timer.cancel()
