"""The ``mailspool`` command line: the parser and ``main``. Flags left unset fall back to
MAILSPOOL_* environment variables, then ``mailspool.toml``, then defaults (see config.py).

Each command lives in the module of its name in this package (``mailspool worker`` in
worker.py), imported only when it runs, as ``async def run(args, settings) -> ExitCode``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailspool import __version__
from mailspool.cli.exits import ExitCode
from mailspool.cli.options import (
    common,
    deliverability,
    delivery,
    events,
    page_limit,
    processes,
    producer,
    retry,
    returned,
    row_number,
)
from mailspool.errors import ConfigError, MailspoolError, QueueError, SourceError, TemplateError

#: why jobs are dead-lettered (models.DeadReason, not imported at start-up)
DEAD_REASONS = (
    "rejected_permanent", "expired", "render_error", "invalid_message", "too_large",
    "max_attempts",
)  # fmt: skip
#: the reasons of suppression entries (queue.suppression.Reason, not imported at start-up)
REASONS = ("unsubscribed", "bounced", "complained", "manual")

if TYPE_CHECKING:
    from mailspool.config import Settings

    Command = Callable[[argparse.Namespace, Settings], Awaitable[ExitCode]]


def duration_arg(text: str) -> str:
    """A duration option checked as it is parsed (a bad one is a usage error, exit 2);
    kept as given, for the command to read."""
    from mailspool.config import parse_duration

    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def json_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--json``: a setting (MAILSPOOL_JSON, ``json = true``), so not given is None."""
    p.add_argument("--json", action="store_true", default=None, help=what)


def outbox(p: argparse.ArgumentParser, *, per_campaign: bool = False) -> None:
    where = "in a folder per campaign " if per_campaign else ""
    p.add_argument(
        "--outbox", metavar="DIR",
        help=f"where .eml files go {where}when no --smtp is given (default outbox)",
    )  # fmt: skip


def _suppress(sub: Any) -> None:
    """``mailspool suppress add|remove|list|import|export``."""
    p = sub.add_parser("suppress", help="the suppression list: who is never mailed again")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def scoped(name: str, summary: str, *, all_lists: bool) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = actions.add_parser(name, help=summary)
        a.add_argument(
            "--list",
            dest="suppress_list",
            metavar="L",
            help="this list's entries only"
            + (" (default: every entry)" if all_lists else " (default: the global entry)"),
        )
        if all_lists:
            a.add_argument("--global", dest="global_only", action="store_true",
                           help="the global entries only")  # fmt: skip
            a.add_argument("--reason", choices=REASONS, help="only entries with this reason")
        common(a)
        return a

    a = scoped("add", "suppress addresses or @domains", all_lists=False)
    a.add_argument("addresses", nargs="+", metavar="ADDR", help="an address or @domain")
    a.add_argument("--reason", choices=REASONS, default="manual", help="why (default manual)")
    a.add_argument(
        "--expires", metavar="WHEN",
        help="lift it after a duration (30d) or on a date (2026-01-31) (default: never)",
    )  # fmt: skip
    a = scoped("remove", "remove entries (of --list, else the global ones)", all_lists=False)
    a.add_argument("addresses", nargs="+", metavar="ADDR", help="an address or @domain")
    a = scoped("list", "print the entries", all_lists=True)
    json_flag(a, "one JSON array on stdout")
    a = scoped("import", "add the entries of a CSV file", all_lists=False)
    a.add_argument("file", help="CSV: address[,list,reason,source,created_at,expires_at]")
    a = scoped("export", "write the entries to a CSV file", all_lists=True)
    a.add_argument("file", help="the CSV file to write (replaced)")


