"""Every option of every command, walked from the parser itself, so that a new one cannot
drift from the documentation:

- it has a help text, and one with a default says it as ``(default VALUE)``, VALUE being
  the default the option really has;
- it is a setting, which ``MAILSPOOL_<NAME>`` and ``mailspool.toml`` set exactly as the flag
  does, or it is in docs/cli.md's list of what is given on the command line only.

Commands read their settings from the Settings alone (main takes them out of the parsed
arguments), so a setting that reaches the Settings reaches the command; the end of this
module runs a few commands with switches set by the environment or the file."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailspool.cli.parser import build_parser, take_settings
from mailspool.config import Settings, load_settings, option_name
from mailspool.inbound import DEFAULT_MAX_BYTES
from mailspool.testing import RecordingSMTPServer
from tests.support.cli import Result
from tests.support.paths import ROOT

CLI_DOC = ROOT / "docs" / "cli.md"


@dataclass(frozen=True)
class Option:
    """One argument of one command, as the parser has it."""

    command: tuple[str, ...]
    action: argparse.Action

    @property
    def flag(self) -> str:
        """``--retry-first``; a positional argument by its metavar or name."""
        strings = [s for s in self.action.option_strings if s.startswith("--")]
        return strings[0] if strings else str(self.action.metavar or self.action.dest).upper()

    @property
    def positional(self) -> bool:
        return not self.action.option_strings

    @property
    def setting(self) -> str | None:
        """The Settings field the option sets, or None: command-line only."""
        for field in Settings.model_fields:
            if option_name(field) == self.action.dest:
                return field
        return None

    def __str__(self) -> str:
        return f"mailspool {' '.join(self.command)} {self.flag}"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    # argparse keeps no public list of a parser's arguments: _actions it is
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found[0].choices) if found else {}


def walk(parser: argparse.ArgumentParser, command: tuple[str, ...] = ()) -> Iterator[Option]:
    for action in parser._actions:
        if not isinstance(
            action, argparse._SubParsersAction | argparse._HelpAction | argparse._VersionAction
        ):
            yield Option(command, action)
    for name, sub in subcommands(parser).items():
        yield from walk(sub, (*command, name))


OPTIONS = list(walk(build_parser()))


def documented_cli_only() -> set[tuple[str, str]]:
    """(command, option) of docs/cli.md's "Command-line only" table."""
    text = CLI_DOC.read_text(encoding="utf-8")
    section = text.split("### Command-line only", 1)[1].split("\n#", 1)[0]
    found = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            command = cells[0].strip("`")
            found |= {(command, flag) for flag in re.findall(r"`(--[a-z-]+)`", cells[1])}
    return found


def is_documented(option: Option, documented: set[tuple[str, str]]) -> bool:
    """``suppress`` in the table covers ``suppress add``, ``suppress list``..."""
    name = " ".join(option.command)
    return any(
        flag == option.flag and (name == command or name.startswith(command + " "))
        for command, flag in documented
    )


# -- command-line only: exactly what the documentation says ------------------------------


def test_an_option_is_a_setting_or_documented_as_command_line_only() -> None:
    documented = documented_cli_only()
    assert documented, "docs/cli.md has no Command-line only table"
    undocumented = [
        str(o)
        for o in OPTIONS
        if not o.positional and o.setting is None and not is_documented(o, documented)
    ]
    assert not undocumented, (
        "neither a setting (config.Settings) nor in docs/cli.md's Command-line only table:"
        f" {undocumented}"
    )
    stale = [
        f"mailspool {command} {flag}"
        for command, flag in sorted(documented)
        if not any(is_documented(o, {(command, flag)}) and o.setting is None for o in OPTIONS)
    ]
    assert not stale, f"docs/cli.md lists as command-line only what is not: {stale}"


def test_a_setting_not_given_is_none_so_the_environment_and_the_file_decide() -> None:
    # a flag with a default of its own would override MAILSPOOL_<NAME> and the file
    overriding = [
        f"{o} (default {o.action.default!r})"
        for o in OPTIONS
        if o.setting is not None and o.action.default is not None
    ]
    assert not overriding


# -- help: every option, and its default ---------------------------------------------------

#: ``(default VALUE`` in a help text: VALUE as the option takes it; ``(default: ...)`` is
#: words about a default that is not a value (none, every campaign)
DEFAULT_IN_HELP = re.compile(r"\(default ([^\s;)]+?)(?=[\s;)]|:\s)")


