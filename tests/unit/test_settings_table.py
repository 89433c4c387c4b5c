"""The settings table: its click options, its variables, and Settings.build for every
entry point."""

from __future__ import annotations

import dataclasses
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tracker.cli.daemon import daemon_command
from tracker.cli.main import cli, main
from tracker.cli.options import DAEMON_SETTINGS, SettingOption
from tracker.config import SETTING, SETTINGS, SettingError, Settings
from tracker.exceptions import ConfigError, InvalidInput
from tracker.store.store import Store

#: a good value for each row, as text, and what it reads as
EXAMPLES: dict[str, tuple[str, Any]] = {
    "database_url": ("sqlite:///elsewhere.db", "sqlite:///elsewhere.db"),
    "poll_min": ("0.25", 0.25),
    "poll_max": ("90", 90.0),
    "concurrency": ("7", 7),
    "max_rps": ("2.5", 2.5),
    "api_base": ("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"),
    "lost_after": ("3", 3),
    "lost_window": ("0", 0.0),
    "lease_seconds": ("12.5", 12.5),
    "webhook_timeout": ("4", 4.0),
    "webhook_allowed_hosts": ("loopback", "loopback"),  # a HostPolicy: compared by its text
    "archive_url": (" s3://outputs/tracker ", "s3://outputs/tracker"),
    "archive_max_bytes": ("1048576", 1048576),
    "archive_allowed_hosts": ("private,*.cdn.example", "private,*.cdn.example"),
    "archive_retry_schedule": ("0.5,2", (0.5, 2.0)),
    "max_answer_bytes": ("1024", 1024),
    "poll_timeout": ("2.5", 2.5),
    "prune_older_than": ("2h", 7200.0),
    "default_deadline": ("30m", 1800.0),
    "scheduler": ("backoff", "backoff"),
    "name": ("worker-7", "worker-7"),
    "log_format": ("json", "json"),
    "log_level": ("warning", "warning"),
    "log_interval": ("5", 5.0),
    "api_key": ("  r8_key  ", "r8_key"),
    "webhook_secret": ("whsec_c2VjcmV0", "whsec_c2VjcmV0"),
    "smtp_url": ("smtp://mail.example.test:25", "smtp://mail.example.test:25"),
    "mail_from": ("ops@example.test", "ops@example.test"),
    "retry_schedule": ("1,2", (1.0, 2.0)),
    "serve_token": ("  t0ken  ", "t0ken"),
    "upstream_webhook_secret": ("whsec_dXBzdHJlYW0=", "whsec_dXBzdHJlYW0="),
}

#: a bad value for each row a user can get wrong
BAD: dict[str, str] = {
    "poll_min": "0",
    "poll_max": "soon",
    "concurrency": "1025",
    "max_rps": "inf",
    "api_base": "ftp://example.test",
    "lost_after": "0",
    "lost_window": "-1",
    "lease_seconds": "nan",
    "webhook_timeout": "0",
    "webhook_allowed_hosts": "the office",
    "archive_max_bytes": "2GB",
    "archive_allowed_hosts": "10.0.0.0/33",
    "archive_retry_schedule": "10,later",
    "max_answer_bytes": "1.5",
    "poll_timeout": "-2",
    "prune_older_than": "soon",
    "default_deadline": "400d",
    "scheduler": "random",
    "log_format": "xml",
    "log_level": "loud",
    "log_interval": "0",
    "retry_schedule": "5,soon",
}


def run(*args: str, **env: str) -> tuple[int, str]:
    """`tracker ARGS` as a user runs it (through main: errors become exit codes)."""
    runner = CliRunner()
    with runner.isolation(env=env) as (_, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
        return code, err.getvalue().decode()


def option(name: str) -> click.Option:
    [found] = [p for p in daemon_command.params if p.name == name]
    assert isinstance(found, click.Option)
    return found


def test_every_row_names_a_field_and_has_an_example() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {s.name for s in SETTINGS} <= fields
    assert set(EXAMPLES) == {s.name for s in SETTINGS}
    assert all(s.variable.startswith("TRACKER_") and s.help for s in SETTINGS)


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.flag], ids=lambda s: s.name)
def test_every_row_with_a_flag_is_an_option_of_the_daemon_with_its_variable(setting: Any) -> None:
    opt = option(setting.name)
    assert isinstance(opt, SettingOption)
    assert opt.opts == [setting.flag]
    assert opt.envvar == setting.variable and opt.show_envvar
    help_text = CliRunner().invoke(cli, ["daemon", "--help"]).output
    assert setting.flag in help_text and setting.variable in help_text


def test_the_daemon_options_keep_their_order() -> None:
    names = [p.name for p in daemon_command.params]
    assert [n for n in names if n in DAEMON_SETTINGS] == list(DAEMON_SETTINGS)
    assert names[-1] == "database_url"