def _campaign(sub: Any) -> None:
    """``mailspool campaign list|show|pause|resume|cancel``."""
    p = sub.add_parser("campaign", help="campaigns: list, show, pause, resume, cancel")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, summary in (
        ("list", "each campaign: its state (active, paused, cancelled) and counts"),
        ("show", "one campaign in detail"),
        ("pause", "claim none of its jobs until it is resumed (messages in flight finish)"),
        ("resume", "let workers claim its jobs again"),
        ("cancel", "end its queued and deferred jobs as cancelled; never send them"),
    ):
        a = actions.add_parser(name, help=summary)
        if name != "list":
            # dest "campaign": checked as every --campaign is (load_settings)
            a.add_argument("campaign", metavar="NAME", help="the campaign's name")
        common(a)
        json_flag(a, "the result as JSON on stdout")


def _dkim(sub: Any) -> None:
    """``mailspool dkim keygen``."""
    p = sub.add_parser("dkim", help="DKIM keys: keygen")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("keygen", help="make a signing key and print its DNS record")
    a.add_argument("domain", help="the domain the key signs for (the From addresses')")
    a.add_argument("--selector", required=True, help="the DNS label of the key, e.g. s2025")
    a.add_argument(
        "--algorithm", choices=("rsa", "ed25519"), default="rsa",
        help="RSA-SHA256 or Ed25519-SHA256 (default rsa)",
    )  # fmt: skip
    a.add_argument("--bits", type=int, help="RSA key size, 1024 to 4096 (default 2048)")
    a.add_argument("--out", default=".", help="directory for the key file (default .)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailspool", description="Durable email dispatcher.")
    parser.add_argument("--version", action="version", version=f"mailspool {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("send", help="enqueue a file and deliver it, in one process")
    producer(p)
    deliverability(p)
    delivery(p)
    processes(p)
    events(p, drain=True)
    common(p)
    p.add_argument(
        "--max-wait", dest="max_wait", metavar="DURATION",
        help="keep running this long for deferred jobs, then exit 75 (default 15m)",
    )  # fmt: skip
    outbox(p, per_campaign=True)
    json_flag(p, "print the summary as one JSON object on stdout")

    p = sub.add_parser("enqueue", help="only enqueue a file (workers deliver it)")
    producer(p)
    deliverability(p)
    retry(p)
    common(p)
    json_flag(p, "print the summary as one JSON object on stdout")

    p = sub.add_parser("worker", help="deliver queued jobs until SIGTERM")
    delivery(p)
    processes(p)
    events(p, drain=True)
    common(p)
    p.add_argument(
        "--drain", action="store_true", default=None,
        help="exit when nothing is due (default: run until SIGTERM)",
    )  # fmt: skip
    p.add_argument(
        "--campaign", metavar="NAME", help="only this campaign's jobs (default: every campaign)"
    )
    outbox(p)
    p.add_argument(
        "--metrics-port", dest="metrics_port", type=int, metavar="N",
        help="serve Prometheus metrics on this port, bound to 127.0.0.1 or MAILSPOOL_HOST"
        " (default: none)",
    )  # fmt: skip

    p = sub.add_parser("serve", help="HTTP API (and in-process workers)")
    delivery(p)
    events(p)
    deliverability(p)
    common(p)
    p.add_argument("--host", metavar="ADDR", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, metavar="N", help="port to listen on (default 8025)")
    p.add_argument(
        "--workers", type=int, metavar="N",
        help="worker loops in this process, each with --concurrency senders (default 1;"
        " 0: none)",
    )  # fmt: skip
    p.add_argument(
        "--max-body", dest="max_body", type=int, metavar="BYTES",
        help="the largest request body taken, bytes; larger ones get 413 (default 10485760)",
    )  # fmt: skip
    outbox(p)
    p.add_argument(
        "--from", dest="from", metavar="ADDR", help="sender when a message or template has none"
    )
    p.add_argument(
        "--max-attachment", dest="max_attachment", type=int, metavar="BYTES",
        help="the largest attachment a request may post, bytes, decoded; larger ones get 413"
        " (default 10485760)",
    )  # fmt: skip
    p.add_argument(
        "--max-request-attachments", dest="max_request_attachments", type=int, metavar="BYTES",
        help="the attachments of one request together, bytes, decoded; more get 413"
        " (default 26214400)",
    )  # fmt: skip
    p.add_argument("--subject", metavar="TEXT", help="subject when a message or template has none")
    p.add_argument(
        "--allowed-from", dest="allowed_from", action="append", metavar="DOMAIN",
        help="a sender domain clients may use besides --from's (repeatable; '*': any)",
    )  # fmt: skip

    _admin(sub)
    return parser


def _admin(sub: Any) -> None:
    """status, preview, dlq, suppress, dkim and inbound."""
    p = sub.add_parser("status", help="job counts by state; returned mail")
    common(p)
    p.add_argument("--campaign", metavar="NAME", help="only this campaign (default: every one)")
    p.add_argument(
        "--job", metavar="ID", help="one job: its state and its latest bounce or complaint"
    )
    json_flag(p, "the counts (or the job) as JSON on stdout")
    p.add_argument(
        "--watch", action="store_true",
        help="show the figures live, read every second until Ctrl-C (plain lines when not"
        " on a terminal)",
    )  # fmt: skip
    _campaign(sub)

    p = sub.add_parser("preview", help="render one row and print it; sends nothing")
    producer(p)
    deliverability(p)
    p.add_argument(
        "--row", type=row_number, metavar="N",
        help="the row numbered N, as the rejects file numbers rows: a CSV file's header is"
        " row 1, a JSONL file's first line row 1 (default: the first row)",
    )  # fmt: skip

    p = sub.add_parser("dlq", help="dead letters: list, show, retry, purge")
    p.add_argument(
        "action", choices=["list", "show", "retry", "purge"],
        help="list them, show one, queue them again, or delete them",
    )  # fmt: skip
    p.add_argument("id", nargs="?", help="job id (show; optional for retry/purge)")
    common(p)
    p.add_argument("--campaign", metavar="NAME", help="only this campaign's dead letters")
    p.add_argument("--reason", choices=DEAD_REASONS, help="only dead letters with this reason")
    p.add_argument(
        "--since", type=duration_arg, metavar="DURATION",
        help="only dead letters newer than this, e.g. 2h",
    )  # fmt: skip
    json_flag(p, "JSON on stdout")
    _suppress(sub)
    _dkim(sub)
    _inbound(sub)
    _webhooks(sub)


def _webhooks(sub: Any) -> None:
    """``mailspool webhooks list|test|retry``."""
    p = sub.add_parser("webhooks", help="job event webhooks: list, test, retry")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, summary in (
        ("list", "each endpoint: events waiting, being retried, dead-lettered"),
        ("test", "post a signed test event to each endpoint (or ENDPOINT) and show the answer"),
        ("retry", "deliver an endpoint's dead-lettered events again, now"),
    ):
        a = actions.add_parser(name, help=summary)
        if name != "list":
            a.add_argument(
                "endpoint", nargs="?", metavar="ENDPOINT",
                help="one endpoint, by its URL or its name in `webhooks list` (default: all)",
            )  # fmt: skip
        common(a)
        events(a)
        if name == "retry":
            a.add_argument(
                "--timeout", metavar="DURATION", default="60s", type=duration_arg,
                help="wait this long for the events to be delivered (default 60s)",
            )  # fmt: skip
        json_flag(a, "the result as JSON on stdout")


def _inbound(sub: Any) -> None:
    """``mailspool inbound`` (the SMTP listener, cli/inbound_listen.py) and ``mailspool
    inbound ingest`` (cli/inbound.py)."""
    p = sub.add_parser(
        "inbound",
        help="returned mail: bounces, complaints, unsubscribes (an SMTP listener, or ingest)",
    )
    p.set_defaults(module="inbound_listen")
    returned(p)
    p.add_argument(
        "--listen", metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:2525; 0.0.0.0:25 for every interface)",
    )  # fmt: skip
    p.add_argument(
        "--max-size", dest="max_size", metavar="SIZE",
        help="the largest message taken, e.g. 512K (default 10M); larger ones get 552",
    )  # fmt: skip
    p.add_argument("--tls-cert", dest="tls_cert", metavar="FILE", help="offer STARTTLS: PEM chain")
    p.add_argument("--tls-key", dest="tls_key", metavar="FILE", help="its private key (PEM)")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    a = actions.add_parser(
        "ingest", help="apply the returned mail of an mbox, a Maildir, .eml files or IMAP"
    )
    a.set_defaults(module="inbound")
    a.add_argument(
        "paths", nargs="*", metavar="PATH",
        help="an mbox file, a Maildir, a directory of .eml files or a file of one message",
    )  # fmt: skip
    a.add_argument(
        "--imap", metavar="URL",
        help="read this mailbox instead, e.g. imaps://bounces@mail.example.com/INBOX",
    )  # fmt: skip
    a.add_argument(
        "--imap-processed-folder", dest="imap_processed_folder", metavar="FOLDER",
        help="where messages read over IMAP are moved (default mailspool-processed)",
    )  # fmt: skip
    a.add_argument(
        "--imap-poll", dest="imap_poll", metavar="DURATION",
        help="read the mailbox again every DURATION until SIGTERM (default: once)",
    )  # fmt: skip
    returned(a)
    json_flag(a, "one JSON object per message on stdout")
    u = actions.add_parser("unmatched", help="the returned messages that named no job")
    u.set_defaults(module="inbound_unmatched")
    common(u)
    u.add_argument(
        "--limit", type=page_limit, default=100, help="show at most this many (default 100)"
    )
    u.add_argument("--write", type=Path, metavar="DIR", help="also save each as DIR/DIGEST.eml")
    json_flag(u, "one JSON object per message")


