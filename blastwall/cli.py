"""The ``blastwall`` command line (docs/DESIGN.md, "Command line": stable — extend, never rename).

Every failure a user can cause or meet (bad argument, unreadable file, store held by
another process, unreachable server, no store where one is read) ends as one
``blastwall: …`` line on stderr and exit code 2; never a traceback.

Incidents are named to people by their reference (``INC-12``); every command that takes
an incident accepts the reference or the numeric id (:func:`_incident`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import click
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from blastwall.schema import init_schema
from blastwall.store import (
    StoreError,
    close_store,
    demo_dsn,
    open_store,
    parse_dsn,
    require_store,
    reset_embedded,
    resolve_dsn,
)

EXIT_USAGE = 2


class BlastwallCliError(click.ClickException):
    """One readable line, exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file=None) -> None:
        click.echo(f"blastwall: {self.format_message()}", err=True)


@contextmanager
def _client(ctx: click.Context, *, initialise: bool = True, must_exist: bool = False) -> Iterator[Client]:
    """The store for this command, with its schema current; problems become one line.

    Parameters
    ----------
    ctx : click.Context
    initialise : bool
        Bring the schema up to date first.
    must_exist : bool
        For commands that read what a store holds: an embedded DSN naming no store is an
        error naming the stores there are, never a new empty store.
    """
    dsn = resolve_dsn(ctx.obj["dsn"])
    try:
        if must_exist:
            require_store(dsn)
        client = open_store(dsn)
    except StoreError as exc:
        raise BlastwallCliError(str(exc)) from None
    try:
        if initialise:
            init_schema(client)
        yield client
    except ClickHouseError as exc:
        raise BlastwallCliError(f"the store failed: {str(exc).strip().splitlines()[0][:300]}") from None
    finally:
        close_store(client)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dsn", metavar="DSN", help="chdb:///path (embedded) or clickhouse://user:pass@host:8123/db. "
              "Default: $BLASTWALL_DSN, else an embedded store in the user data directory.")
@click.option("--config", "config_path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Settings (paging routes, webhooks, playbook and rule folders, pulled sources; YAML). "
              "Default: $BLASTWALL_CONFIG, else none (pages are recorded, not delivered).")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, config_path: Path | None) -> None:
    """blastwall: anomaly detection and incident response for the data paths of AI training."""
    from blastwall.environment import environment

    ctx.obj = {"dsn": dsn, "config": config_path or environment().config}


def _settings(ctx: click.Context):
    """The response settings of this invocation (one readable line when they are bad)."""
    from blastwall.config import ConfigError, load_settings

    try:
        return load_settings(ctx.obj.get("config"))
    except ConfigError as exc:
        raise BlastwallCliError(str(exc)) from None


def _responder(ctx: click.Context, client: Client, extra_dirs: tuple[Path, ...] = ()):
    """The playbook engine over the store, with the configured library, pager and integrations."""
    return _settings(ctx).responder(client, extra=extra_dirs)


def _detect_config(ctx: click.Context):
    """Detection settings with the rules of the built-in library and the settings' folders.

    A rule file with problems is left out (detection goes on) and each problem is shown.
    """
    config, problems = _settings(ctx).detect_config()
    for problem in problems:
        click.echo(f"blastwall: warning: rule skipped: {problem}", err=True)
    return config


def _actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create or upgrade every table (idempotent)."""
    with _client(ctx, initialise=False) as client:
        applied = init_schema(client)
    if applied:
        for step in applied:
            click.echo(f"applied {step.package} v{step.version}")
    else:
        click.echo("schema is current")


@cli.command()
@click.option("--table", "table", default="access_log", show_default=True,
              type=click.Choice(["access_log", "resources", "memberships", "principals"]),
              help="Which contract table the files hold.")
@click.option("--source", "source_name", metavar="NAME",
              help="A real log format (see `blastwall sources`), or `auto` to recognise each file's "
              "(it says which it chose). Default: contract files.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def ingest(ctx: click.Context, table: str, source_name: str | None, files: tuple[Path, ...]) -> None:
    """Load JSON Lines, CSV or Parquet files (optionally .gz) into a contract table.

    With --source, load a real log format (CloudTrail…) into access_log. Bad rows are kept
    in rejected_rows with file, line and reason; re-ingesting a file adds nothing new.
    """
    from tqdm import tqdm

    from features.ingest import IngestError, IngestSummary, detect_format, ingest_file, sniff_source
    from features.sources import discover

    known = discover()
    if source_name not in (None, "auto", "contract", *known):
        raise BlastwallCliError(f"unknown source {source_name!r}; choose one of auto, contract, "
                                f"{', '.join(known)} (see blastwall sources)")
    if source_name not in (None, "contract") and table != "access_log":
        raise BlastwallCliError("--source loads access_log; leave out --table")
    chosen: dict[Path, str | None] = {}
    for path in files:  # check every file before loading any
        if not path.is_file():
            raise BlastwallCliError(f"{path}: no such file")
        if not os.access(path, os.R_OK):
            raise BlastwallCliError(f"{path}: not readable")
        if source_name == "auto":
            found = sniff_source(path)
            chosen[path] = found.name if found else None
        else:
            chosen[path] = None if source_name in (None, "contract") else source_name
        if chosen[path] is None:
            try:
                detect_format(path)
            except IngestError as exc:
                raise BlastwallCliError(str(exc)) from None
    failed = False
    with _client(ctx) as client:
        checked_from = _store_now(client)
        for path in files:
            size = path.stat().st_size if not path.name.endswith(".gz") else None
            with tqdm(total=size, unit="B", unit_scale=True, desc=path.name, leave=False,
                      disable=not sys.stderr.isatty()) as bar:
                def progress(consumed: int, bar: tqdm = bar) -> None:
                    bar.update(consumed - bar.n)
                try:
                    summary: IngestSummary = ingest_file(client, path, table, on_progress=progress,
                                                         source=chosen[path])
                except IngestError as exc:
                    click.echo(f"blastwall: {exc}", err=True)
                    failed = True
                    continue
            rate = summary.rows / summary.seconds if summary.seconds else 0.0
            label = f"{chosen[path] or 'contract'}: " if source_name is not None else ""
            click.echo(f"{path}: {label}loaded {summary.loaded:,}, duplicates {summary.duplicates:,}, "
                       f"rejected {summary.rejected:,} ({summary.seconds:.1f}s, {rate:,.0f} rows/s)")
            for reason, count in sorted(summary.reasons.items(), key=lambda item: -item[1]):
                click.echo(f"  rejected {count:,}: {reason}")
            if summary.broken:  # the rows before the break are loaded; the file still failed
                click.echo(f"blastwall: {path}: {summary.broken}", err=True)
                failed = True
        if table == "access_log" and parse_dsn(resolve_dsn(ctx.obj["dsn"])).is_embedded:
            # An embedded store has no live loop beside this process (one process owns it):
            # the certain detections run here. On a server, `blastwall run` finds the events
            # within its next tick.
            _certain_detections(ctx, client, checked_from)
    if failed:
        sys.exit(EXIT_USAGE)


def _store_now(client: Client):  # -> datetime
    """The store's clock (it stamps ``ingested_at``)."""
    from features.times import from_epoch_ms

    return from_epoch_ms(int(client.query("SELECT toUnixTimestamp64Milli(now64(3))").result_rows[0][0]))


