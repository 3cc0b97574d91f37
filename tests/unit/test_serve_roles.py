"""`serve --role all|web|worker` (and SERVE_ROLE): parsing, and what each role runs."""

from __future__ import annotations

import pytest

from core.config import ConfigError, load_settings
from smiling_steps.cli import build_parser, main
from smiling_steps.roles import Role, parse_role, plan_for


@pytest.mark.parametrize(("text", "role"), [
    ("all", Role.ALL), ("web", Role.WEB), ("worker", Role.WORKER), (" Worker ", Role.WORKER), ("", Role.ALL),
    (None, Role.ALL),
])
def test_a_role_is_read_whatever_its_case_and_spaces(text: str | None, role: Role) -> None:
    assert parse_role(text) is role


@pytest.mark.parametrize("text", ["workers", "both", "web,worker", "\x00", "w" * 500])
def test_an_unknown_role_is_one_line_naming_the_choices(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_role(text)
    message = str(caught.value)
    assert "\n" not in message and "all, web, worker" in message and len(message) < 120


def test_the_cli_takes_the_role_and_defaults_to_the_environment() -> None:
    assert build_parser().parse_args(["serve", "--role", "worker"]).role is Role.WORKER
    assert build_parser().parse_args(["serve"]).role is None  # then SERVE_ROLE, else all


def test_a_bad_role_on_the_command_line_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--role", "everything"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'everything' is not one of all, web, worker" in err


def test_a_bad_serve_role_variable_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="^SERVE_ROLE: must be one of all, web or worker"):
        load_settings({"SERVE_ROLE": "hub"})
    assert load_settings({"SERVE_ROLE": "web"}).serve_role == "web"


def test_the_web_role_serves_the_site_and_runs_no_background_work() -> None:
    plan = plan_for(Role.WEB, load_settings({}))
    assert plan.site and not plan.workers
    assert not plan.bot_receives and not plan.follows_progress  # polling belongs to the worker
    assert plan.runs(bot=True) == ["webhooks", "admin", "health", "metrics"]


def test_in_webhook_mode_the_web_role_receives_updates_and_the_worker_edits_progress() -> None:
    settings = load_settings({"TELEGRAM_WEBHOOK_SECRET": "s3cret-token"})
    web, worker = plan_for(Role.WEB, settings), plan_for(Role.WORKER, settings)
    assert web.bot_receives and not web.follows_progress
    assert not worker.bot_receives and worker.follows_progress
    assert "telegram-webhook" in web.runs(bot=True) and "telegram-progress" in worker.runs(bot=True)


def test_the_worker_role_runs_every_background_job_and_polls_telegram() -> None:
    plan = plan_for(Role.WORKER, load_settings({}))
    assert plan.workers and not plan.site and plan.bot_receives and plan.follows_progress
    assert plan.runs(bot=True) == [
        "health", "metrics", "settlement", "watchdog", "outbox", "reminders", "housekeeping",
        "telegram-polling", "telegram-progress",
    ]


def test_the_all_role_runs_everything_as_before() -> None:
    plan = plan_for(Role.ALL, load_settings({}))
    assert plan.site and plan.workers and plan.bot_receives and plan.follows_progress


def test_a_worker_reaches_local_modes_stand_ins_through_the_web_process() -> None:
    worker = load_settings({"SERVE_ROLE": "worker", "PORT": "8081", "PUBLIC_BASE_URL": "http://127.0.0.1:8080"})
    assert worker.daraja_base_url == "http://127.0.0.1:8080/sim/daraja"
    alone = load_settings({"PORT": "8081", "PUBLIC_BASE_URL": "https://tunnel.example"})
    assert alone.daraja_base_url == "http://127.0.0.1:8081/sim/daraja"  # all: its own stand-ins, as before
