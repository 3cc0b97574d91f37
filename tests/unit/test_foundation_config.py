"""Settings from the environment (DESIGN.md §4): defaults, every variable, one-line errors."""

from __future__ import annotations

import ipaddress
import secrets
import stat
import subprocess
import sys
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import (
    GENERATE_SECRET_KEY,
    SANDBOX_PASSKEY,
    SANDBOX_SHORT_CODE,
    SECRET_FILE_NAME,
    TELEGRAM_DEFAULT_BASE_URL,
    ConfigError,
    ensure_secret_key,
    load_settings,
    normalise_database_url,
)

SANDBOX = {"MPESA_ENVIRONMENT": "sandbox", "MPESA_CONSUMER_KEY": "ck-123", "MPESA_CONSUMER_SECRET": "cs-456"}
PRODUCTION = {
    "MPESA_ENVIRONMENT": "production",
    "MPESA_CONSUMER_KEY": "live-key",
    "MPESA_CONSUMER_SECRET": "live-secret",
    "MPESA_BUSINESS_SHORT_CODE": "654321",
    "MPESA_PASSKEY": "live-passkey",
    "SECRET_KEY": "xyXDxCv53tZWWiQuKvCR4PWJmtzmfzP6X67iMmbzAto",  # secrets.token_urlsafe(32)
    "PUBLIC_BASE_URL": "https://pay.smilingsteps.example",
}

# Every variable of DESIGN.md §4 with a valid, non-default value and the attribute it sets.
SECTION_4 = {
    "DATABASE_URL": ("postgresql+asyncpg://app@db.internal:5432/steps", "database_url"),
    "PUBLIC_BASE_URL": ("https://pay.smilingsteps.example", "public_base_url"),
    "PORT": ("9090", "port"),
    "HOST": ("10.1.2.3", "host"),
    "SECRET_KEY": ("7Ix8h8CgKK9RdXmKsdJdeS1ok5emrCiBAllzF-h5kck", "secret_key"),
    "MPESA_ENVIRONMENT": ("production", "mpesa_environment"),
    "MPESA_API_BASE_URL": ("https://daraja-proxy.example", "mpesa_api_base_url"),
    "MPESA_CONSUMER_KEY": ("live-key", "mpesa_consumer_key"),
    "MPESA_CONSUMER_SECRET": ("live-secret", "mpesa_consumer_secret"),
    "MPESA_BUSINESS_SHORT_CODE": ("654321", "mpesa_business_short_code"),
    "MPESA_PASSKEY": ("live-passkey", "mpesa_passkey"),
    "TELEGRAM_BOT_TOKEN": ("123456:ABCdef", "telegram_bot_token"),
    "TELEGRAM_API_BASE_URL": ("http://127.0.0.1:8081/bot", "telegram_api_base_url"),
    "TELEGRAM_WEBHOOK_SECRET": ("tg_webhook-secret-1", "telegram_webhook_secret"),
    "AT_USERNAME": ("smilingsteps", "at_username"),
    "AT_API_KEY": ("atsk_0123", "at_api_key"),
    "AT_SHORTCODE": ("22384", "at_shortcode"),
    "AT_API_BASE_URL": ("https://at-proxy.example", "at_api_base_url"),
    "AT_WEBHOOK_SECRET": ("at-webhook-secret", "at_webhook_secret"),
    "MEETING_URL_TEMPLATE": ("https://video.example/{room}", "meeting_url_template"),
    "SMTP_HOST": ("smtp.example.org", "smtp_host"),
    "SMTP_PORT": ("2525", "smtp_port"),
    "SMTP_USERNAME": ("mailer", "smtp_username"),
    "SMTP_PASSWORD": ("mail-pass", "smtp_password"),
    "SMTP_FROM": ("Smiling Steps <hello@smilingsteps.example>", "smtp_from"),
    "SMTP_STARTTLS": ("false", "smtp_starttls"),
}


def assert_one_line_naming(error: ConfigError, variable: str) -> str:
    message = str(error)
    assert variable in message, message
    assert "\n" not in message and message.strip() == message
    assert "Traceback" not in message and "pydantic" not in message.lower()
    return message


# -- every variable is read -------------------------------------------------------------


def test_every_design_variable_is_read():
    settings = load_settings({name: value for name, (value, _attr) in SECTION_4.items()})
    for name, (value, attr) in SECTION_4.items():
        got = getattr(settings, attr)
        if attr in ("port", "smtp_port"):
            assert got == int(value), name
        elif attr == "smtp_starttls":
            assert got is False, name
        else:
            assert got == value, name


