"""Pressroom's command line, a composition root: `python -m cli <subcommand>` (installed: `pressroom …`)."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import signal
import socket
import sys
import threading
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from core.settings import Settings
from core.states import Role

log = logging.getLogger("cli")

ROOT = Path(__file__).resolve().parent
PROCFILE = ROOT / "Procfile"
ROLES = tuple(role.value for role in Role)
MIN_PASSWORD_LENGTH = 8
MAX_USERNAME_LENGTH = 80
PROCESS_PORTS = {"api": 8000, "dashboard": 8501, "worker": 9191, "render": 9192, "partners": 8100,
                 "carrier": 8200}
DEMO_PACE = {"BATCH_MAX_WAIT_S": "30", "RECONCILE_EVERY_S": "2", "QA_REVIEW_FIRST_PRINTS": "0"}
"""The embedded demo's pace (overridable from the environment): batches go within 30 s, not the 30 min a
production line waits to fill a batch, so a new user sees orders reach the partners in the first minute; and
the first prints of each (brand-new) template and partner are not all held for a human, so the first orders
reach the customer's door in minutes (borderline prints and the sampled share still go to QA review)."""
"""Ports the Procfile's processes bind on 127.0.0.1 (the two workers' for metrics): `run` refuses to start
if one is taken, rather than have that process die and honcho stop all the others."""
STOP_GRACE_S = 15.0
"""After Ctrl-C, how long processes get to stop before they are killed (honcho itself kills after 5 s once
one of them has stopped; this covers the case where none stops)."""


class CliError(Exception):
    """A failure with a sentence for the operator; printed without a traceback, exit status 1."""


Handler = Callable[[argparse.Namespace, Settings], int]


# --- subcommands ------------------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Bring the database schema to the latest revision."""
    from db.migrate import upgrade

    upgrade(settings.database_url)
    print(f"database migrated to the latest revision: {_redacted_url(settings.database_url)}")
    return 0


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate, then load the demo catalogue, partners and staff into an empty database."""
    seeded = _migrate_and_seed(settings)
    print("seeded the demo catalogue, partners, stock and staff" if seeded
          else "database already seeded: nothing changed")
    return 0


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> int:
    """Add a staff user with an argon2id password hash; refuses a username that exists."""
    from datetime import UTC, datetime

    from sqlalchemy import insert, inspect, select
    from sqlalchemy.exc import IntegrityError

    from adapters.passwords import hash_password
    from db import make_engine
    from db import tables as t

    username = args.username.strip()
    if not username or len(username) > MAX_USERNAME_LENGTH or any(c.isspace() for c in username):
        raise CliError(f"username must be 1–{MAX_USERNAME_LENGTH} characters without spaces")
    duplicate = CliError(f"staff user {username!r} already exists; choose another username")
    users = t.staff_users
    engine = make_engine(settings.database_url)
    try:
        if not inspect(engine).has_table(users.name):
            raise CliError("the database has no staff_users table yet: run `python -m cli migrate` first")
        with engine.connect() as conn:  # refuse before asking for a password
            if conn.scalar(select(users.c.username).where(users.c.username == username)):
                raise duplicate
        password = args.password if args.password is not None else _prompt_password()
        if len(password) < MIN_PASSWORD_LENGTH:
            raise CliError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
        password_hash = hash_password(password)  # outside the transaction: argon2 is slow on purpose
        with engine.begin() as conn:
            conn.execute(insert(users).values(username=username, role=Role(args.role),
                                              password_hash=password_hash, active=True, failed_logins=0,
                                              created_at=datetime.now(UTC)))
    except IntegrityError as exc:  # a concurrent create-user won the race for the primary key
        raise duplicate from exc
    finally:
        engine.dispose()
    print(f"created staff user {username!r} with role {args.role}")
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Run the storefront load generator (sims/storefront.py) with the remaining arguments."""
    from sims.storefront import main as storefront_main

    return storefront_main(list(args.simulator_args))


def cmd_demo_logins(args: argparse.Namespace, settings: Settings) -> int:
    """Print the demo staff accounts that `seed` creates."""
    print(_demo_logins_table())
    return 0