def _certain_detections(ctx: click.Context, client: Client, since) -> None:  # since: datetime
    """The fast path over what was just loaded (recent events only), then paging and containment
    of the incidents it opened."""
    from blastwall.jobs import DetectionJobs

    settings = _settings(ctx)
    jobs = DetectionJobs(client, settings.live.live_settings(config=_detect_config(ctx),
                                                             respond_max_age=settings.respond_max_age),
                         responder=_responder(ctx, client))
    jobs.fast.cursor = since  # only what this command loaded
    result = jobs.tick()
    if result is None:  # the events are in; the step loop still judges them
        click.echo(f"blastwall: warning: the certain detections over the new events failed ({jobs.fast_error}); "
                   "the events are loaded and the next detect step judges them", err=True)
        return
    if result.opened:
        from detector.incidents import incident_refs

        refs = incident_refs(client, [o.incident_id for o in result.outcomes if o.outcome == "opened"])
        named = sorted(refs.values(), key=lambda ref: int(ref.split("-")[-1]))
        click.echo(f"certain detections: {result.opened} incident{'s' if result.opened != 1 else ''} opened "
                   f"({', '.join(named)}), paged and handed to the playbooks")


@cli.command()
@click.option("--source", "source_name", required=True, type=click.Choice(["clickhouse-query-log"]),
              help="What to pull (see `blastwall sources`).")
@click.option("--from", "from_dsn", metavar="DSN",
              help="The ClickHouse server whose query log is read. Default: the settings' "
              "sources.clickhouse_query_log.from, else the store itself.")
@click.pass_context
def pull(ctx: click.Context, source_name: str, from_dsn: str | None) -> None:
    """Pull ClickHouse's own query log (and role grants) into access_log, from the watermark on.

    Pulling again adds nothing twice; blastwall's own queries are left out.
    """
    from blastwall.pulling import describe, pull_once
    from blastwall.store import StoreError, parse_dsn
    from blastwall.store import resolve_dsn as store_dsn

    configured = _settings(ctx).sources.clickhouse_query_log
    from_dsn = from_dsn or (configured.from_dsn if configured else None)
    if from_dsn is not None:
        try:
            parse_dsn(from_dsn)
        except StoreError as exc:
            raise BlastwallCliError(f"--from: {exc}") from None
    with _client(ctx) as client:
        try:
            summary = pull_once(client, store_dsn(ctx.obj["dsn"]), from_dsn,
                                configured.pull_settings() if configured else None)
        except StoreError as exc:
            raise BlastwallCliError(str(exc)) from None
        except (ClickHouseError, OSError) as exc:  # either side; the watermark did not move
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            from features.redaction import redact_text

            raise BlastwallCliError(f"the pull failed (nothing lost, run it again): {redact_text(first)}") from None
    click.echo(describe(summary))
    for note in summary.notes:
        click.echo(f"blastwall: note: {note}", err=True)


@cli.command()
@click.option("--principals", default=1000, show_default=True, type=click.IntRange(40, 1_000_000))
@click.option("--days", default=14, show_default=True, type=click.IntRange(5, 365))
@click.option("--seed", default=7, show_default=True, type=click.IntRange(0))
@click.option("--reseed", is_flag=True, help="Drop the demo store and generate it again.")
@click.option("--no-console", is_flag=True, help="Seed (and detect) only; do not open the console.")
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Interface to serve on (the demo account is public: keep it on this machine).")
@click.pass_context
def demo(ctx: click.Context, principals: int, days: int, seed: int, reseed: bool, no_console: bool,
         port: int, address: str) -> None:
    """Seed a realistic organisation (with labelled attacks) and open the console on it."""
    from datetime import UTC, datetime

    from blastwall.simulation import OrgSpec, write_to_store
    from blastwall.simulation.live import demo_start

    dsn = ctx.obj["dsn"] or demo_dsn()
    ctx.obj["dsn"] = dsn
    if reseed:
        _reset_embedded(dsn)
    with _client(ctx) as client:
        existing = int(client.query("SELECT count() FROM access_log").result_rows[0][0])
        if existing:
            click.echo(f"demo store {dsn} already holds {existing:,} events (use --reseed to regenerate)")
        else:
            # The history ends at today's midnight, so the console's live traffic continues it.
            spec = OrgSpec(principals=principals, days=days, seed=seed, start=demo_start(datetime.now(UTC), days))
            click.echo(f"seeding {principals:,} principals x {days} days (seed {seed}) into {dsn} ...")
            counts = write_to_store(client, spec)
            click.echo(_describe_seed(counts))
        _replay_demo_history(ctx, client)
    accounts = _demo_accounts(dsn)
    click.echo(f"sign in as 'demo' with password 'demo' (accounts: {accounts})")
    if not no_console:
        click.echo("the console detects, pages and contains live, and the organisation keeps working meanwhile")
        _launch_console(ctx, dsn, port, demo=True, accounts=accounts, address=address)


def _replay_demo_history(ctx: click.Context, client) -> None:  # client: clickhouse_connect Client
    """Detect over the seeded days (the batch path), so the console opens on their incidents.

    Up to the live loop's current step, in its step length, so live detection continues
    from there; a store replayed before resumes from its watermark (nothing is redone).
    """
    from datetime import UTC, datetime

    from detector import runs
    from detector.replay import StepFailed, align, run_batches
    from features.times import from_epoch_ms

    live = _settings(ctx).live
    until = align(datetime.now(UTC) - live.lateness, live.step)
    mark = runs.watermark(client)
    first, events = client.query("SELECT min(toUnixTimestamp64Milli(event_time)), count() FROM access_log"
                                 ).result_rows[0]
    if not events:
        return
    since = None if mark is not None else align(from_epoch_ms(int(first)), live.step)
    if (mark or since) + live.step > until:
        return
    click.echo("detecting over the seeded history, so the console opens on its incidents ...")
    with _ReplayProgress() as progress:
        try:
            summary = run_batches(client, until, live.step, since=since, config=_detect_config(ctx),
                                  on_step=progress.step, on_plan=progress.plan)
        except StepFailed as exc:
            raise BlastwallCliError(f"{exc}; run blastwall demo again to resume") from None
    click.echo(_replayed(summary))