def test_variable_names_are_case_insensitive_and_empty_values_mean_default():
    settings = load_settings({"port": "9000", "SMTP_HOST": "", "HOST": ""})
    assert settings.port == 9000
    assert settings.smtp_host is None
    assert settings.bind_host == "127.0.0.1"


def test_an_explicit_mapping_is_the_only_source(monkeypatch):
    monkeypatch.setenv("MPESA_ENVIRONMENT", "production")
    monkeypatch.setenv("PORT", "1234")
    settings = load_settings({})
    assert settings.mpesa_environment == "simulator"
    assert settings.port == 8080


def test_without_a_mapping_the_process_environment_is_read(monkeypatch):
    monkeypatch.setenv("PORT", "1234")
    monkeypatch.setenv("MPESA_ENVIRONMENT", "simulator")
    assert load_settings().port == 1234


# -- defaults ------------------------------------------------------------------------------


def test_no_variables_means_local_mode_with_embedded_defaults():
    settings = load_settings({})
    assert settings.local_mode
    assert settings.mpesa_environment == "simulator"
    assert settings.database_url == "sqlite+aiosqlite:///./smiling_steps.db"
    assert settings.is_sqlite
    assert settings.port == 8080
    assert settings.bind_host == "127.0.0.1"
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.daraja_base_url == "http://127.0.0.1:8080/sim/daraja"
    assert settings.telegram_api_base_url == TELEGRAM_DEFAULT_BASE_URL
    assert settings.telegram_bot_token is None and settings.telegram_webhook_secret is None
    assert settings.meeting_url_template == "https://meet.jit.si/{room}"
    assert settings.smtp_starttls is True
    assert settings.secret_key is None


def test_public_base_url_defaults_to_localhost_on_the_configured_port():
    assert load_settings({"PORT": "9001"}).base_url == "http://127.0.0.1:9001"


def test_bind_host_is_loopback_only_in_simulator_mode():
    assert load_settings({}).bind_host == "127.0.0.1"
    assert load_settings(SANDBOX).bind_host == "0.0.0.0"
    assert load_settings(PRODUCTION).bind_host == "0.0.0.0"
    assert load_settings({**SANDBOX, "HOST": "127.0.0.1"}).bind_host == "127.0.0.1"
    assert load_settings({"HOST": "0.0.0.0"}).bind_host == "0.0.0.0"


@pytest.mark.parametrize("variable", ["PUBLIC_BASE_URL", "MPESA_API_BASE_URL", "AT_API_BASE_URL"])
@pytest.mark.parametrize("suffix", ["", "/", "//"])
def test_base_urls_are_accepted_with_or_without_a_trailing_slash(variable, suffix):
    settings = load_settings({variable: "https://gateway.example.org" + suffix})
    assert getattr(settings, variable.lower()) == "https://gateway.example.org"


