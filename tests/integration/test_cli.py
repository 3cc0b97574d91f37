"""The real ``smiling-steps`` console script, run as a subprocess in an empty directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from core.db.migrate import head_revision
from core.services.booking.directory import DEMO_THERAPISTS
from tests.factories import create_pg_database, drop_pg_database

PG_URL = os.environ.get("TEST_DATABASE_URL")
SCRIPT = shutil.which("smiling-steps", path=str(Path(sys.executable).parent)) or "smiling-steps"
# Outside local mode: Daraja sandbox credentials and a secret key are given.
SANDBOX = {
    "MPESA_ENVIRONMENT": "sandbox",
    "MPESA_CONSUMER_KEY": "test-consumer-key",
    "MPESA_CONSUMER_SECRET": "test-consumer-secret",
    "SECRET_KEY": "UGNcPTHOh4H7RvzVvRQDFhjCl_Ku2N5NWsKldVX9qaY",  # secrets.token_urlsafe(32)
}
DEMO_PHONES = [phone for _name, _email, phone in DEMO_THERAPISTS]


def clean_env(**extra: str) -> dict[str, str]:
    """The parent environment without any of the service's own variables, plus ``extra``."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")}
    return {**keep, **extra}


def run(cwd: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SCRIPT, *args],
        cwd=cwd,
        env=clean_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def assert_one_line_failure(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory (the CLI must not depend on the repository's files)."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def empty_pg_url():
    """A new, never-migrated PostgreSQL database; skipped without TEST_DATABASE_URL."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL not set")
    url = asyncio.run(create_pg_database(PG_URL))
    yield url
    asyncio.run(drop_pg_database(url))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cli_database_url(request: pytest.FixtureRequest, workdir: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(workdir / "cli.db")
    return request.getfixturevalue("empty_pg_url")


def test_the_console_script_is_installed():
    assert Path(SCRIPT).is_file() and os.access(SCRIPT, os.X_OK), SCRIPT


# -- the happy path ------------------------------------------------------------------------------


def test_upgrade_seed_and_list_show_the_demo_therapists_with_masked_phones(workdir, cli_database_url):
    db = {"DATABASE_URL": cli_database_url}
    assert f"revision {head_revision()}" in assert_ok(run(workdir, "db", "upgrade", **db))
    assert "3 session types and 2 therapists added" in assert_ok(run(workdir, "seed-demo-data", **db))
    assert "0 session types and 0 therapists added" in assert_ok(run(workdir, "seed-demo-data", **db))
    listing = run(workdir, "therapists", "list", **db)
    out = assert_ok(listing)
    assert "Dr. Amani Wanjiku" in out and "Brian Otieno" in out
    assert len(out.strip().splitlines()) == 2
    assert "mon 09:00-17:00" in out and "fri 09:00-17:00" in out and "sat" not in out
    for phone in DEMO_PHONES:
        local, international = phone, "254" + phone[1:]
        assert "********" + phone[-4:] in out
        for raw in (local, international, international[3:]):
            assert raw not in out + listing.stderr


def test_therapists_add_with_hours_telegram_id_or_link_code_and_no_duplicates(workdir):
    # a fresh database in local mode: the first command migrates it by itself
    db = {"DATABASE_URL": sqlite_url(workdir / "add.db")}
    added = assert_ok(
        run(
            workdir,
            "therapists",
            "add",
            "--name",
            "Wanjiru Kamau",
            "--email",
            "wanjiru@example.org",
            "--phone",
            "+254 722 123 456",
            "--hours",
            "mon-fri 08:00-12:00; sat 10:00-13:00",
            "--telegram-user-id",
            "987654321",
            **db,
        )
    )
    assert "added: Wanjiru Kamau" in added
    assert "/start" not in added  # the Telegram account is already known: no link code
    linked = assert_ok(
        run(
            workdir,
            "therapists",
            "add",
            "--name",
            "Otieno Odhiambo",
            "--email",
            "otieno@example.org",
            "--phone",
            "0110987650",
            **db,
        )
    )
    assert "/start " in linked
    duplicate = run(
        workdir,
        "therapists",
        "add",
        "--name",
        "Someone Else",
        "--email",
        "otieno@example.org",
        "--phone",
        "0110987651",
        **db,
    )
    assert "already exists" in assert_one_line_failure(duplicate, 2)

    out = assert_ok(run(workdir, "therapists", "list", **db))
    (wanjiru,) = (line for line in out.splitlines() if "Wanjiru Kamau" in line)
    (otieno,) = (line for line in out.splitlines() if "Otieno Odhiambo" in line)
    assert "telegram 987654321" in wanjiru and "mon 08:00-12:00" in wanjiru and "sat 10:00-13:00" in wanjiru
    assert "sun" not in wanjiru
    assert "telegram not linked" in otieno
    assert "mon 09:00-17:00; tue 09:00-17:00; wed 09:00-17:00; thu 09:00-17:00; fri 09:00-17:00" in otieno
    assert "********3456" in wanjiru and "722123456" not in out
    assert "********7650" in otieno and "110987650" not in out
    assert "Someone Else" not in out


# -- bad input: exit 2, one line, no traceback ---------------------------------------------------------

ADD = ("therapists", "add", "--name", "Jane Doe", "--email", "jane@example.org")
BAD_INPUT = {
    "bad phone": ((*ADD, "--phone", "0812345678"), {}, "07XXXXXXXX"),
    "bad email": (
        ("therapists", "add", "--name", "Jane Doe", "--email", "jane.example.org", "--phone", "0712345678"),
        {},
        "e-mail",
    ),
    "bad hours": ((*ADD, "--phone", "0712345678", "--hours", "weekdays 9 to 5"), {}, "mon-fri 09:00-17:00"),
    "bad telegram id": ((*ADD, "--phone", "0712345678", "--telegram-user-id", "x"), {}, "--telegram-user-id"),
    "unknown command": (("frobnicate",), {}, "frobnicate"),
    "missing arguments": (("therapists", "add", "--name", "Jane Doe"), {}, "--email"),
    "bad MPESA_ENVIRONMENT": (("therapists", "list"), {"MPESA_ENVIRONMENT": "prod"}, "MPESA_ENVIRONMENT"),
    "mysql DATABASE_URL": (("therapists", "list"), {"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    "short admin password": (("admin", "create", "--username", "amina"), {}, "at least"),
}
ADMIN_STDIN = {"short admin password": "short\n"}


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Every bad-input case run at once (each in its own empty directory) to keep the suite fast."""

    def one(case: str) -> tuple:
        args, env, _expected = BAD_INPUT[case]
        cwd = tmp_path_factory.mktemp("bad")
        env = {"DATABASE_URL": sqlite_url(cwd / "x.db"), **env}
        return run(cwd, *args, stdin=ADMIN_STDIN.get(case, ""), **env), cwd

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(BAD_INPUT, pool.map(one, BAD_INPUT), strict=True))


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_and_no_traceback(case, bad_input_results):
    result, cwd = bad_input_results[case]
    line = assert_one_line_failure(result, 2)
    assert BAD_INPUT[case][2] in line
    assert line.startswith("smiling-steps")
    assert result.stdout == ""


@pytest.mark.parametrize("case", ["bad MPESA_ENVIRONMENT", "mysql DATABASE_URL"])
def test_a_settings_error_touches_no_files(case, bad_input_results):
    _result, cwd = bad_input_results[case]
    assert list(cwd.iterdir()) == []


# -- admin create ---------------------------------------------------------------------------------------


def test_admin_create_stores_an_argon2id_hash_and_refuses_duplicates_and_empty_stdin(workdir):
    path = workdir / "admin.db"
    db = {"DATABASE_URL": sqlite_url(path)}
    password = "correct horse battery staple"
    out = assert_ok(run(workdir, "admin", "create", "--username", "amina", stdin=password + "\n", **db))
    assert "amina" in out and password not in out
    with sqlite3.connect(path) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM admin_users WHERE username = 'amina'").fetchone()
    assert stored.startswith("$argon2id$")
    assert password not in stored
    assert PasswordHasher().verify(stored, password)

    again = run(workdir, "admin", "create", "--username", "amina", stdin="another-long-password\n", **db)
    assert "already exists" in assert_one_line_failure(again, 2)
    no_password = run(workdir, "admin", "create", "--username", "baraka", **db)
    assert "stdin" in assert_one_line_failure(no_password, 2)


# -- refusing an old schema outside local mode ---------------------------------------------------------


STATEMENT_HEADER = (
    "Account Holder:,SMILING STEPS LTD\n"
    "Short Code:,4123456\n"
    "Time Period:,From 01-03-2024 00:00:00 To 31-03-2024 23:59:59\n"
    "\n"
    "Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,Withdrawn,Balance,"
    "Balance Confirmed,Reason Type,Other Party Info,Linked Transaction ID,A/C No.\n"
)


def test_reconcile_compares_a_statement_and_writes_the_report(workdir):
    (workdir / "statement.csv").write_text(STATEMENT_HEADER, encoding="utf-8")
    result = run(
        workdir, "reconcile", "--statement", "statement.csv", "--no-query", "--report", "report.csv",
        DATABASE_URL=sqlite_url(workdir / "cli.db"), MPESA_BUSINESS_SHORT_CODE="4123456",
    )
    out = assert_ok(result)
    assert "0 matched" in out and "Everything agrees with M-Pesa." in out
    report = (workdir / "report.csv").read_text(encoding="utf-8").splitlines()
    assert report[0].startswith("category,receipt,")


def test_an_unmigrated_sqlite_database_outside_local_mode_asks_for_db_upgrade(workdir):
    result = run(workdir, "seed-demo-data", DATABASE_URL=sqlite_url(workdir / "old.db"), **SANDBOX)
    line = assert_one_line_failure(result, 1)
    assert "smiling-steps db upgrade" in line


@pytest.mark.postgres
def test_an_unmigrated_postgres_database_outside_local_mode_asks_for_db_upgrade(workdir, empty_pg_url):
    result = run(workdir, "therapists", "list", DATABASE_URL=empty_pg_url, **SANDBOX)
    line = assert_one_line_failure(result, 1)
    assert "smiling-steps db upgrade" in line
    # and after the upgrade the same command works
    assert_ok(run(workdir, "db", "upgrade", DATABASE_URL=empty_pg_url, **SANDBOX))
    listing = run(workdir, "therapists", "list", DATABASE_URL=empty_pg_url, **SANDBOX)
    assert "no therapists yet" in assert_ok(listing)


def test_an_unreachable_database_is_one_line_and_exit_1(workdir):
    closed_port = "postgresql://postgres@127.0.0.1:1/nothing"
    result = run(workdir, "therapists", "list", DATABASE_URL=closed_port, **SANDBOX)
    line = assert_one_line_failure(result, 1)
    assert "database" in line