def _demo_accounts(dsn: str) -> Path:
    """The demo store's own accounts file, with one admin account for the visitor."""
    from blastwall.access import add_account, load_accounts
    from blastwall.store import parse_dsn

    folder = parse_dsn(dsn).embedded_path or Path(".")
    path = Path(folder).parent / "demo-accounts.yaml"
    try:
        if load_accounts(path).authenticate("demo", "demo") is not None:
            return path
    except ValueError:
        pass  # missing or unreadable: write it
    add_account(path, "demo", "admin", "demo", name="Demo visitor")
    return path


def _describe_seed(counts: dict) -> str:
    return (f"seeded {counts['access_log']:,} events, {counts['principals']:,} principals, "
            f"{counts['resources']:,} resources, {counts['memberships']:,} memberships and "
            f"{counts['scenario_labels']} labelled attacks in {counts['seconds']:.1f}s "
            f"({counts['events_per_second']:,.0f} events/s)")


def _log_formats() -> list[str]:
    """The real log formats the generator writes (one per module of blastwall/simulation/formats)."""
    from blastwall.simulation.formats import discover

    return sorted(discover())


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", default="jsonl", show_default=True,
              type=click.Choice(["jsonl", "csv", "parquet", "contract", *_log_formats()]),
              help="Contract files (jsonl, the same as contract; csv; parquet), or the access log in a real "
                   "log format with the catalogue as contract files.")
@click.option("--gzip", "compress", is_flag=True, help="gzip the files (.gz; Parquet: compressed pages).")
@click.option("--principals", default=1000, show_default=True, type=click.IntRange(40, 1_000_000))
@click.option("--days", default=14, show_default=True, type=click.IntRange(5, 3650))
@click.option("--seed", default=7, show_default=True, type=click.IntRange(0))
def generate(out_dir: Path, fmt: str, compress: bool, principals: int, days: int, seed: int) -> None:
    """Write the labelled organisation as files (+ labels.json) for `ingest` or other tools.

    In a real log format (cloudtrail, ocsf, gcp-audit…) the access log is written as that
    format's records, for `ingest --source`, and resources are named as that source names them.
    """
    from blastwall.simulation import OrgSpec, write_files
    from blastwall.simulation.formats import write_log_files

    spec = OrgSpec(principals=principals, days=days, seed=seed)
    try:
        if fmt in _log_formats():
            counts = write_log_files(spec, out_dir, fmt, gzip=compress)
        else:
            counts = write_files(spec, out_dir, fmt="jsonl" if fmt == "contract" else fmt, gzip=compress)
    except OSError as exc:
        raise BlastwallCliError(f"{out_dir}: cannot write ({exc.strerror or exc})") from None
    click.echo(f"wrote {out_dir}: " + ", ".join(f"{name} {value:,}" for name, value in counts.items()))


def _reset_embedded(dsn: str) -> None:
    try:
        reset_embedded(dsn)
    except StoreError as exc:
        raise BlastwallCliError(str(exc)) from None


@cli.command()
@click.option("--port", default=8501, show_default=True, type=int)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Interface to serve on (0.0.0.0 for every interface, behind your TLS proxy).")
@click.pass_context
def console(ctx: click.Context, port: int, address: str) -> None:
    """Open the Streamlit console on the store."""
    dsn = resolve_dsn(ctx.obj["dsn"])
    with _client(ctx, must_exist=True):  # fail here, in one line, if the store is unusable or absent
        pass
    settings = _settings(ctx)  # and here, if the settings are unusable
    if settings.unsigned_webhooks:
        click.echo(f"blastwall: warning: {settings.unsigned_webhooks}", err=True)
    _launch_console(ctx, dsn, port, address=address)


def _launch_console(ctx: click.Context, dsn: str, port: int = 8501, demo: bool = False,
                    accounts: Path | None = None, address: str = "127.0.0.1") -> None:
    """Serve the console; it hosts the scheduled jobs itself when the store is embedded.

    Only on this machine unless ``address`` says otherwise (the demo's account is public).
    The DSN, the settings and the accounts reach the Streamlit child through its
    environment, never its command line, where ``ps`` would show a server password.
    """
    import dashboard

    app = Path(dashboard.__file__).resolve().parent / "app.py"
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
               "--server.address", address,
               "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "viewer", "--"]
    if demo:
        command.append("--demo")
    env = {**os.environ, "BLASTWALL_DSN": dsn}
    config = ctx.obj.get("config")
    if config:
        env["BLASTWALL_CONFIG"] = str(Path(config).resolve())
    if accounts:
        env["BLASTWALL_ACCOUNTS"] = str(Path(accounts).resolve())
    click.echo(f"console: http://{'localhost' if address == '127.0.0.1' else address}:{port}  (Ctrl-C to stop)")
    sys.exit(run_child(command, env))