def test_telegram_base_url_goes_to_ptb_unchanged():
    for value in ("http://127.0.0.1:8081/bot", "https://tg.example/bot/"):
        assert load_settings({"TELEGRAM_API_BASE_URL": value}).telegram_api_base_url == value


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("POSTGRESQL://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
        (" postgres://u@h/db ", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_urls_are_rewritten_to_the_async_drivers(given, expected):
    assert load_settings({"DATABASE_URL": given}).database_url == expected
    assert normalise_database_url(given) == expected


# Feature: mpesa-payment-integration, Property 77: Sandbox Mode Uses Sandbox Credentials
def test_sandbox_uses_the_sandbox_base_url_shortcode_and_passkey():
    settings = load_settings(SANDBOX)
    assert not settings.local_mode
    assert settings.daraja_base_url == "https://sandbox.safaricom.co.ke"
    assert settings.daraja_short_code == "174379" == SANDBOX_SHORT_CODE
    assert settings.daraja_passkey == SANDBOX_PASSKEY
    assert (settings.daraja_consumer_key, settings.daraja_consumer_secret) == ("ck-123", "cs-456")


# Feature: mpesa-payment-integration, Property 77: Sandbox Mode Uses Sandbox Credentials
def test_production_uses_the_live_base_url_and_its_own_credentials():
    settings = load_settings(PRODUCTION)
    assert settings.daraja_base_url == "https://api.safaricom.co.ke"
    assert settings.daraja_short_code == "654321"
    assert settings.daraja_passkey == "live-passkey"
    assert settings.daraja_consumer_key == "live-key"


def test_simulator_mode_talks_to_the_builtin_simulator_and_an_override_wins():
    assert load_settings({"PORT": "8123"}).daraja_base_url == "http://127.0.0.1:8123/sim/daraja"
    override = load_settings({**SANDBOX, "MPESA_API_BASE_URL": "http://127.0.0.1:9999/"})
    assert override.daraja_base_url == "http://127.0.0.1:9999"


def test_callback_ip_allow_list_is_parsed_into_networks():
    settings = load_settings({"MPESA_CALLBACK_ALLOWED_IPS": "196.201.214.200, 196.201.213.0/24"})
    assert settings.callback_allowed_networks == [
        ipaddress.ip_network("196.201.214.200/32"),
        ipaddress.ip_network("196.201.213.0/24"),
    ]
    assert load_settings({}).callback_allowed_networks == []


# -- bad values: one line naming the variable -----------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MPESA_ENVIRONMENT": "prod"}, "MPESA_ENVIRONMENT"),
        ({"MPESA_BUSINESS_SHORT_CODE": "17x379"}, "MPESA_BUSINESS_SHORT_CODE"),
        ({"MPESA_BUSINESS_SHORT_CODE": "12"}, "MPESA_BUSINESS_SHORT_CODE"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "0"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"SMTP_PORT": "smtp"}, "SMTP_PORT"),
        ({"SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS"),
        ({"PUBLIC_BASE_URL": "pay.example.org"}, "PUBLIC_BASE_URL"),
        ({"MPESA_API_BASE_URL": "ftp://daraja"}, "MPESA_API_BASE_URL"),
        ({"TELEGRAM_API_BASE_URL": "api.telegram.org"}, "TELEGRAM_API_BASE_URL"),
        ({"MEETING_URL_TEMPLATE": "https://meet.jit.si/fixed-room"}, "MEETING_URL_TEMPLATE"),
        ({"MPESA_CALLBACK_ALLOWED_IPS": "196.201.214.200, safaricom"}, "MPESA_CALLBACK_ALLOWED_IPS"),
        ({"AT_SHORTCODE": "not a sender!"}, "AT_SHORTCODE"),
        ({"MEETING_URL_TEMPLATE": "https://therapy.example/{room}"}, "MEETING_URL_TEMPLATE"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"MPESA_ENVIRONMENT": "sandbox"}, "MPESA_CONSUMER_KEY"),
        ({**SANDBOX, "MPESA_CONSUMER_SECRET": ""}, "MPESA_CONSUMER_SECRET"),
        ({"CLIENT_CANCEL_WINDOW_HOURS": "-1"}, "CLIENT_CANCEL_WINDOW_HOURS"),
        ({"CLIENT_CANCEL_WINDOW_HOURS": "24h"}, "CLIENT_CANCEL_WINDOW_HOURS"),
        ({"CLIENT_CANCEL_WINDOW_HOURS": "1.5"}, "CLIENT_CANCEL_WINDOW_HOURS"),
        ({"CLIENT_CANCEL_WINDOW_HOURS": "86400"}, "CLIENT_CANCEL_WINDOW_HOURS"),
    ],
)
def test_a_bad_value_gives_one_line_naming_the_variable(env, variable):
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    assert_one_line_naming(error.value, variable)


def test_the_client_cancel_window_is_unset_by_default_and_read_in_whole_hours():
    assert load_settings({}).client_cancel_window is None
    assert load_settings({"CLIENT_CANCEL_WINDOW_HOURS": ""}).client_cancel_window is None
    assert load_settings({"CLIENT_CANCEL_WINDOW_HOURS": "0"}).client_cancel_window == timedelta(0)
    settings = load_settings({"CLIENT_CANCEL_WINDOW_HOURS": "24"})
    assert settings.client_cancel_window_hours == 24
    assert settings.client_cancel_window == timedelta(hours=24)


@pytest.mark.parametrize(
    ("value", "says"), [("-1", "0 to 720"), ("721", "0 to 720"), ("24h", "whole number")]
)
def test_a_bad_client_cancel_window_says_what_is_allowed_and_shows_the_value(value, says):
    with pytest.raises(ConfigError) as error:
        load_settings({"CLIENT_CANCEL_WINDOW_HOURS": value})
    message = assert_one_line_naming(error.value, "CLIENT_CANCEL_WINDOW_HOURS")
    assert says in message and f"'{value}'" in message


