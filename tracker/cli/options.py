"""Click options generated from the settings table (``tracker.config.SETTINGS``).

A flag and its TRACKER_* variable are read by the row's own type, so a bad value
says the same thing either way: one `Error:` line, exit 2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from tracker.config import SETTING, SETTINGS, Setting, Settings

F = TypeVar("F", bound=Callable[..., Any])


class SettingType(click.ParamType):
    """The row's type as a click type: its metavar, its message on a bad value."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.name = setting.type.metavar

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return self.setting.type.metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):  # a default that is already a value
            return value
        try:
            return self.setting.type(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class SettingOption(click.Option):
    """An option that shows its row's range in --help, as click's range types do."""

    def __init__(self, *args: Any, setting: Setting, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        described = self.setting.type.describe()
        if described:
            extra["range"] = described
        return extra


def setting_option(name: str) -> Callable[[F], F]:
    """The option of one row of the table: its flag, variable, type, default and help."""
    setting = SETTING[name]
    assert setting.flag is not None, f"{name} has no flag"
    return click.option(
        setting.flag,
        setting.name,
        cls=SettingOption,
        setting=setting,
        type=SettingType(setting),
        default=setting.default,
        show_default=setting.default is not None,
        envvar=setting.variable,
        show_envvar=True,
        help=setting.help,
    )


def setting_options(*names: str) -> Callable[[F], F]:
    """The options of these rows, shown in the order given."""

    def decorate(fn: F) -> F:
        for name in reversed(names):
            fn = setting_option(name)(fn)
        return fn

    return decorate


def verbosity_options(fn: F) -> F:
    """``-v``/``--verbose`` and ``-q``/``--quiet``: short for ``--log-level debug`` and
    ``--log-level warning`` (see ``daemon_settings``)."""
    fn = click.option(
        "-q", "--quiet", is_flag=True, help="Log problems only (as --log-level warning)."
    )(fn)
    fn = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Log every transition, poll error and delivery attempt (as --log-level debug).",
    )(fn)
    return fn


#: every command takes --database-url
database_option = setting_option("database_url")
#: the options of `tracker daemon` (and `serve`): every other row with a flag, in table order
DAEMON_SETTINGS = tuple(s.name for s in SETTINGS if s.flag and s.name != "database_url")


def daemon_options(fn: F) -> F:
    """The options of `tracker daemon`, for every command that runs the daemon (`serve`
    too): its settings, then -v and -q. Read them with ``daemon_settings``."""
    return setting_options(*DAEMON_SETTINGS)(verbosity_options(fn))


def daemon_settings(options: dict[str, Any]) -> Settings:
    """Settings from what ``daemon_options`` (and ``database_option``) parsed: they are
    taken out of ``options``, so what is left is the command's own. -v or -q win over
    --log-level and TRACKER_LOG_LEVEL; both at once is a usage error."""
    verbose, quiet = options.pop("verbose", False), options.pop("quiet", False)
    if verbose and quiet:
        raise click.UsageError("-v/--verbose and -q/--quiet cannot be used together")
    values = {name: options.pop(name) for name in list(options) if name in SETTING}
    if verbose or quiet:
        values["log_level"] = "debug" if verbose else "warning"
    return Settings.build(**values)