def test_every_option_has_a_help_text() -> None:
    missing = [str(o) for o in OPTIONS if not (o.action.help or "").strip()]
    assert not missing, f"options without a help text: {missing}"


def has_default(value: object) -> bool:
    return value not in (None, False, [], "", ())


def test_the_help_shows_each_default_and_it_is_the_real_one(clean_env: Path) -> None:
    defaults = load_settings()
    wrong = []
    for o in OPTIONS:
        shown = DEFAULT_IN_HELP.search(o.action.help or "")
        said = shown.group(1).strip("\"'") if shown else None
        if o.setting is not None:
            real = getattr(defaults, o.setting)
            if not has_default(real):
                continue
            if said is None:
                wrong.append(f"{o}: no (default ...) in its help; the default is {real!r}")
            elif getattr(load_settings(**{o.action.dest: said}), o.setting) != real:
                wrong.append(f"{o}: the help says default {said}, the setting's is {real!r}")
        elif has_default(o.action.default) and said != str(o.action.default):
            wrong.append(f"{o}: the help says {said}, the default is {o.action.default!r}")
    assert not wrong, "\n".join(wrong)


def test_the_listener_takes_messages_as_large_as_a_bounce_may_be() -> None:
    assert Settings.model_fields["max_size"].default == DEFAULT_MAX_BYTES


# -- settings: the flag, the environment and the file agree --------------------------------

#: a value of each setting a flag gives, other than its default; switches need none
SAMPLES = {
    "allowed_from": "example.org",
    "attachment_dir": "files",
    "campaign": "may",
    "command_timeout": "1m",
    "concurrency": "16",
    "connect_timeout": "10s",
    "data_timeout": "20m",
    "default_domain_rate": "5/s",
    "dns_server": "127.0.0.1:5353",
    "dkim": "example.com:s1:a.key",
    "domain_concurrency": "2",
    "domain_rate": "gmail.com=20/s",
    "event_retention": "1d",
    "from": "News <news@example.com>",
    "host": "0.0.0.0",
    "html": "body.html",
    "imap": "imaps://bounces@mail.example.com/INBOX",
    "imap_poll": "60s",
    "imap_processed_folder": "done",
    "key_column": "Email",
    "lease": "2m",
    "limits_redis": "redis://127.0.0.1:6379/1",
    "list": "news",
    "listen": "0.0.0.0:25",
    "log_format": "json",
    "log_level": "debug",
    "max_age": "1d",
    "max_attachment": "4096",
    "max_attempts": "5",
    "max_body": "2048",
    "max_request_attachments": "8192",
    "max_size": "512K",
    "max_wait": "1m",
    "metrics_port": "9108",
    "outbox": "out",
    "port": "8026",
    "processes": "2",
    "providers": "off",
    "queue": "sqlite:///other.db",
    "rate": "20/s",
    "render_processes": "2",
    "retry_factor": "3",
    "retry_first": "1m",
    "retry_max_delay": "2h",
    "return_path": "bounces@bounce.example.com",
    "send_at": "2026-01-05T09:00+01:00",
    "smtp": "smtp://127.0.0.1:2525",
    "soft_bounce_limit": "5",
    "soft_bounce_window": "1d",
    "store": "redis://127.0.0.1:6379/0?prefix=x",
    "subject": "Hello {{ Name }}",
    "template": "welcome.txt",
    "timezone": "Europe/Berlin",
    "timezone_column": "tz",
    "tls_cert": "cert.pem",
    "tls_key": "key.pem",
    "unsubscribe_address": "unsubscribe@example.com",
    "unsubscribe_url": "https://mail.example.com/u",
    "webhook": "https://hooks.example.com/mailspool",
    "webhook_drain": "5s",
    "webhook_retry_period": "1d",
    "webhook_timeout": "5s",
    "window": "Mon-Fri 09:00-17:00",
    "workers": "2",
}


def switch(o: Option) -> bool:
    return isinstance(o.action, argparse._StoreTrueAction)