def test_a_bad_value_is_shown_so_the_operator_can_spot_the_typo():
    with pytest.raises(ConfigError) as error:
        load_settings({"MPESA_ENVIRONMENT": "prod"})
    message = str(error.value)
    assert "'prod'" in message
    assert "simulator" in message and "sandbox" in message and "production" in message


@pytest.mark.parametrize(
    "missing",
    [
        "MPESA_CONSUMER_KEY",
        "MPESA_CONSUMER_SECRET",
        "MPESA_BUSINESS_SHORT_CODE",
        "MPESA_PASSKEY",
        "SECRET_KEY",
        "PUBLIC_BASE_URL",
    ],
)
def test_production_without_a_credential_names_the_missing_variable(missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    message = assert_one_line_naming(error.value, missing)
    assert "production" in message


def test_production_needs_an_https_public_url():
    with pytest.raises(ConfigError) as error:
        load_settings({**PRODUCTION, "PUBLIC_BASE_URL": "http://pay.smilingsteps.example"})
    assert "https" in assert_one_line_naming(error.value, "PUBLIC_BASE_URL")


@pytest.mark.parametrize("variable", ["TELEGRAM_WEBHOOK_SECRET", "AT_WEBHOOK_SECRET"])
def test_a_bad_secret_is_named_but_never_echoed(variable):
    value = "hunter2 is/my?secret"
    with pytest.raises(ConfigError) as error:
        load_settings({variable: value})
    message = assert_one_line_naming(error.value, variable)
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "url",
    [
        "mysql://app:Hunter2Pass@db.internal/steps",
        "mysql://app:Hunter2Pass@with@at@db.internal/steps",
        "app:Hunter2Pass@db.internal/steps",  # the scheme forgotten
    ],
)
def test_a_database_password_is_never_echoed(url):
    with pytest.raises(ConfigError) as error:
        load_settings({"DATABASE_URL": url})
    message = assert_one_line_naming(error.value, "DATABASE_URL")
    assert "Hunter2Pass" not in message
    assert "db.internal" in message  # the rest still helps the operator


def test_production_errors_do_not_echo_the_credentials_that_were_given():
    env = {**PRODUCTION, "MPESA_PASSKEY": ""}
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    message = str(error.value)
    for secret in ("live-key", "live-secret", PRODUCTION["SECRET_KEY"]):
        assert secret not in message


# -- SECRET_KEY ------------------------------------------------------------------------------


def test_local_mode_generates_a_secret_key_once_and_keeps_it_private(tmp_path):
    settings = load_settings({})
    first = ensure_secret_key(settings, tmp_path)
    assert len(first) >= 32
    assert ensure_secret_key(settings, tmp_path) == first
    mode = stat.S_IMODE((tmp_path / SECRET_FILE_NAME).stat().st_mode)
    assert mode == 0o600


def test_a_given_secret_key_is_used_and_nothing_is_written(tmp_path):
    settings = load_settings({"SECRET_KEY": "given-key-" * 4})
    assert ensure_secret_key(settings, tmp_path) == "given-key-" * 4
    assert not (tmp_path / SECRET_FILE_NAME).exists()


def test_outside_local_mode_a_missing_secret_key_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        ensure_secret_key(load_settings(SANDBOX), tmp_path)
    assert_one_line_naming(error.value, "SECRET_KEY")
    assert not (tmp_path / SECRET_FILE_NAME).exists()


@pytest.mark.parametrize(
    "weak",
    [
        "x",
        "prod-secret",
        "a-long-random-test-secret-key-0123456789",  # 40 characters: fewer than 32 bytes of base64
        "k" * 48,  # long, but one character
        "s3cret-" * 8,  # a word repeated
        "0123456789abcdef" * 4,  # 64 "hex digits" that repeat
        "a" * 50 + "bcdefghijk",  # long, but nearly all one character
        secrets.token_hex(31),  # 62 hex digits: 31 bytes
    ],
)
@pytest.mark.parametrize("environment", [SANDBOX, PRODUCTION])
def test_outside_local_mode_a_weak_secret_key_is_refused_with_how_to_make_one(weak, environment):
    with pytest.raises(ConfigError) as error:
        load_settings({**environment, "SECRET_KEY": weak})
    message = assert_one_line_naming(error.value, "SECRET_KEY")
    assert GENERATE_SECRET_KEY in message and "32 random bytes" in message
    assert environment["MPESA_ENVIRONMENT"] in message
    assert f"'{weak}'" not in message and (len(weak) < 8 or weak not in message)  # never echoed