async def dispatch(args: argparse.Namespace, settings: Settings) -> ExitCode:
    """Run the command ``args`` names (imported now: ``status`` need not load the API)."""
    module = getattr(args, "module", None) or args.command  # a subcommand's own module
    command: Command = importlib.import_module(f"mailspool.cli.{module}").run
    return await command(args, settings)


def _run(coro_fn: Callable[[], Coroutine[Any, Any, ExitCode]]) -> ExitCode:
    try:
        import uvloop  # faster event loop where available
    except ImportError:  # only uvloop's absence: a command's own ImportError propagates
        import asyncio  # imported here: `mailspool --help` needs no event loop (25 ms)

        return asyncio.run(coro_fn())
    return uvloop.run(coro_fn())


def take_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``args`` holds, by option name (None: not given on the command line),
    taken out of it: a command reads them from its Settings alone, where the environment
    and the file are merged in, so that no flag's bare value is read past them. Which were
    given stays known as ``args.flags_given`` (PATHs with --imap are refused, with
    MAILSPOOL_IMAP not)."""
    from mailspool.config import Settings, option_name

    given = {}
    for name in map(option_name, Settings.model_fields):
        if hasattr(args, name):
            given[name] = getattr(args, name)
            delattr(args, name)
    args.flags_given = frozenset(k for k, v in given.items() if v is not None)
    return given


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mailspool.config import load_settings
    from mailspool.observe.logs import configure

    given = take_settings(args)
    try:
        settings = load_settings(**given)
        configure(settings.log_level, settings.log_format)
        return _run(lambda: dispatch(args, settings))
    except (ConfigError, TemplateError, SourceError) as exc:
        print(f"mailspool: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except QueueError as exc:
        print(f"mailspool: queue error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except MailspoolError as exc:
        print(f"mailspool: {exc}", file=sys.stderr)
        return ExitCode.SOME_FAILED
    except KeyboardInterrupt:  # before the command set up its own signal handling
        return ExitCode.SIGINT


if __name__ == "__main__":
    sys.exit(main())
