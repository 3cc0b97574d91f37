"""``smiling-steps``: run the service and administer it from the command line.

Every command exits 0 on success, 2 with one line on stderr for bad input or settings,
and 1 with one line when something outside (database) fails.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeVar

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from core.config import ConfigError, Settings, ensure_secret_key, load_settings
from core.db.migrate import head_revision, upgrade
from core.domain.phone import InvalidPhoneNumber, mask_phone
from core.domain.slots import InvalidHours, format_weekly_hours, parse_weekly_hours
from core.logging import configure_logging
from core.runtime import Runtime, build_runtime
from core.services.booking.directory import DirectoryError, add_therapist, list_therapists, seed_demo_data
from core.services.ops.admins import FIRST_ADMIN_USERNAME, AdminError, create_admin, ensure_first_admin
from core.services.ops.privacy import PrivacyError
from smiling_steps.demo.names import SCENARIO_NAMES
from smiling_steps.local_mode import banner, seed_demo, seed_if_empty

T = TypeVar("T")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
USER_ERRORS = (ConfigError, DirectoryError, InvalidPhoneNumber, InvalidHours, AdminError, PrivacyError)


class UsageError(Exception):
    """Bad command-line input."""


class DatabaseUnusable(Exception):
    """The database cannot be used: unreachable, or its schema is older than this code."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The command tree of DESIGN.md §4."""
    parser = _Parser(prog="smiling-steps", description="Smiling Steps booking and payment service")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the web server, bots and workers")
    serve.add_argument(
        "--role", type=_role, default=None,
        help="all (default, or SERVE_ROLE): everything; web: the HTTP site; worker: background work",
    )
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations")

    admin = sub.add_parser("admin", help="admin users").add_subparsers(dest="admin_command", required=True)
    create = admin.add_parser("create", help="create an admin (password read from stdin)")
    create.add_argument("--username", required=True)

    therapists = sub.add_parser("therapists", help="therapists").add_subparsers(
        dest="therapists_command", required=True
    )
    add = therapists.add_parser("add", help="register a therapist")
    add.add_argument("--name", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--phone", required=True)
    add.add_argument("--telegram-user-id", type=_positive_int)
    add.add_argument("--hours", help="weekly hours, e.g. 'mon-fri 09:00-17:00; sat 10:00-13:00'")
    therapists.add_parser("list", help="list therapists")

    sub.add_parser("seed-demo-data", help="session types and two sample therapists")
    clients = sub.add_parser("clients", help="clients").add_subparsers(dest="clients_command", required=True)
    forget = clients.add_parser("forget", help="anonymise a client (receipts and amounts are kept)")
    forget.add_argument("--id", type=_positive_int, required=True, dest="client_id")
    demo = sub.add_parser("demo", help="local mode with demo data: migrate, seed, serve; or run a scenario")
    demo.add_argument("--scenario", nargs="?", const="happy", choices=SCENARIO_NAMES,
                      help="run a scripted end-to-end scenario (default: happy)")
    demo.add_argument("--url", help="with --scenario: a running local-mode serve (default: start one)")

    audit = sub.add_parser("audit", help="the tamper-evident audit trail").add_subparsers(
        dest="audit_command", required=True
    )
    audit.add_parser("verify", help="recompute the hash chain; exit 1 at the first broken entry")
    export = audit.add_parser("export", help="write the trail as JSON Lines with hashes")
    export.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")

    reconcile = sub.add_parser("reconcile", help="compare our payments with M-Pesa's records")
    reconcile.add_argument("--statement", help="M-Pesa org portal statement export (CSV)")
    reconcile.add_argument("--report", help="write the detailed report here (CSV)")
    reconcile.add_argument("--no-query", action="store_true", help="do not STK Query open attempts")
    reconcile.add_argument(
        "--environment",
        choices=("production", "sandbox", "simulator"),
        help="which payments to reconcile (default: the mode saved on the admin site, or MPESA_ENVIRONMENT)",
    )

    simulate = sub.add_parser("simulate", help="run a simulator on its own").add_subparsers(
        dest="simulator", required=True
    )
    daraja = simulate.add_parser("daraja", help="the Daraja (M-Pesa) simulator")
    daraja.add_argument("--port", type=_port, default=8090)
    daraja.add_argument("--host", default="127.0.0.1")
    daraja.add_argument("--callback-delay", type=float, default=1.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smiling-steps`` console script."""
    try:
        args = build_parser().parse_args(argv)
        settings = load_settings()
        # one-shot commands print their own results; only long-running ones report in the log
        configure_logging(settings.log_level if args.command in ("serve", "simulate") else "WARNING")
        return COMMANDS[args.command](args, settings)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except DatabaseUnusable as exc:
        return _fail(f"smiling-steps: {exc}", EXIT_FAILURE)
    except USER_ERRORS as exc:
        return _fail(f"smiling-steps: {exc}", EXIT_USAGE)
    except OperationalError as exc:
        return _fail(f"smiling-steps: database unavailable: {_first_line(exc.orig or exc)}", EXIT_FAILURE)
    except SQLAlchemyError as exc:
        return _fail(f"smiling-steps: database error: {_first_line(exc)}", EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail("smiling-steps: interrupted", EXIT_FAILURE)


# -- commands ----------------------------------------------------------------------


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from smiling_steps.app import NotMigrated, create_app, prepare_database
    from smiling_steps.roles import Role, parse_role
    from smiling_steps.server import run_server

    role = getattr(args, "role", None) or parse_role(settings.serve_role)
    settings = settings.model_copy(update={"serve_role": role.value})  # --role wins over SERVE_ROLE
    ensure_secret_key(settings)
    # Only a process serving the site upgrades a local-mode database; a worker started beside
    # it waits for that (two processes migrating one file at once would collide).
    upgrades = settings.local_mode and role is not Role.WORKER
    try:  # check the schema before binding the port, so a refusal is one clean line
        if role is Role.WORKER and settings.local_mode:
            _run_db(settings, _wait_migrated)
        _run_db(settings, lambda rt: prepare_database(rt, auto_upgrade=upgrades))
    except NotMigrated as exc:
        return _fail(f"smiling-steps: {exc}", EXIT_FAILURE)
    # Local mode: a newcomer can sign in at once (the one-time password goes to this console
    # banner only, never through the JSON logger), and an empty database gets the demo data.
    first_password = _run_db(settings, ensure_first_admin) if upgrades else None
    seeded = _run_db(settings, seed_if_empty) if upgrades else None
    app = create_app(settings, role=role)
    if role is Role.WORKER:
        text = f"smiling-steps worker: background work; /healthz and /metrics on port {settings.port}"
    else:
        text = banner(settings, seeded, _admin_line(settings, first_password))

    async def _started(_app: object) -> None:  # after every start-up step, before listening
        print(text, file=sys.stderr, flush=True)

    app.on_startup.append(_started)
    # time-outs and the event loop (EVENT_LOOP): smiling_steps/server.py
    run_server(app, settings.bind_host, settings.port, event_loop=settings.event_loop)
    return EXIT_OK


async def _wait_migrated(runtime: Runtime, within_s: float = 60.0) -> None:
    """A local-mode worker: wait (bounded) for the web process to create or upgrade the schema."""
    from core.db.migrate import is_up_to_date

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        try:
            if await is_up_to_date(runtime.engine):
                return
        except SQLAlchemyError:
            pass  # the file is being created or migrated right now
        await asyncio.sleep(0.25)


def _admin_line(settings: Settings, first_password: str | None) -> str:
    url = f"{settings.base_url}/admin/"
    if first_password is None:
        return f"{url} (sign in as an admin; new admins: smiling-steps admin create)"
    return (
        f"{url} user '{FIRST_ADMIN_USERNAME}', one-time password {first_password} "
        "(shown only now; keep it or create your own admin with: smiling-steps admin create)"
    )


def _db(args: argparse.Namespace, settings: Settings) -> int:
    _run_db(settings, lambda rt: upgrade(rt.engine))
    print(f"database at revision {head_revision()}")
    return EXIT_OK


def _admin(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password()
    admin_id = _run_db(
        settings,
        lambda rt: create_admin(rt.uow(), username=args.username, password=password),
        migrate=True,
    )
    print(f"admin '{args.username}' created (id {admin_id})")
    return EXIT_OK


def _therapists(args: argparse.Namespace, settings: Settings) -> int:
    if args.therapists_command == "add":
        hours = parse_weekly_hours(args.hours) if args.hours else None
        view = _run_db(
            settings,
            lambda rt: add_therapist(
                rt.uow(),
                name=args.name,
                email=args.email,
                phone=args.phone,
                telegram_user_id=args.telegram_user_id,
                weekly_hours=hours,
            ),
            migrate=True,
        )
        print(f"therapist {view.id} added: {view.name}")
        if view.telegram_link_code:
            print(f"Telegram link: send the bot  /start {view.telegram_link_code}")
        return EXIT_OK
    rows = _run_db(settings, lambda rt: list_therapists(rt.uow()), migrate=True)
    if not rows:
        print("no therapists yet (try: smiling-steps seed-demo-data)")
    for t in rows:
        telegram = f"telegram {t.telegram_user_id}" if t.telegram_user_id else "telegram not linked"
        state = "active" if t.active else "inactive"
        print(
            f"{t.id:>4}  {t.name:<24} {t.email:<32} {mask_phone(t.phone)}  {telegram}  {state}  "
            f"[{format_weekly_hours(t.weekly_hours)}]"
        )
    return EXIT_OK


def _seed(_args: argparse.Namespace, settings: Settings) -> int:
    types, therapists = _run_db(settings, lambda rt: seed_demo_data(rt.uow()), migrate=True)
    print(f"demo data: {types} session types and {therapists} therapists added")
    return EXIT_OK


def _clients(args: argparse.Namespace, settings: Settings) -> int:
    from core.services.ops.privacy import anonymise_client

    report = _run_db(settings, lambda rt: anonymise_client(rt.uow(), args.client_id, actor="system:cli"),
                     migrate=True)
    print(f"client {report.client_id} anonymised: {report.attempts_masked} payment(s) kept with masked "
          f"phone, {report.messages_dropped} queued or failed message(s) dropped")
    return EXIT_OK


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.scenario is not None:  # a scripted walk-through against local mode (smiling_steps.demo)
        from smiling_steps.demo.runner import run_demo

        return run_demo(args.scenario, url=args.url)
    if args.url is not None:
        raise UsageError("smiling-steps demo: --url goes with --scenario")
    if not settings.local_mode:
        raise UsageError("smiling-steps: demo runs in local mode only (unset MPESA_ENVIRONMENT)")
    seeded = _run_db(settings, seed_demo, migrate=True)
    who = ", ".join(f"{name} is Telegram user {uid}" for name, uid in seeded.chat_users)
    print(f"demo data: {seeded.session_types} session types and {seeded.practitioners} therapists added; "
          f"in the chat {who}", flush=True)
    return _serve(args, settings)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from core.services.audit import export_jsonl, format_verify_result, verify_chain

    if args.audit_command == "verify":
        line, code = format_verify_result(_run_db(settings, lambda rt: verify_chain(rt.uow())))
        print(line, file=sys.stdout if code == 0 else sys.stderr)
        return code

    async def _export(rt: Runtime) -> int:
        if args.output == "-":
            return await export_jsonl(rt.uow(), sys.stdout)
        with open(args.output, "w", encoding="utf-8") as out:  # noqa: ASYNC230 (CLI, nothing else runs)
            return await export_jsonl(rt.uow(), out)

    count = _run_db(settings, _export)
    if args.output != "-":
        print(f"{count} audit entries written to {args.output}")
    return EXIT_OK


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from core.services.reconciliation.report import ReconciliationReport
    from core.services.reconciliation.runs import ReconciliationRequest, reconcile_with_saved_settings
    from core.services.reconciliation.statement_csv import StatementError
    from core.services.settings.crypto import SettingsCipher
    from core.services.settings.gateway import ConfiguredDaraja
    from core.services.settings.mpesa import MpesaSettings

    statement = None
    if args.statement:
        try:
            with open(args.statement, "rb") as handle:
                statement = handle.read(11 * 1024 * 1024)
        except OSError as exc:
            raise UsageError(f"smiling-steps: cannot read {args.statement}: {exc.strerror}") from None
    if statement is None and args.no_query:
        raise UsageError("smiling-steps: nothing to compare: give --statement or allow STK Query")
    secret_key = ensure_secret_key(settings)

    async def _go(rt: Runtime) -> ReconciliationReport:
        # The mode and credentials saved on the admin settings page win, as for payments.
        gateway = ConfiguredDaraja(MpesaSettings(rt, SettingsCipher(secret_key)))
        try:
            environment = args.environment or await gateway.settings.active_environment()
            wanted = ReconciliationRequest(environment, statement, use_query=not args.no_query)
            return await reconcile_with_saved_settings(rt, gateway, wanted, actor="system")
        finally:
            await gateway.aclose()

    try:
        report = _run_db(settings, _go, migrate=True)
    except StatementError as exc:
        raise UsageError(f"smiling-steps: statement rejected: {exc}") from None
    print(report.summary())
    if args.report:
        with open(args.report, "w", newline="", encoding="utf-8") as out:
            report.to_csv(out)
        print(f"report written to {args.report}")
    return EXIT_OK if report.ok else EXIT_FAILURE


def _simulate(args: argparse.Namespace, _settings: Settings) -> int:
    from simulators.daraja import run_standalone

    run_standalone(args.host, args.port, callback_delay=args.callback_delay)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": _serve,
    "db": _db,
    "admin": _admin,
    "therapists": _therapists,
    "seed-demo-data": _seed,
    "demo": _demo,
    "clients": _clients,
    "audit": _audit,
    "reconcile": _reconcile,
    "simulate": _simulate,
}


# -- helpers -----------------------------------------------------------------------


def _run_db(settings: Settings, work: Callable[[Runtime], Awaitable[T]], *, migrate: bool = False) -> T:
    """Run ``work`` with a runtime on a fresh loop; ``migrate`` upgrades local-mode databases."""

    async def _go() -> T:
        runtime = build_runtime(settings)
        try:
            if migrate:
                from smiling_steps.app import NotMigrated, prepare_database

                try:
                    await prepare_database(runtime, auto_upgrade=settings.local_mode)
                except NotMigrated as exc:
                    raise DatabaseUnusable(str(exc)) from None
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(_go())
    except OSError as exc:  # asyncpg reports an unreachable server unwrapped (refused, DNS, time-out)
        raise DatabaseUnusable(f"database unavailable: {_first_line(exc)}") from None


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise AdminError("the two passwords differ")
        return first
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise AdminError('no password on stdin (pipe it in: echo "$PW" | smiling-steps admin create …)')
    return line


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' must be positive")
    return value


def _role(text: str) -> object:
    from smiling_steps.roles import parse_role

    try:
        return parse_role(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not a TCP port")
    return value


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