def argv_for(o: Option, *extra: str) -> list[str]:
    """The shortest command line of ``o``'s command, with ``extra``."""
    sub = build_parser()
    argv = list(o.command)
    for name in o.command:  # down to the command's own parser
        sub = subcommands(sub)[name]
    needed = []
    for a in sub._actions:
        if not a.option_strings and a.nargs in (None, "+") and a.dest != "action":
            needed.append(next(iter(a.choices)) if a.choices else "x")
        elif a.option_strings and a.required:
            needed += [a.option_strings[0], "x"]
        elif not a.option_strings and a.dest == "action" and a.choices and a.nargs is None:
            needed.insert(0, next(iter(a.choices)))
    return argv + needed + list(extra)


def settings_of(argv: list[str]) -> Settings:
    return load_settings(**take_settings(build_parser().parse_args(argv)))


def toml_value(o: Option, value: str) -> str:
    """``value`` as mailspool.toml would hold it for ``o``."""
    if switch(o):
        return "true"
    if o.action.type in (int, float):
        return value
    if isinstance(o.action, argparse._AppendAction):
        return json.dumps([value])
    return json.dumps(value)


# a positional argument is what one run acts on: never set by the environment or the file
# (campaign's NAME is read into the campaign setting only to be checked as --campaign is)
SETTABLE = [o for o in OPTIONS if o.setting is not None and not o.positional]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in [n for n in os.environ if n.startswith("MAILSPOOL_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_setting_a_flag_gives_has_a_sample() -> None:
    missing = sorted({o.action.dest for o in SETTABLE if not switch(o)} - set(SAMPLES))
    assert not missing, f"add a value other than the default to SAMPLES: {missing}"


@pytest.mark.parametrize("o", SETTABLE, ids=str)
def test_the_environment_and_the_file_set_it_as_the_flag_does(
    o: Option, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = "true" if switch(o) else SAMPLES[o.action.dest]
    name = o.flag.removeprefix("--")
    assert o.setting is not None
    default = getattr(settings_of(argv_for(o)), o.setting)
    by_flag = getattr(
        settings_of(argv_for(o, o.flag) if switch(o) else argv_for(o, o.flag, value)), o.setting
    )
    assert by_flag != default, f"{o} {value} changes nothing: pick another sample"

    env = "MAILSPOOL_" + name.upper().replace("-", "_")
    monkeypatch.setenv(env, value)
    assert getattr(settings_of(argv_for(o)), o.setting) == by_flag, env
    monkeypatch.delenv(env)

    (clean_env / "mailspool.toml").write_text(f"{name} = {toml_value(o, value)}\n")
    assert getattr(settings_of(argv_for(o)), o.setting) == by_flag, "mailspool.toml"


# -- what a command does with them ---------------------------------------------------------


def test_json_from_the_environment_and_the_file(
    enqueued: Callable[[int], Path], cli: Callable[..., Result]
) -> None:
    where = enqueued(2)
    status = cli("status", env={"MAILSPOOL_JSON": "1"})
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    # every state, those at 0 too
    assert {k: row[k] for k in ("queued", "sending", "sent", "deferred", "dead", "suppressed")} == {
        "queued": 2, "sending": 0, "sent": 0, "deferred": 0, "dead": 0, "suppressed": 0,
    }  # fmt: skip
    (where / "mailspool.toml").write_text("json = true\n")
    dead = cli("dlq", "list")
    assert dead.returncode == 0 and json.loads(dead.stdout) == []
    assert cli("dlq", "list", env={"MAILSPOOL_JSON": "0"}).stdout == ""  # env over file


def test_drain_and_campaign_from_the_file_and_the_environment(
    enqueued: Callable[[int], Path], cli: Callable[..., Result], smtpd: RecordingSMTPServer
) -> None:
    where = enqueued(3)
    [row] = json.loads(cli("status", "--json").stdout)
    (where / "mailspool.toml").write_text(
        f'drain = true\ncampaign = "other"\nsmtp = "smtp://127.0.0.1:{smtpd.port}"\n'
    )
    # kept to a campaign with no jobs, the worker finds nothing due and exits
    idle = cli("worker")
    assert idle.returncode == 0, idle.stderr
    assert smtpd.messages == []
    assert cli("status").returncode == 1  # the queue has no campaign "other"
    done = cli("worker", env={"MAILSPOOL_CAMPAIGN": row["campaign"]})
    assert done.returncode == 0, done.stderr
    assert len(smtpd.messages) == 3
    shown = cli("status", env={"MAILSPOOL_CAMPAIGN": row["campaign"]})
    assert shown.stdout.startswith(f"{row['campaign']}: ") and "sent=3" in shown.stdout