def test_help_shows_defaults_and_ranges() -> None:
    text = " ".join(CliRunner().invoke(cli, ["daemon", "--help"]).output.split())
    assert "[env var: TRACKER_POLL_MIN; default: 1.0; x>0]" in text
    assert "[env var: TRACKER_CONCURRENCY; default: 32; 1<=x<=1024]" in text
    assert "--scheduler [adaptive|backoff]" in text
    assert "[env var: TRACKER_WEBHOOK_ALLOWED_HOSTS; default: external]" in text


@pytest.mark.parametrize("command", [["list"], ["status"], ["db", "current"], ["daemon"]])
def test_every_command_takes_the_database_url_from_the_table(command: list[str]) -> None:
    text = CliRunner().invoke(cli, [*command, "--help"]).output
    assert "--database-url" in text and "TRACKER_DATABASE_URL" in text


@pytest.mark.parametrize(("name", "text"), list(BAD.items()))
def test_a_bad_variable_is_one_error_line_and_exit_2(name: str, text: str) -> None:
    code, err = run("daemon", "--database-url", "sqlite://", **{SETTING[name].variable: text})
    assert code == 2, err
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1, err
    assert SETTING[name].variable in err


@pytest.mark.parametrize("variable", ["TRACKER_POLL_MIN", "TRACKER_CONCURRENCY"])
@pytest.mark.parametrize("text", ["abc", "0", "-1", "1e999"])
def test_bad_poll_min_and_concurrency_exit_2(variable: str, text: str) -> None:
    code, err = run("daemon", "--once", **{variable: text})
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith("Error: Invalid value for") and variable in err


@pytest.mark.parametrize("flag", ["--poll-min", "--concurrency", "--lease"])
def test_a_bad_flag_is_one_error_line_and_exit_2(flag: str) -> None:
    code, err = run("daemon", flag, "zero")
    assert (code, err.count("\n")) == (2, 1) and err.startswith("Error:"), err


def test_poll_max_below_poll_min_is_a_usage_error() -> None:
    code, err = run("daemon", "--poll-min", "5", "--poll-max", "1")
    assert (code, err.count("\n")) == (2, 1), err
    with pytest.raises(SettingError, match="must not be smaller"):
        Settings.build(env={"TRACKER_POLL_MIN": "5", "TRACKER_POLL_MAX": "1"})


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_build_reads_every_variable(name: str) -> None:
    text, expected = EXAMPLES[name]
    value = getattr(Settings.build(env={SETTING[name].variable: text}), name)
    assert (value.text if name.endswith("_allowed_hosts") else value) == expected


def test_build_honours_concurrency_and_lease() -> None:
    """As demo, serve, the benchmarks and the Python API build settings."""
    s = Settings.build(env={"TRACKER_CONCURRENCY": "3", "TRACKER_LEASE": "7.5"})
    assert (s.concurrency, s.lease_seconds) == (3, 7.5)


@pytest.mark.parametrize(("name", "text"), list(BAD.items()))
def test_build_refuses_a_bad_variable_naming_it(name: str, text: str) -> None:
    variable = SETTING[name].variable
    with pytest.raises(SettingError, match=variable) as info:
        Settings.build(env={variable: text})
    assert isinstance(info.value, ConfigError) and isinstance(info.value, InvalidInput)
    assert not str(info.value).startswith(f"{variable}: {variable}")


def test_given_values_win_and_none_means_not_given() -> None:
    env = {"TRACKER_CONCURRENCY": "garbage", "TRACKER_LEASE": "9"}
    s = Settings.build(env=env, concurrency=5, lease_seconds=None)
    assert (s.concurrency, s.lease_seconds) == (5, 9.0)


def test_blank_variables_are_unset() -> None:
    s = Settings.build(env={s.variable: "  " for s in SETTINGS})
    assert s == Settings.build(env={})


def test_the_table_defaults_are_the_dataclass_defaults() -> None:
    built = Settings.build(env={})
    plain = Settings()
    for setting in SETTINGS:
        assert getattr(built, setting.name) == getattr(plain, setting.name), setting.name


def test_the_cli_and_build_agree_on_every_default() -> None:
    """What the daemon's options pass when nothing is given builds the same Settings."""
    ctx = daemon_command.make_context("daemon", [])
    options = {k: v for k, v in ctx.params.items() if k in SETTING}
    assert Settings.build(env={}, **options) == Settings.build(env={})


def test_the_store_closes_when_its_block_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []
    store = Store.from_url("sqlite://")
    monkeypatch.setattr(store, "close", lambda: closed.append(True))
    with pytest.raises(RuntimeError), store as same:
        assert same is store
        raise RuntimeError("boom")
    assert closed == [True]
