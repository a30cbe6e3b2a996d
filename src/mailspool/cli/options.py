"""The option groups the commands share (``--queue``, the delivery and retry options,
webhooks, the producer's, deliverability's, returned mail's) and the parsers of option
values that are not settings. Each group adds its options to a command's parser;
:mod:`mailspool.cli.commands` builds the commands from them.

Every option has a help text, and one whose setting has a default says it as
``(default VALUE)``, VALUE as the option takes it (tests/cli/test_options.py holds both
to the settings)."""

from __future__ import annotations

import argparse


def common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", metavar="URL", help="queue URL (default sqlite:///mailspool.db)")
    p.add_argument(
        "--store", metavar="URL",
        help="job store URL for an amqp:// queue: postgresql://... or redis://...",
    )  # fmt: skip
    p.add_argument(
        "--log-level", dest="log_level", metavar="LEVEL",
        help="debug, info, warning or error (default info)",
    )  # fmt: skip
    p.add_argument(
        "--log-format", dest="log_format", metavar="FORMAT",
        help="console, json, or auto: console on a terminal, else json (default auto)",
    )  # fmt: skip


def delivery(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--smtp", action="append", metavar="URL",
        help="relay URL, e.g. smtp://user@relay.example.com:587; repeat for several relays"
        " (failover and weights: [[relay]] tables in mailspool.toml) (default: none, .eml"
        " files go to --outbox)",
    )  # fmt: skip
    p.add_argument("--concurrency", type=int, metavar="N", help="messages in flight (default 8)")
    p.add_argument(
        "--rate", metavar="R", help="global rate limit: 20/s, 500/m, 10000/h (default: none)"
    )
    p.add_argument(
        "--domain-rate",
        dest="domain_rate",
        action="append",
        metavar="DOMAIN=R",
        help="per recipient domain: gmail.com=20/s (repeatable)",
    )
    p.add_argument(
        "--default-domain-rate", dest="default_domain_rate", metavar="R",
        help="the rate of every domain without a --domain-rate of its own (default: none)",
    )  # fmt: skip
    p.add_argument(
        "--domain-concurrency", dest="domain_concurrency", type=int, metavar="N",
        help="messages in flight per recipient domain (default 0: no limit)",
    )  # fmt: skip
    p.add_argument(
        "--limits-redis",
        dest="limits_redis",
        metavar="URL",
        help="Redis URL holding the limits shared by every worker (default: the queue's or"
        " store's Redis, else per process)",
    )
    p.add_argument(
        "--providers", metavar="FILE",
        help="per-provider shaping rules (TOML); default: the shipped rules; off: no shaping",
    )  # fmt: skip
    p.add_argument(
        "--resolve-mx", dest="resolve_mx", action="store_true", default=None,
        help="find a domain's provider by its MX hosts when no rule names the domain",
    )  # fmt: skip
    p.add_argument(
        "--dns-server", dest="dns_server", metavar="HOST[:PORT]",
        help="the DNS server --resolve-mx asks (default: the system's)",
    )  # fmt: skip
    p.add_argument(
        "--lease", metavar="DURATION",
        help="how long a claimed job is held before another worker may take it, kept alive"
        " by heartbeats (default 60s)",
    )  # fmt: skip
    retry(p)
    p.add_argument(
        "--connect-timeout", dest="connect_timeout", metavar="DURATION",
        help="wait this long for the TCP connection, TLS handshake and greeting (default 30s)",
    )  # fmt: skip
    p.add_argument(
        "--command-timeout", dest="command_timeout", metavar="DURATION",
        help="wait this long for each command's reply (default 300s)",
    )  # fmt: skip
    p.add_argument(
        "--data-timeout", dest="data_timeout", metavar="DURATION",
        help="wait this long for the reply to the final dot (default 600s)",
    )  # fmt: skip


def processes(p: argparse.ArgumentParser) -> None:
    """``--processes``: the delivery processes of ``send`` and ``worker``."""
    p.add_argument(
        "--processes", type=int, metavar="N",
        help="delivery processes, each with its own event loop, --concurrency SMTP sessions"
        " and share of the limits (default 1: this process alone)",
    )  # fmt: skip


def retry(p: argparse.ArgumentParser) -> None:
    """The retry schedule; given to send or enqueue, it becomes the campaign's own."""
    p.add_argument(
        "--retry-first", dest="retry_first", metavar="DURATION",
        help="the first retry's delay (default 5m)",
    )  # fmt: skip
    p.add_argument(
        "--retry-factor", dest="retry_factor", type=float, metavar="F",
        help="each retry waits this many times the last (default 2)",
    )  # fmt: skip
    p.add_argument(
        "--retry-max-delay", dest="retry_max_delay", metavar="DURATION",
        help="the longest delay between retries (default 1h)",
    )  # fmt: skip
    p.add_argument(
        "--max-age", dest="max_age", metavar="DURATION",
        help="dead-letter a job still not sent after this long (default 5d)",
    )  # fmt: skip
    p.add_argument(
        "--max-attempts", dest="max_attempts", type=int, metavar="N",
        help="dead-letter a job after this many attempts (default 0: no limit)",
    )  # fmt: skip


def events(p: argparse.ArgumentParser, *, drain: bool = False) -> None:
    """Job events to webhooks (docs/bounces.md)."""
    p.add_argument(
        "--webhook", action="append", metavar="[TYPES=]URL",
        help="post job events here, signed (MAILSPOOL_WEBHOOK_SECRET); TYPES filters them,"
        " e.g. sent,dead=https://example.com/hook (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--webhook-timeout", dest="webhook_timeout", metavar="DURATION",
        help="wait this long for an endpoint's answer (default 10s)",
    )  # fmt: skip
    p.add_argument(
        "--webhook-retry-period", dest="webhook_retry_period", metavar="DURATION",
        help="retry a failing event this long, then dead-letter it (default 3d)",
    )  # fmt: skip
    p.add_argument(
        "--event-retention", dest="event_retention", metavar="DURATION",
        help="keep job events this long for GET /v1/events and webhooks (default 7d)",
    )  # fmt: skip
    if drain:
        p.add_argument(
            "--webhook-drain", dest="webhook_drain", metavar="DURATION",
            help="at the end (send; worker --drain), wait this long for events to reach the"
            " webhooks (default 30s)",
        )  # fmt: skip


def producer(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="CSV or JSONL file of recipients")
    p.add_argument(
        "--template", metavar="FILE",
        help="Jinja2 message template (headers, blank line, body)",
    )  # fmt: skip
    p.add_argument("--html", metavar="FILE", help="a separate HTML body template")
    p.add_argument(
        "--from", dest="from", metavar="ADDR", help="sender when the template or row has none"
    )
    p.add_argument("--subject", metavar="TEXT", help="subject when the template or row has none")
    p.add_argument(
        "--campaign", metavar="NAME",
        help="campaign name (default: derived from the source file and template)",
    )  # fmt: skip
    p.add_argument(
        "--key-column", dest="key_column", metavar="COLUMN",
        help="the column that identifies a message (default: its recipients)",
    )  # fmt: skip
    p.add_argument(
        "--attachment-dir", dest="attachment_dir", metavar="DIR",
        help="base directory of Attachment: paths (default: the template's directory)",
    )  # fmt: skip
    p.add_argument(
        "--render-processes", dest="render_processes", type=int, metavar="N",
        help="child processes that render rows (default: none for a file under 256 KiB or"
        " on one CPU; else one per CPU, less one for send, at most 4); 0: none",
    )  # fmt: skip
    when(p)


def when(p: argparse.ArgumentParser) -> None:
    """When the campaign's mail may go (schedule.py, docs/cli.md "Send windows")."""
    p.add_argument(
        "--send-at", dest="send_at", metavar="TIME",
        help="start no earlier: 2026-12-05T09:00 (in --timezone) or with an offset",
    )  # fmt: skip
    p.add_argument(
        "--window", metavar="'DAYS HH:MM-HH:MM'",
        help="send only in these windows: 'Mon-Fri 09:00-17:00' (several: separated by ;)",
    )  # fmt: skip
    p.add_argument(
        "--timezone", metavar="ZONE",
        help="the timezone of --window and --send-at, e.g. Europe/Berlin (default UTC)",
    )  # fmt: skip
    p.add_argument(
        "--timezone-column", dest="timezone_column", metavar="COLUMN",
        help="a column holding each recipient's timezone (an empty cell: --timezone)",
    )  # fmt: skip


def deliverability(p: argparse.ArgumentParser) -> None:
    """DKIM signing, one-click unsubscribe, the campaign's list (docs/deliverability.md)
    and VERP return paths (docs/bounces.md)."""
    p.add_argument(
        "--dkim",
        action="append",
        metavar="DOMAIN:SELECTOR:KEYFILE",
        help="sign messages from DOMAIN with this key (repeatable; `mailspool dkim keygen`)",
    )
    p.add_argument(
        "--dkim-required",
        dest="dkim_required",
        action="store_true",
        default=None,
        help="reject a row whose From domain has no --dkim key (default: sent unsigned)",
    )
    p.add_argument(
        "--unsubscribe-url",
        dest="unsubscribe_url",
        metavar="URL",
        help="one-click unsubscribe endpoint (mailspool serve's /u, e.g. https://mail.example.com/u)",
    )
    p.add_argument(
        "--return-path",
        dest="return_path",
        metavar="ADDR",
        help="VERP envelope sender naming each job: ADDR's LOCAL+TOKEN@DOMAIN (From unchanged)",
    )
    p.add_argument(
        "--list",
        metavar="NAME",
        help="the mailing list the messages are for: whose unsubscribes and suppressions"
        ' apply (default "default")',
    )


def returned(p: argparse.ArgumentParser) -> None:
    """What reading returned mail needs: the return path, the unsubscribe mailboxes and
    the soft-bounce settings (``inbound`` and ``inbound ingest``)."""
    common(p)
    p.add_argument(
        "--return-path", dest="return_path", metavar="ADDR",
        help="the --return-path the messages were sent with: its VERP addresses name jobs",
    )  # fmt: skip
    p.add_argument(
        "--unsubscribe-address", dest="unsubscribe_address", action="append", metavar="ADDR",
        help="a mailbox receiving unsubscribe requests (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--soft-bounce-limit", dest="soft_bounce_limit", type=int, metavar="N",
        help="temporary bounces within the window that suppress an address (default 3)",
    )  # fmt: skip
    p.add_argument(
        "--soft-bounce-window", dest="soft_bounce_window", metavar="DURATION",
        help="how far back temporary bounces count (default 7d)",
    )  # fmt: skip


def page_limit(value: str) -> int:
    """A ``--limit`` of 1 to 1000 items."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 1 <= n <= 1000:
        raise argparse.ArgumentTypeError("give 1 to 1000")
    return n


def row_number(value: str) -> int:
    """A ``--row``: a row's number as the rejects file gives it, 1 or more."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("rows are numbered from 1 (a CSV file's header)")
    return n
