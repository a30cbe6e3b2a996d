"""The arguments of each command, added to its parser by the function of its name (the
option groups several commands share are in options.py); parser.py makes the parser."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

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

#: why jobs are dead-lettered (models.DeadReason, not imported at start-up)
DEAD_REASONS = (
    "rejected_permanent", "expired", "render_error", "invalid_message", "too_large",
    "max_attempts",
)  # fmt: skip
#: the reasons of suppression entries (queue.suppression.Reason, not imported at start-up)
REASONS = ("unsubscribed", "bounced", "complained", "manual")


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


def _send(p: argparse.ArgumentParser) -> None:
    """``mailspool send``."""
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


def _enqueue(p: argparse.ArgumentParser) -> None:
    """``mailspool enqueue``."""
    producer(p)
    deliverability(p)
    retry(p)
    common(p)
    json_flag(p, "print the summary as one JSON object on stdout")


def _worker(p: argparse.ArgumentParser) -> None:
    """``mailspool worker``."""
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


def _serve(p: argparse.ArgumentParser) -> None:
    """``mailspool serve``."""
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


def _status(p: argparse.ArgumentParser) -> None:
    """``mailspool status``."""
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


def _campaign(p: argparse.ArgumentParser) -> None:
    """``mailspool campaign list|show|pause|resume|cancel``."""
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


def _preview(p: argparse.ArgumentParser) -> None:
    """``mailspool preview``."""
    producer(p)
    deliverability(p)
    p.add_argument(
        "--row", type=row_number, metavar="N",
        help="the row numbered N, as the rejects file numbers rows: a CSV file's header is"
        " row 1, a JSONL file's first line row 1 (default: the first row)",
    )  # fmt: skip


def _dlq(p: argparse.ArgumentParser) -> None:
    """``mailspool dlq``."""
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


def _suppress(p: argparse.ArgumentParser) -> None:
    """``mailspool suppress add|remove|list|import|export``."""
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


def _dkim(p: argparse.ArgumentParser) -> None:
    """``mailspool dkim keygen``."""
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


def _inbound(p: argparse.ArgumentParser) -> None:
    """``mailspool inbound`` (the SMTP listener, cli/inbound_listen.py) and ``mailspool
    inbound ingest`` (cli/inbound.py)."""
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


def _webhooks(p: argparse.ArgumentParser) -> None:
    """``mailspool webhooks list|test|retry``."""
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


#: the commands, in the order ``mailspool --help`` lists them: name, summary, arguments
COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("send", "enqueue a file and deliver it, in one process", _send),
    ("enqueue", "only enqueue a file (workers deliver it)", _enqueue),
    ("worker", "deliver queued jobs until SIGTERM", _worker),
    ("serve", "HTTP API (and in-process workers)", _serve),
    ("status", "job counts by state; returned mail", _status),
    ("campaign", "campaigns: list, show, pause, resume, cancel", _campaign),
    ("preview", "render one row and print it; sends nothing", _preview),
    ("dlq", "dead letters: list, show, retry, purge", _dlq),
    ("suppress", "the suppression list: who is never mailed again", _suppress),
    ("dkim", "DKIM keys: keygen", _dkim),
    (
        "inbound",
        "returned mail: bounces, complaints, unsubscribes (an SMTP listener, or ingest)",
        _inbound,
    ),
    ("webhooks", "job event webhooks: list, test, retry", _webhooks),
)