def test_local_mode_accepts_any_secret_key():
    assert load_settings({"SECRET_KEY": "x"}).secret_key == "x"


@settings(max_examples=200)
@given(nbytes=st.integers(min_value=32, max_value=64), hex_digits=st.booleans())
def test_any_key_of_32_or_more_random_bytes_is_accepted_in_production(nbytes, hex_digits):
    key = secrets.token_hex(nbytes) if hex_digits else secrets.token_urlsafe(nbytes)
    assert load_settings({**PRODUCTION, "SECRET_KEY": key}).secret_key == key


def test_the_advertised_command_makes_a_key_production_accepts():
    key = subprocess.run(
        [sys.executable, "-c", GENERATE_SECRET_KEY.split('"')[1]], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert load_settings({**PRODUCTION, "SECRET_KEY": key}).secret_key == key


def test_a_missing_secret_key_outside_local_mode_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError) as error:
        ensure_secret_key(load_settings(SANDBOX), tmp_path)
    assert GENERATE_SECRET_KEY in assert_one_line_naming(error.value, "SECRET_KEY")


# -- MPESA_CONFIRM_WITH_QUERY ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, False), (SANDBOX, True), (PRODUCTION, True)],
    ids=["simulator", "sandbox", "production"],
)
def test_success_callbacks_are_confirmed_by_query_by_default_outside_simulator_mode(env, expected):
    assert load_settings(env).confirm_success_by_query is expected


@pytest.mark.parametrize("env", [{}, SANDBOX, PRODUCTION], ids=["simulator", "sandbox", "production"])
@pytest.mark.parametrize("value", ["true", "false"])
def test_an_explicit_confirm_with_query_wins_in_every_environment(env, value):
    settings = load_settings({**env, "MPESA_CONFIRM_WITH_QUERY": value})
    assert settings.confirm_success_by_query is (value == "true")


# -- METRICS_TOKEN -------------------------------------------------------------------------------


def test_metrics_token_is_unset_by_default_and_read_when_given():
    assert load_settings({}).metrics_token is None
    token = secrets.token_urlsafe(32)
    assert load_settings({**PRODUCTION, "METRICS_TOKEN": token}).metrics_token == token


@pytest.mark.parametrize("weak", ["short-token", "has spaces in it and is long enough to pass........"])
def test_a_short_or_malformed_metrics_token_is_refused_without_echoing_it(weak):
    with pytest.raises(ConfigError) as error:
        load_settings({"METRICS_TOKEN": weak})
    message = assert_one_line_naming(error.value, "METRICS_TOKEN")
    assert weak not in message and GENERATE_SECRET_KEY in message


# -- the local-mode retry knob (smiling-steps demo --scenario outage) -----------------------


def test_an_unavailable_daraja_is_retried_after_30_seconds_unless_local_mode_says_otherwise():
    assert load_settings({}).unavailable_retry_after == timedelta(seconds=30)
    assert load_settings(SANDBOX).unavailable_retry_after == timedelta(seconds=30)
    fast = load_settings({"MPESA_UNAVAILABLE_RETRY_SECONDS": "2"})
    assert fast.unavailable_retry_after == timedelta(seconds=2)


@pytest.mark.parametrize("value", ["0", "31", "-1", "soon"])
def test_a_retry_delay_outside_1_to_30_seconds_is_refused(value):
    with pytest.raises(ConfigError) as caught:
        load_settings({"MPESA_UNAVAILABLE_RETRY_SECONDS": value})
    assert_one_line_naming(caught.value, "MPESA_UNAVAILABLE_RETRY_SECONDS")


@pytest.mark.parametrize("mode", [SANDBOX, PRODUCTION])
def test_the_retry_knob_is_refused_outside_local_mode(mode):
    with pytest.raises(ConfigError) as caught:
        load_settings({**mode, "MPESA_UNAVAILABLE_RETRY_SECONDS": "2"})
    assert "local mode only" in assert_one_line_naming(caught.value, "MPESA_UNAVAILABLE_RETRY_SECONDS")