def cmd_redis(args: argparse.Namespace, settings: Settings) -> int:
    """Run the embedded Redis in the foreground until Ctrl-C (or say which Redis already answers)."""
    from workers.embedded_redis import EmbeddedRedisError, ensure_redis

    try:
        handle = ensure_redis(settings.redis_url, data_dir=ROOT / "var" / "redis")
    except EmbeddedRedisError as exc:
        raise CliError(str(exc)) from exc
    if not handle.spawned:
        print(f"a Redis already answers at REDIS_URL ({_redacted_url(handle.url)}): nothing to start")
        return 0
    assert handle.process is not None
    print(f"embedded Redis (pid {handle.process.pid}) at {handle.url}; Ctrl-C stops it", flush=True)
    with _sigterm_as_keyboard_interrupt():
        try:
            code = handle.process.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            handle.stop()
    raise CliError(f"redis-server exited by itself with code {code}; see {handle.log_path}")


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the whole system on the embedded default; Ctrl-C stops every process, Redis included."""
    from workers.embedded_redis import EmbeddedRedisError, ensure_redis

    os.chdir(ROOT)  # the Procfile, var/ and the default SQLite URL are relative to the project folder
    (ROOT / "var").mkdir(exist_ok=True)
    processes = _procfile_processes(args.processes)
    taken = [f"{port} ({name})" for name, port in PROCESS_PORTS.items()
             if name in processes and _port_in_use(port)]
    if taken:
        raise CliError(f"port(s) already in use on 127.0.0.1: {', '.join(taken)}. "
                       "Is Pressroom already running? Stop it first.")
    redis_handle = None
    with _sigterm_as_keyboard_interrupt():
        try:
            _migrate_and_seed(settings)
            try:
                redis_handle = ensure_redis(settings.redis_url, data_dir=ROOT / "var" / "redis")
            except EmbeddedRedisError as exc:
                raise CliError(str(exc)) from exc
            print(_banner(settings, redis_handle.url, spawned=redis_handle.spawned), flush=True)
            return _run_procfile(processes, _process_env(settings, redis_handle.url), settings)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping", flush=True)
            return 130
        finally:
            if redis_handle is not None:
                redis_handle.stop()


def cmd_rotate_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Re-encrypt every PII column with the first key of PRESSROOM_PII_KEYS; exit 1 if any row is unreadable."""
    from tqdm import tqdm

    import db
    from db.pii import count_pii_rows, rotate_keys

    db.configure(settings)
    engine = db.make_engine(settings.database_url)
    try:
        with tqdm(total=count_pii_rows(engine), unit="row", desc="rotating PII", file=sys.stderr) as bar:
            report = rotate_keys(engine, settings.pii_keys, batch_size=args.batch_size, progress=bar.update)
    finally:
        engine.dispose()
    for table, counts in report.per_table.items():
        print(f"  {table}: {counts['rows']} rows, {counts['rotated']} rotated, {counts['unreadable']} unreadable")
    print(f"rows rotated: {report.rows_rotated}; already under the current key: {report.rows_current}; "
          f"unreadable: {report.rows_unreadable}")
    if report.unreadable:
        raise CliError(f"{report.rows_unreadable} row(s) no key in PRESSROOM_PII_KEYS can read (left as they "
                       f"were): {', '.join(report.unreadable[:20])}; add the key they were written with")
    return 0


def cmd_erase_customer(args: argparse.Namespace, settings: Settings) -> int:
    """Erase a customer's PII (erasure request): orders kept pseudonymised, their objects deleted."""
    from datetime import UTC, datetime

    import db
    from adapters.objectstore import make_object_store
    from db.pii import CustomerNotFound, OrdersStillOpen, erase_customer

    db.configure(settings)
    engine = db.make_engine(settings.database_url)
    try:
        report = erase_customer(engine, make_object_store(settings), email=args.email, actor=args.actor,
                                now=datetime.now(UTC), include_open_orders=args.include_open_orders)
    except OrdersStillOpen as exc:
        raise CliError(f"{exc.message}; nothing was changed (--include-open-orders erases anyway)") from exc
    except CustomerNotFound as exc:
        raise CliError(exc.message) from exc
    finally:
        engine.dispose()
    print(f"erased customer {', '.join(report.customer_ids)}: {report.orders} order(s) kept pseudonymised, "
          f"{report.objects} object(s) deleted ({report.object_versions} version(s)), "
          f"{report.prepared_versions} QA prepared copy(ies) of their prints deleted, "
          f"{report.inbox_bodies} webhook body(ies) scrubbed")
    return 0


def cmd_export_customer(args: argparse.Namespace, settings: Settings) -> int:
    """Print everything held about a customer as JSON (access request), decrypted."""
    import json

    import db
    from db.pii import CustomerNotFound, export_customer

    db.configure(settings)
    engine = db.make_engine(settings.database_url)
    try:
        document = export_customer(engine, email=args.email)
    except CustomerNotFound as exc:
        raise CliError(exc.message) from exc
    finally:
        engine.dispose()
    print(json.dumps(document, indent=2, ensure_ascii=False, default=str))
    return 0