def run_child(command: list[str], env: dict[str, str], grace: float = 20.0) -> int:
    """Run a child process until it ends, forwarding SIGINT and SIGTERM to it (as SIGTERM).

    The child runs in its own session, so a Ctrl-C reaches it once (through us), and it is
    asked by the kernel to end if we die without forwarding anything (SIGKILL). Whatever
    ends us, the child is waited for: it must release the embedded store and its port
    before we exit. A child that outlives ``grace`` seconds after the signal is killed.

    Returns
    -------
    int
        The child's exit code (0 when it ended on our forwarded signal).
    """
    import signal
    import time

    child = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_parent)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        if child.poll() is None:
            # Always SIGTERM: Streamlit installs its own handlers only after its port opens,
            # and a SIGINT before that becomes click's "Aborted!" with exit code 1.
            child.send_signal(signal.SIGTERM)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    deadline: float | None = None
    try:
        while (code := child.poll()) is None:
            if received and deadline is None:
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                child.kill()
            try:
                child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if child.poll() is None:  # an exception of ours: never leave the child behind
            child.kill()
            child.wait()
    return 0 if received and code in (0, -signal.SIGINT, -signal.SIGTERM) else code


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (the stable fields of docs/DESIGN.md).")
@click.option("--status", type=click.Choice(["open", "acknowledged", "contained", "resolved", "false_positive"]))
@click.option("--min-severity", type=click.Choice(["SEV1", "SEV2", "SEV3", "SEV4"]),
              help="This severity or worse (SEV2 keeps SEV1 and SEV2).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.pass_context
def incidents(ctx: click.Context, as_json: bool, status: str | None, min_severity: str | None, limit: int) -> None:
    """List incidents, most severe first, then by score."""
    import json

    from detector.incidents import list_incidents
    from playbooks.engine import runs_for_incidents

    with _client(ctx, must_exist=True) as client:
        found = list_incidents(client, status=status, min_severity=min_severity, limit=limit)
        runs = runs_for_incidents(client, [incident["id"] for incident in found])
    for incident in found:
        incident["playbook_runs"] = runs.get(incident["id"], [])
    if as_json:
        click.echo(json.dumps(found, default=_json_value, ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("no incidents")
        return
    # The reference names an incident to people; the long id stays in --json.
    names = [incident["ref"] or str(incident["id"]) for incident in found]
    width = max(len("ref"), *(len(name) for name in names))
    click.echo(f"{'ref':{width}}  {'sev':4}  {'status':14}  {'score':>5}  {'detector':22}  title")
    for name, incident in zip(names, found):
        click.echo(f"{name:{width}}  {incident['severity']:4}  {incident['status']:14}  "
                   f"{incident['score']:>5.3f}  {incident['detector']:22}  {incident['title']}")


def _json_value(value: object) -> object:
    """Times as ISO-8601 UTC with 'Z'; anything else JSON cannot hold as text."""
    from datetime import datetime

    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(value)


class _Moment(click.ParamType):
    """An ISO-8601 time (``Z`` or an offset; a time without one is taken as UTC)."""

    name = "TIME"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        from datetime import datetime

        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time (e.g. 2026-10-05T00:00:00Z)", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Duration(click.ParamType):
    """A duration as :func:`features.durations.parse_duration` reads it (``30s``, ``5m``, ``5min``, ``1h``)."""

    name = "DURATION"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        from features.durations import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@cli.command()
@click.option("--since", type=_Moment(), help="Start of the replay (when nothing was processed yet, or later).")
@click.option("--until", type=_Moment(), required=True, help="No step ends after this.")
@click.option("--step", type=_Duration(),
              help="Window per step (default: the settings' live.step, 5m, so the baselines fit the live loop).")
@click.option("--reset", is_flag=True, help="Forget history, baselines and progress first (incidents are kept).")
@click.option("--respond", "respond_too", is_flag=True,
              help="After each step, page and run playbooks as the live loop would at that step's end "
                   "(runs the step loop).")
@click.option("--step-loop", is_flag=True,
              help="Run one step at a time, as live detection does, instead of a batch of steps at a time "
                   "(the same incidents, slower).")
@click.pass_context
def detect(ctx: click.Context, since, until, step, reset: bool, respond_too: bool, step_loop: bool) -> None:
    """Replay or backfill detection over [--since, --until), a batch of steps at a time.

    Each step sees only events before its end; steps already done are skipped, so
    running the same range again opens no duplicate incident. A failed batch leaves the
    progress at its start: run the command again to resume.
    """
    from detector.replay import StepFailed, reset_detection, run_batches, run_steps
    from detector.runs import watermark
    from features.history import HistoryAheadError

    if since is not None and since >= until:
        raise BlastwallCliError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    step = step or _settings(ctx).live.step
    with _client(ctx) as client:
        if reset:
            reset_detection(client)
        responder = _responder(ctx, client) if respond_too else None
        runs: list[str] = []
        config = _detect_config(ctx)
        with _ReplayProgress() as progress:
            def after_step(result) -> None:  # result: detector.detect.StepResult
                progress.step(result)
                if responder is not None:
                    runs.extend(r.run_id for r in responder.respond(result.end).runs)

            try:
                if step_loop or respond_too:
                    mark = watermark(client)
                    begin = max(moment for moment in (mark, since) if moment is not None) if mark or since else None
                    progress.plan(max(0, (until - begin) // step) if begin is not None else None, None)
                    summary = run_steps(client, until, step, since=since, config=config, on_step=after_step)
                else:
                    summary = run_batches(client, until, step, since=since, config=config, on_step=after_step,
                                          on_plan=progress.plan)
            except ValueError as exc:
                raise BlastwallCliError(str(exc)) from None
            except HistoryAheadError as exc:
                raise BlastwallCliError(f"{exc} (blastwall detect --reset ...)") from None
            except StepFailed as exc:
                raise BlastwallCliError(f"{exc}; progress stays at {exc.start.isoformat()}: run again to resume"
                                        ) from None
    if summary.steps == 0:
        click.echo(f"nothing to do: {summary.skipped} steps of this range were already processed"
                   if summary.skipped else "nothing to do: no whole step fits before --until")
        return
    click.echo(_replayed(summary))
    if respond_too:
        click.echo(f"responded: {len(set(runs)):,} playbook runs (see: blastwall incidents --json)")
    for error in summary.errors[:10]:
        click.echo(f"  stage error (an incident was opened): {error}", err=True)


def _replayed(summary) -> str:  # summary: detector.replay.ReplaySummary
    return (f"processed {summary.steps:,} steps [{summary.first.isoformat()}, {summary.last.isoformat()}): "
            f"{summary.events:,} events, {summary.alerts:,} alerts, {summary.opened:,} incidents opened "
            f"in {summary.seconds:.1f}s ({summary.events_per_second:,.0f} events/s, "
            f"{summary.ms_per_step:.0f} ms/step)")


class _ReplayProgress:
    """A progress bar for a replay on a terminal: steps done, events/s and the time left (tqdm's ETA)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=None, unit="step", disable=not sys.stderr.isatty(), leave=False, desc="detect")
        self.events = 0

    def __enter__(self) -> _ReplayProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def plan(self, steps: int | None, events: int | None) -> None:
        self.bar.reset(total=steps)
        if events is not None:
            self.bar.set_description(f"detect {events:,} events")

    def step(self, result) -> None:  # result: detector.detect.StepResult
        self.events += result.events
        elapsed = self.bar.format_dict["elapsed"]
        self.bar.set_postfix_str(f"{self.events / elapsed:,.0f} events/s" if elapsed else "", refresh=False)
        self.bar.update()


@cli.command()
@click.option("--step", type=_Duration(), help="Window per step (default: the settings' live.step, 5m).")
@click.option("--lateness", type=_Duration(),
              help="Process a step only this long after it ended (default: the settings' live.lateness, 2m).")
@click.pass_context
def run(ctx: click.Context, step, lateness) -> None:
    """The live scheduler: certain detections every few seconds, steps every minute, paging,
    containment and escalation, until Ctrl-C."""
    import logging

    from apscheduler.schedulers.blocking import BlockingScheduler

    from blastwall.jobs import DetectionJobs, schedule

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with _client(ctx) as client:
        settings = _settings(ctx)
        try:  # the options get the settings' checks (a step must divide a day …)
            cadence = type(settings.live).model_validate(
                {**settings.live.model_dump(), **{k: v for k, v in (("step", step), ("lateness", lateness))
                                                  if v is not None}})
        except ValueError as exc:
            problem = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
            raise BlastwallCliError(f"--step/--lateness: {problem}") from None
        jobs = DetectionJobs(client, cadence.live_settings(config=_detect_config(ctx),
                                                           respond_max_age=settings.respond_max_age),
                             responder=_responder(ctx, client))
        scheduler = schedule(BlockingScheduler(timezone="UTC"), jobs, detect_every=cadence.detect_every)
        pulling = settings.sources.clickhouse_query_log
        if pulling is not None:  # the same lock: the jobs never use the store client at once
            from blastwall.pulling import PullJob, schedule_pull

            schedule_pull(scheduler, PullJob(client, resolve_dsn(ctx.obj["dsn"]), pulling.from_dsn,
                                             pulling.pull_settings(), lock=jobs.lock, after_pull=jobs.tick),
                          pulling.every)
            click.echo(f"blastwall run: pulling the ClickHouse query log every {pulling.every}")
        if settings.unsigned_webhooks:
            click.echo(f"blastwall: warning: {settings.unsigned_webhooks}", err=True)
        click.echo(f"blastwall run: certain detections every {cadence.tick}; steps of {cadence.step}, "
                   f"{cadence.lateness} behind now, looked for every {cadence.detect_every}; "
                   f"{len(jobs.responder.library.playbooks)} playbooks (Ctrl-C to stop)")
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            scheduler.shutdown(wait=False)


@cli.command(name="eval")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("--seeds", default="1,2,3", show_default=True, help="Comma-separated organisation seeds.")
@click.option("--principals", default=None, type=click.IntRange(40, 100_000),
              help="Principals per organisation.  [default: 300; 150 with --styles]")
@click.option("--days", default=None, type=click.IntRange(5, 60),
              help="Days per organisation.  [default: 14; 9 with --styles]")
@click.option("--step", type=_Duration(), default="15m", show_default=True, help="Replay step.")
@click.option("--jobs", default=2, show_default=True, type=click.IntRange(1, 16),
              help="Organisations replayed at once.")
@click.option("--format", "log_format", default="contract", show_default=True,
              type=click.Choice(["contract", *_log_formats()]),
              help="Feed the replay through a real log format's source (the access log written in that format).")
@click.option("--adbench", "rerun_adbench", is_flag=True,
              help="Re-measure the ADBench comparison first (benchmarks/adbench.py, a few minutes).")
@click.option("--styles", "style_count", default=None, type=click.IntRange(1, 1000),
              help="Detection curves instead of seeds: replay N company styles (seed = style), each at every "
                   "--intensities and once without attacks (false pages).")
@click.option("--first-style", default=0, show_default=True, type=click.IntRange(0),
              help="With --styles: the first style (styles K..K+N-1).")
@click.option("--intensities", default=None,
              help="With --styles: comma-separated attack intensities in (0, 1].  [default: 1,0.5,0.25]")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="With --styles: also write the curves as a PNG.")
@click.pass_context
def evaluate(ctx: click.Context, as_json: bool, seeds: str, principals: int | None, days: int | None, step,
             jobs: int, log_format: str, rerun_adbench: bool, style_count: int | None, first_style: int,
             intensities: str | None, plot_path: Path | None) -> None:
    """Replay labelled organisations and report recall, severity, precision, false pages and time to detect.

    The report ends with the ADBench comparison of the scoring ensemble with each single
    PyOD detector, from the last run of benchmarks/adbench.py (--adbench runs it first).

    With --styles N: detection curves across company styles and attack intensities — per
    family and intensity the share of styles caught at the family's goal severity and the
    median time to detect, false pages per style on benign-only organisations, and the
    goals at intensity 1.
    """
    from blastwall.evaluation import (
        ADBENCH_SCRIPT,
        EvalSettings,
        format_report,
        in_checkout,
        to_json,
    )
    from blastwall.evaluation import evaluate as run_eval

    fmt = "" if log_format == "contract" else log_format
    if style_count is not None:
        _evaluate_curves(ctx, as_json=as_json, principals=principals, days=days, step=step, jobs=jobs,
                         log_format=fmt, styles=tuple(range(first_style, first_style + style_count)),
                         intensities=intensities, plot_path=plot_path, rerun_adbench=rerun_adbench)
        return
    for name, given in (("--first-style", first_style != 0), ("--intensities", intensities is not None),
                        ("--plot", plot_path is not None)):
        if given:
            raise BlastwallCliError(f"{name} needs --styles")
    try:
        seed_list = tuple(int(part) for part in seeds.split(",") if part.strip())
    except ValueError:
        raise BlastwallCliError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if not seed_list or min(seed_list) < 0:
        raise BlastwallCliError(f"--seeds must name at least one non-negative seed, got {seeds!r}")
    if rerun_adbench:
        if not in_checkout():
            raise BlastwallCliError("--adbench needs a source checkout (benchmarks/adbench.py is not installed)")
        if subprocess.run([sys.executable, str(ADBENCH_SCRIPT)], stdout=sys.stderr).returncode != 0:
            raise BlastwallCliError("benchmarks/adbench.py failed (its output is above)")
    report = run_eval(EvalSettings(seeds=seed_list, principals=300 if principals is None else principals,
                                   days=14 if days is None else days, step=step, jobs=jobs, log_format=fmt))
    click.echo(to_json(report) if as_json else format_report(report))


def _evaluate_curves(ctx: click.Context, *, as_json: bool, principals: int | None, days: int | None, step,
                     jobs: int, log_format: str, styles: tuple[int, ...], intensities: str | None,
                     plot_path: Path | None, rerun_adbench: bool) -> None:
    """``eval --styles``: replay every style at every intensity and once benign, print the curves."""
    from click.core import ParameterSource

    from blastwall.curves import format_curves, intensity_key, plot_curves
    from blastwall.evaluation import CurveSettings, evaluate_curves, to_json

    if ctx.get_parameter_source("seeds") is not ParameterSource.DEFAULT:
        raise BlastwallCliError("--seeds and --styles cannot be combined (with --styles, each seed is its style)")
    if rerun_adbench:
        raise BlastwallCliError("--adbench is not part of a curve run (--styles); run it without --styles")
    text = "1,0.5,0.25" if intensities is None else intensities
    try:
        levels = tuple(sorted({float(part) for part in text.split(",") if part.strip()}, reverse=True))
    except ValueError:
        levels = ()
    if not levels or not all(0.0 < level <= 1.0 for level in levels):
        raise BlastwallCliError(f"--intensities must be comma-separated numbers in (0, 1], got {text!r}")
    defaults = CurveSettings()
    settings = CurveSettings(styles=styles, intensities=levels,
                             principals=defaults.principals if principals is None else principals,
                             days=defaults.days if days is None else days, step=step, jobs=jobs,
                             log_format=log_format)

    def progress(done: int, total: int, run: dict[str, Any]) -> None:
        what = "benign" if run["benign"] else f"intensity {intensity_key(run['intensity'])}"
        click.echo(f"[{done}/{total}] style {run['style']}, {what}: {run['replay']['seconds']:.0f} s, "
                   f"{run['false_pages']} false pages", err=True)

    report = evaluate_curves(settings, progress)
    if plot_path is not None:
        try:
            plot_curves(report, plot_path)
        except OSError as exc:
            raise BlastwallCliError(f"{plot_path}: cannot write the plot ({exc.strerror or exc})") from None
    click.echo(to_json(report) if as_json else format_curves(report))
    if plot_path is not None and not as_json:
        click.echo(f"plot written to {plot_path}")


_DIR_OPTION = click.option("--dir", "dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
                           help="Another folder of playbooks (repeatable), after the built-in library.")


@cli.group()
def playbook() -> None:
    """Write, test and run containment playbooks (YAML files with inline tests)."""


@playbook.command(name="list")
@_DIR_OPTION
@click.pass_context
def playbook_list(ctx: click.Context, dirs: tuple[Path, ...]) -> None:
    """Every playbook: id, triggers, steps (gated ones marked ?), and every problem found."""
    from playbooks.model import load_library

    library = load_library(_settings(ctx).playbook_folders(dirs))
    for pid, book in library.playbooks.items():
        triggers = book.spec.triggers
        steps = " -> ".join(s.name + ("?" if s.requires_approval else "") for s in book.spec.steps)
        condition = f" when {' and '.join(triggers.when)}" if triggers.when else ""
        click.echo(f"{pid:22} {','.join(triggers.detectors)} >= {triggers.min_severity}{condition}")
        click.echo(f"{'':22} {steps}")
    for problem in library.problems:
        click.echo(f"invalid: {problem}", err=True)
    if library.problems:
        sys.exit(1)


@playbook.command(name="test")
@click.argument("playbook_id", required=False)
@_DIR_OPTION
@click.pass_context
def playbook_test(ctx: click.Context, playbook_id: str | None, dirs: tuple[Path, ...]) -> None:
    """Validate every playbook (or one), check the invariants, run the inline tests.

    Exit 0 when all pass, 1 when any fails (every failure is listed with file and line).
    """
    from detector.rules import known_detectors
    from playbooks.model import test_library

    settings = _settings(ctx)
    report = test_library(settings.playbook_folders(dirs), only=playbook_id,
                          detectors=known_detectors(settings.rule_folders()))
    for problem in report.problems:
        click.echo(f"FAIL {problem}")
    click.echo(f"{len(report.checked)} playbooks, {report.tests} inline tests: "
               + ("all passed" if report.ok else f"{len(report.problems)} problems"))
    if not report.ok:
        sys.exit(1)


_INCIDENT_OPTION = click.option("--incident", "incident", required=True, metavar="INCIDENT",
                                help="The incident: its reference (INC-12) or its numeric id.")


@playbook.command(name="dry-run")
@click.argument("playbook_id")
@_INCIDENT_OPTION
@_DIR_OPTION
@click.pass_context
def playbook_dry_run(ctx: click.Context, playbook_id: str, incident: str, dirs: tuple[Path, ...]) -> None:
    """Show what a playbook would do for an incident; changes nothing."""
    from playbooks.engine import EngineError

    with _client(ctx, must_exist=True) as client:
        responder = _responder(ctx, client, dirs)
        incident_id = _incident(client, incident)
        try:
            planned, steps = responder.dry_run(playbook_id, incident_id)
        except EngineError as exc:
            raise BlastwallCliError(str(exc)) from None
        name = _names(client, [incident_id])[incident_id]
    if planned is None:
        click.echo(f"{playbook_id} does not match incident {name} (nothing would run)")
        return
    click.echo(f"dry run of {playbook_id} on incident {name} ({planned.severity}): "
               f"{len(steps)} steps, nothing executed")
    for number, step in enumerate(steps, 1):
        flags = [flag for flag, on in (("needs approval", step.planned.needs_approval),
                                       ("reversible", step.planned.reversible)) if on]
        done = f"  [already {step.state}]" if step.state else ""
        click.echo(f"  {number}. {step.planned.name}: {step.planned.description}"
                   + (f"  ({', '.join(flags)})" if flags else "") + done)


@playbook.command(name="run")
@click.argument("playbook_id")
@_INCIDENT_OPTION
@_DIR_OPTION
@click.pass_context
def playbook_run(ctx: click.Context, playbook_id: str, incident: str, dirs: tuple[Path, ...]) -> None:
    """Run (or continue) a playbook on an incident now; each step still runs at most once."""
    from datetime import UTC, datetime

    from playbooks.engine import EngineError

    with _client(ctx, must_exist=True) as client:
        responder = _responder(ctx, client, dirs)
        incident_id = _incident(client, incident)
        try:
            report = responder.run(playbook_id, incident_id, datetime.now(UTC), _actor())
        except EngineError as exc:
            raise BlastwallCliError(str(exc)) from None
        names = _names(client, [report.incident_id])
    _echo_run(report, names)


def _incident(client: Client, text: str) -> int:
    """The incident id of what a person typed: ``INC-12`` or a numeric id (one line when it is neither)."""
    from detector.incidents import IncidentError, resolve_incident

    try:
        return resolve_incident(client, text)
    except IncidentError as exc:
        raise BlastwallCliError(str(exc)) from None


def _run_id(client: Client, text: str) -> str:
    """A run id as typed, ``<incident>.<playbook>`` with the incident as ``INC-12`` or its id, as the engine has it."""
    head, dot, playbook_id = text.strip().partition(".")
    if not dot or (head.isascii() and head.isdigit()):
        return text  # the engine says when there is no such run
    return f"{_incident(client, head)}.{playbook_id}"


def _names(client: Client, incident_ids: list[int]) -> dict[int, str]:
    """How messages name these incidents: ``INC-12``, else (no reference) the id."""
    from detector.incidents import incident_refs

    refs = incident_refs(client, incident_ids)
    return {int(i): refs.get(int(i), str(i)) for i in incident_ids}


def _run_name(run_id: str, names: dict[int, str]) -> str:
    """A run id with its incident named for people (``INC-12.embedding_export``); approve/deny accept it."""
    head, dot, playbook_id = run_id.partition(".")
    return f"{names[int(head)]}.{playbook_id}" if dot and head.isdigit() and int(head) in names else run_id


def _echo_run(report, names: dict[int, str]) -> None:
    run_id = _run_name(report.run_id, names)
    click.echo(f"run {run_id}: {report.state}" + (f" ({report.error})" if report.error else ""))
    for step in report.steps:
        detail = step.error or (", ".join(f"{k}={v}" for k, v in step.result.items()) if step.result else "")
        click.echo(f"  {step.step:20} {step.state:18} {detail[:160]}")
    for step in [s.step for s in report.steps if s.state == "awaiting_approval"]:
        click.echo(f"  approve with: blastwall approve {run_id} {step}   "
                   f"(or: blastwall deny {run_id} {step} --reason ...)")
    for step in [s.step for s in report.steps if s.state == "interrupted"]:
        click.echo(f"  {step}: its outcome is unknown; check your system, then answer: "
                   f"blastwall approve {run_id} {step} (it took effect) or "
                   f"blastwall deny {run_id} {step} --reason ... (it did not)")


@playbook.command(name="new")
@click.argument("playbook_id")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write it. Default: the first `playbooks:` folder of the settings; in a "
              "source checkout, the built-in library.")
@click.pass_context
def playbook_new(ctx: click.Context, playbook_id: str, folder: Path | None) -> None:
    """Write a new playbook with a runbook and a positive and a negative test, ready to edit."""
    from playbooks import model

    _write_scaffold("playbook", playbook_id, folder, _settings(ctx).playbooks, model, "the live loop runs it")


def _write_scaffold(kind: str, item_id: str, folder: Path | None, configured: list[Path], module: Any,
                    who_runs_it: str) -> None:
    """``playbook new`` / ``rule new``: the scaffold into ``--dir``, else the first settings folder.

    ``module`` offers ``LIBRARY``, ``in_source_tree()`` and ``scaffold(id, target)``; only a
    source checkout writes into the built-in library, never an installed package.
    """
    if folder is None and configured:
        folder = configured[0]
    if folder is None and not module.in_source_tree():
        raise BlastwallCliError(f"say where to write it: --dir DIR (then add DIR to `{kind}s:` in the "
                                f"settings, so {who_runs_it})")
    target = (folder or module.LIBRARY) / f"{item_id}.yaml"
    try:
        module.scaffold(item_id, target)
    except (ValueError, OSError) as exc:
        raise BlastwallCliError(str(exc)) from None
    hint = f" --dir {folder}" if folder and folder not in configured else ""
    click.echo(f"wrote {target}; edit it, then: blastwall {kind} test {item_id}{hint}")


_RULE_DIR_OPTION = click.option("--dir", "dirs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
                                help="Another folder of rules (repeatable), after the built-in rules.")


@cli.group()
def rule() -> None:
    """Write and test detection rules (YAML files: a read-only query, inline tests)."""


@rule.command(name="list")
@_RULE_DIR_OPTION
@click.pass_context
def rule_list(ctx: click.Context, dirs: tuple[Path, ...]) -> None:
    """Every rule: id, entity, severity, techniques, and every problem found."""
    from detector.rules import load_rules

    library = load_rules(_settings(ctx).rule_folders(dirs))
    for rid, found in library.rules.items():
        spec = found.spec
        severity = spec.severity if isinstance(spec.severity, str) else f"{spec.severity.default} (by condition)"
        click.echo(f"{rid:28} {spec.entity:12} {severity:18} {','.join(spec.techniques) or '-'}")
        click.echo(f"{'':28} {found.path}")
    for problem in library.problems:
        click.echo(f"invalid: {problem}", err=True)
    if library.problems:
        sys.exit(1)


@rule.command(name="test")
@click.argument("rule_id", required=False)
@_RULE_DIR_OPTION
@click.pass_context
def rule_test(ctx: click.Context, rule_id: str | None, dirs: tuple[Path, ...]) -> None:
    """Validate every rule (or one), check the invariants, run the inline tests on a fresh store each.

    Exit 0 when all pass, 1 when any fails (every failure is listed with file and line).
    """
    from blastwall.rule_tests import run_rule_tests

    try:
        report = run_rule_tests(_settings(ctx).rule_folders(dirs), only=rule_id)
    except (StoreError, RuntimeError) as exc:
        raise BlastwallCliError(str(exc)) from None
    for problem in report.problems:
        click.echo(f"FAIL {problem}")
    click.echo(f"{len(report.checked)} rules, {report.tests} inline tests: "
               + ("all passed" if report.ok else f"{len(report.problems)} problems"))
    if not report.ok:
        sys.exit(1)


@rule.command(name="new")
@click.argument("rule_id")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write it. Default: the first `rules:` folder of the settings; in a "
              "source checkout, the built-in rules.")
@click.pass_context
def rule_new(ctx: click.Context, rule_id: str, folder: Path | None) -> None:
    """Write a new rule with a positive and a negative test, ready to edit."""
    from detector import rules

    _write_scaffold("rule", rule_id, folder, _settings(ctx).rules, rules, "detection runs it")


@cli.command()
@click.argument("run_id")
@click.argument("step")
@click.option("--reason", default="", help="Why (kept in the audit trail).")
@click.pass_context
def approve(ctx: click.Context, run_id: str, step: str, reason: str) -> None:
    """Approve a step awaiting approval; it executes now and the run continues.

    RUN_ID is INCIDENT.PLAYBOOK, the incident as its reference (INC-12) or its numeric id.
    """
    _decide(ctx, run_id, step, reason, approve=True)


@cli.command()
@click.argument("run_id")
@click.argument("step")
@click.option("--reason", required=True, help="Why not (kept in the audit trail).")
@click.pass_context
def deny(ctx: click.Context, run_id: str, step: str, reason: str) -> None:
    """Deny a step awaiting approval; it never runs and the run continues without it.

    RUN_ID is INCIDENT.PLAYBOOK, the incident as its reference (INC-12) or its numeric id.
    """
    _decide(ctx, run_id, step, reason, approve=False)


def _decide(ctx: click.Context, run_id: str, step: str, reason: str, approve: bool) -> None:
    from datetime import UTC, datetime

    from playbooks.engine import EngineError

    with _client(ctx, must_exist=True) as client:
        responder = _responder(ctx, client)
        engine_run_id = _run_id(client, run_id)
        try:
            decide = responder.approve if approve else responder.deny
            report = decide(engine_run_id, step, _actor(), datetime.now(UTC), reason=reason)
        except EngineError as exc:
            # Say it with the run as it was typed (INC-n.playbook), not the engine's long id.
            raise BlastwallCliError(str(exc).replace(engine_run_id, run_id)) from None
        names = _names(client, [report.incident_id])
    _echo_run(report, names)


@cli.command()
@click.argument("incident", metavar="INCIDENT")
@click.pass_context
def rollback(ctx: click.Context, incident: str) -> None:
    """Undo every reversible step the playbooks took on an INCIDENT (INC-12 or its id), newest first."""
    from datetime import UTC, datetime

    from playbooks.engine import EngineError

    with _client(ctx, must_exist=True) as client:
        responder = _responder(ctx, client)
        incident_id = _incident(client, incident)
        try:
            undone = responder.rollback_incident(incident_id, _actor(), datetime.now(UTC))
        except EngineError as exc:
            raise BlastwallCliError(str(exc)) from None
        names = _names(client, [incident_id])
    click.echo(f"rolled back {len(undone)} steps of incident {names[incident_id]}")
    for record in undone:
        click.echo(f"  {_run_name(record.run_id, names)} {record.step}: {record.result}")


@cli.command()
@click.pass_context
def respond(ctx: click.Context) -> None:
    """Page and run playbooks now for incidents opened (or risen in severity) since last handled."""
    from datetime import UTC, datetime

    settings = _settings(ctx)  # a bad settings file is told before the store is opened
    with _client(ctx, must_exist=True) as client:
        summary = settings.responder(client).respond(datetime.now(UTC), max_age=settings.respond_max_age)
        names = _names(client, sorted({report.incident_id for report in summary.runs}))
    click.echo(f"{summary.incidents} incidents handled: {len(summary.runs)} playbook runs, {summary.pages} pages"
               + (f", {summary.too_old} older than {settings.respond_max_age} (not acted on)" if summary.too_old
                  else ""))
    for report in summary.runs:
        click.echo(f"  {_run_name(report.run_id, names)}: {report.state}")
    for error in summary.errors:
        click.echo(f"  error: {error}", err=True)


@cli.command()
def sources() -> None:
    """The real log formats blastwall reads, and what each can and cannot see."""
    from features.sources import discover

    for source in discover().values():
        click.echo(f"{source.name}: {source.description}")
        click.echo(f"  sees:       {source.sees}")
        click.echo(f"  cannot see: {source.cannot_see}")
        if source.pulled_by:
            click.echo(f"  pulled by:  {source.pulled_by}")


# --- console accounts ------------------------------------------------------------------

#: blastwall.access.ROLES, spelled out so that starting the CLI does not load argon2 and
#: pydantic (tests/test_access.py holds the two equal).
_ROLES = ("viewer", "analyst", "responder", "admin")

_ACCOUNTS_FILE_OPTION = click.option(
    "--file", "path", type=click.Path(dir_okay=False, path_type=Path),
    help="The accounts file. Default: $BLASTWALL_ACCOUNTS, else accounts.yaml in the user config directory.")


def _accounts_file(path: Path | None) -> Path:
    from blastwall.access import default_accounts_path

    return path or default_accounts_path()


@cli.group()
def account() -> None:
    """Console sign-in: local accounts (argon2-hashed passwords) and their roles."""


@account.command(name="add")
@click.argument("user")
@click.option("--role", required=True, type=click.Choice(_ROLES),
              help="viewer reads; analyst also triages; responder also approves, runs and rolls back "
              "playbooks; admin does everything.")
@click.option("--name", default="", help="Display name (an existing account keeps its own if omitted).")
@_ACCOUNTS_FILE_OPTION
def account_add(user: str, role: str, name: str, path: Path | None) -> None:
    """Add a console account, or replace an existing USER's role and password.

    The password is asked for twice without echo, or read from $BLASTWALL_PASSWORD in
    scripts; only its argon2id hash is written (file mode 0600).
    """
    from blastwall.access import AccountsError, add_account, load_accounts

    target = _accounts_file(path)
    try:
        # A broken file is reported before anyone types a password.
        existed = target.exists() and load_accounts(target).get(user) is not None
    except AccountsError as exc:
        raise BlastwallCliError(str(exc)) from None
    from blastwall.environment import environment

    password = environment().password
    if not password:
        try:
            password = click.prompt(f"Password for {user}", hide_input=True, confirmation_prompt=True)
        except click.exceptions.Abort:
            raise BlastwallCliError("no password given (type it when asked, or set BLASTWALL_PASSWORD)") from None
    try:
        added = add_account(target, user, role, password, name=name)
    except AccountsError as exc:
        raise BlastwallCliError(str(exc)) from None
    except OSError as exc:
        raise BlastwallCliError(f"{target}: cannot write ({exc.strerror or exc})") from None
    click.echo(f"{'updated' if existed else 'added'} {added.user} ({added.role}) in {target}")


@account.command(name="list")
@_ACCOUNTS_FILE_OPTION
def account_list(path: Path | None) -> None:
    """List the console accounts and the OIDC role mapping (never the hashes)."""
    from blastwall.access import AccountsError, load_accounts

    target = _accounts_file(path)
    try:
        accounts = load_accounts(target)
    except AccountsError as exc:
        raise BlastwallCliError(str(exc)) from None
    users = accounts.users()
    if not users:
        click.echo(f"no local accounts in {target}")
    else:
        width = max(len("USER"), *(len(u.user) for u in users))
        click.echo(f"{'USER':<{width}}  {'ROLE':<9}  NAME")
        for found in users:
            click.echo(f"{found.user:<{width}}  {found.role:<9}  {found.name}")
    if accounts.oidc is not None:
        click.echo(f"oidc: default role {accounts.oidc.default_role or 'none (unlisted e-mails are refused)'}")
        for email, role in sorted(accounts.oidc.roles.items()):
            click.echo(f"  {email}: {role}")


def main() -> None:
    """Console-script entry point."""
    import logging

    # The driver logs a failure before raising it; we report it ourselves, in one line.
    logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
    logging.getLogger("clickhouse_connect").propagate = False
    try:
        cli.main(prog_name="blastwall", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("blastwall: aborted", err=True)
        sys.exit(1)
    except BlastwallCliError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        message = exc.format_message()
        path = exc.ctx.command_path.split(" ", 1) if exc.ctx else []
        hint = f" (see 'blastwall {path[1] + ' ' if len(path) > 1 else ''}--help')"
        click.echo(f"blastwall: {message}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        click.echo(f"blastwall: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