# --- run: processes -----------------------------------------------------------------------------------------


def _process_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment every Procfile process gets: ours, plus the resolved Redis and this venv on PATH."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (".", env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # their output goes through a pipe to honcho: no block buffering
    env["REDIS_URL"] = redis_url
    env["DATABASE_URL"] = settings.database_url
    for name, value in DEMO_PACE.items():
        env.setdefault(name, value)
    return env


def _procfile_processes(only: Sequence[str] = ()) -> dict[str, str]:
    """The Procfile's processes (name → command), or just those named in `only`."""
    from honcho.environ import parse_procfile

    if not PROCFILE.is_file():
        raise CliError(f"no Procfile at {PROCFILE}: `run` works from a checkout of the repository")
    processes = dict(parse_procfile(PROCFILE.read_text()).processes)
    unknown = sorted(set(only) - set(processes))
    if unknown:
        raise CliError(f"not in {PROCFILE.name}: {', '.join(unknown)} (it has {', '.join(processes)})")
    return {name: cmd for name, cmd in processes.items() if not only or name in only}


def _run_procfile(processes: dict[str, str], env: dict[str, str], settings: Settings) -> int:
    """Start every Procfile process with honcho and block until they have all stopped.

    honcho puts each process in its own process group, stops them all when it gets SIGINT/SIGTERM or as soon
    as one of them exits (here with SIGINT to every group, as a terminal's Ctrl-C would), and SIGKILLs the
    rest 5 s after the first has stopped; a watchdog SIGKILLs whatever is left after STOP_GRACE_S anyway.
    """
    from honcho.compat import ProcessManager
    from honcho.environ import expand_processes
    from honcho.manager import Manager
    from honcho.printer import Printer

    class _InterruptLikeATerminal(ProcessManager):
        # honcho sends SIGTERM to each process group, so a Dramatiq worker subprocess gets SIGTERM twice (from
        # honcho and from its master) and takes the second as "kill now". Ctrl-C in a terminal sends SIGINT
        # to the group instead, which Dramatiq's subprocesses ignore while the master stops them gracefully,
        # and which uvicorn, Streamlit, the scheduler and the sims all treat as "stop".
        def terminate(self, pid: int) -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
                os.killpg(pid, signal.SIGINT)

    class _Manager(Manager):
        _watchdog: threading.Timer | None = None

        def __init__(self, printer: Printer) -> None:
            super().__init__(printer)
            self._procmgr = _InterruptLikeATerminal()

        def terminate(self) -> None:
            super().terminate()
            if self._watchdog is None:
                self._watchdog = threading.Timer(STOP_GRACE_S, self.kill)
                self._watchdog.daemon = True
                self._watchdog.start()

    manager = _Manager(Printer(sys.stdout, colour=sys.stdout.isatty()))
    for process in expand_processes(processes, env=env):
        manager.add_process(process.name, process.cmd, quiet=process.quiet, env={**env, **process.env},
                            cwd=str(ROOT))
    stop_announcer = threading.Event()
    threading.Thread(target=_announce_when_ready, args=(settings, stop_announcer), daemon=True).start()
    try:
        manager.loop()
    except BaseException:
        manager.kill()
        raise
    finally:
        stop_announcer.set()
        if manager._watchdog is not None:
            manager._watchdog.cancel()
    return manager.returncode or 0


def _announce_when_ready(settings: Settings, stop: threading.Event, timeout_s: float = 180.0) -> None:
    # The start banner scrolls away under the processes' output: repeat the URLs once the API answers.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP proxy
    waited = 0.0
    while not stop.is_set() and waited < timeout_s:
        try:
            with opener.open(f"{settings.api_url}/healthz", timeout=1) as response:
                if response.status == 200:
                    print(f"\n*** Pressroom is up: API {settings.api_url}/docs · dashboard "
                          f"{settings.dashboard_url} · `python -m cli demo-logins` lists the staff logins · "
                          "Ctrl-C stops everything\n", flush=True)
                    return
        except OSError:
            pass
        stop.wait(1.0)
        waited += 1.0


def _banner(settings: Settings, redis_url: str, *, spawned: bool) -> str:
    redis_note = "embedded redis-server, stopped on exit" if spawned else "already running; left as is"
    return "\n".join([
        "",
        "Pressroom (embedded default)",
        f"  API        {settings.api_url}/docs",
        f"  dashboard  {settings.dashboard_url}",
        f"  database   {_redacted_url(settings.database_url)}",
        f"  redis      {_redacted_url(redis_url)} ({redis_note})",
        "",
        _demo_logins_table(),
        "",
        f"Starting the processes in {PROCFILE.name}; Ctrl-C stops them all (and so does any one of them"
        " exiting).",
        "",
    ])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- helpers ------------------------------------------------------------------------------------------------


def _migrate_and_seed(settings: Settings) -> bool:
    from adapters.passwords import hash_password
    from db import make_engine
    from db.migrate import upgrade
    from db.seed import seed

    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        return seed(engine, hash_password=hash_password)
    finally:
        engine.dispose()


def _demo_logins_table() -> str:
    from db.seed import demo_logins

    users = demo_logins()
    width = max(len(u["username"]) for u in [*users, {"username": "username"}]) + 2
    role_width = max(len(u["role"]) for u in users) + 2
    lines = ["Demo staff logins (public demo credentials; use `create-user` for real staff in production):",
             f"  {'username'.ljust(width)}{'role'.ljust(role_width)}password"]
    lines += [f"  {u['username'].ljust(width)}{u['role'].ljust(role_width)}{u['password']}" for u in users]
    return "\n".join(lines)


def _prompt_password() -> str:
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise CliError("the two passwords differ; nothing was created")
    return first


def _redacted_url(url: str) -> str:
    from urllib.parse import urlsplit

    password = urlsplit(url).password
    return url.replace(f":{password}@", ":***@") if password else url


class _sigterm_as_keyboard_interrupt:  # noqa: N801 - used like a function: `with _sigterm_as_…():`
    """Within the block, SIGTERM unwinds like Ctrl-C, so `finally` clauses stop what we started."""

    def __enter__(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    def __exit__(self, *exc_info: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


# --- parser -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cli", description="Pressroom: print-on-demand operations control room.",
        epilog="Settings come from the environment (DATABASE_URL, REDIS_URL, …): see README.md.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<subcommand>")

    def add(name: str, handler: Handler, help_text: str, **kwargs: object) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text, **kwargs)
        command.set_defaults(handler=handler)
        return command

    add("migrate", cmd_migrate, "bring the database schema to the latest revision")
    add("seed", cmd_seed, "migrate, then load the demo catalogue, partners and staff (once)")
    create_user = add("create-user", cmd_create_user, "add a staff user (argon2id password hash)")
    create_user.add_argument("username")
    create_user.add_argument("--role", required=True, choices=ROLES, help="the user's role")
    create_user.add_argument("--password", help="the password (default: prompted twice, not echoed)")
    add("simulate", cmd_simulate, "run the storefront load generator; all further arguments "
        "(--count, --rate, --url, …) go to it: `python -m cli simulate --help`", add_help=False)
    add("redis", cmd_redis, "run the embedded Redis in the foreground on REDIS_URL's port")
    run = add("run", cmd_run, "run the whole system on the embedded default (what `make run` does)")
    run.add_argument("processes", nargs="*", metavar="PROCESS",
                     help="run only these Procfile processes (default: all), e.g. `run api dashboard`")
    add("demo-logins", cmd_demo_logins, "print the demo staff logins that `seed` creates")
    rotate = add("rotate-keys", cmd_rotate_keys, "re-encrypt every PII column with the first key of "
                 "PRESSROOM_PII_KEYS (resumable; exit 1 if a row is unreadable)")
    rotate.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")
    erase = add("erase-customer", cmd_erase_customer, "erase a customer's PII (orders kept pseudonymised, "
                "their labels, QA photos and personal print files deleted in every version)")
    erase.add_argument("--email", required=True, help="the customer's e-mail address")
    erase.add_argument("--actor", default="cli", help="who asked (for the audit log; default: cli)")
    erase.add_argument("--include-open-orders", action="store_true",
                       help="erase even if orders are not yet delivered, cancelled or failed")
    export = add("export-customer", cmd_export_customer, "print everything held about a customer as JSON")
    export.add_argument("--email", required=True, help="the customer's e-mail address")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse `argv`; everything after `simulate` is kept verbatim for the simulator."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "simulate":
        args.simulator_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command != "simulate":  # the simulator configures its own (quieter) logging
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin: noise
    try:
        settings = Settings.from_env(os.environ)
    except ValueError as exc:  # production without keys, or a malformed number
        print(f"error: settings: {exc}", file=sys.stderr)
        return 2
    try:
        return args.handler(args, settings)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
