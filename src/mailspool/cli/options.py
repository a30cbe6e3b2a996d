"""The option groups the commands share (``--queue``, the delivery and retry options,
webhooks, the producer's, deliverability's, returned mail's) and the parsers of option
values that are not settings. Each group adds its options to a command's parser;
:mod:`mailspool.cli.parser` builds the commands from them."""

from __future__ import annotations

import argparse
import re


def common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", help="queue URL (default sqlite:///mailspool.db)")
    p.add_argument("--store", help="job store URL when the queue cannot hold state")
    p.add_argument("--log-level", dest="log_level", help="debug, info, warning, error")
    p.add_argument("--log-format", dest="log_format", help="auto, console or json")


def delivery(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--smtp", action="append", metavar="URL",
        help="relay URL, e.g. smtp://user@relay.example.com:587; repeat for several relays"
        " (failover and weights: [[relay]] tables in mailspool.toml)",
    )  # fmt: skip
    p.add_argument("--concurrency", type=int, help="messages in flight (default 8)")
    p.add_argument("--rate", help="global rate limit: 20/s, 500/m, 10000/h")
    p.add_argument(
        "--domain-rate",
        dest="domain_rate",
        action="append",
        help="per recipient domain: gmail.com=20/s (repeatable)",
    )
    p.add_argument("--default-domain-rate", dest="default_domain_rate", help="other domains")
    p.add_argument(
        "--domain-concurrency",
        dest="domain_concurrency",
        type=int,
        help="messages in flight per recipient domain",
    )
    p.add_argument(
        "--limits-redis",
        dest="limits_redis",
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
    p.add_argument("--lease", help="lease (visibility timeout), e.g. 60s")
    retry(p)
    p.add_argument("--connect-timeout", dest="connect_timeout")
    p.add_argument("--command-timeout", dest="command_timeout")
    p.add_argument("--data-timeout", dest="data_timeout", help="wait for the final reply (600s)")


def retry(p: argparse.ArgumentParser) -> None:
    """The retry schedule; given to send or enqueue, it becomes the campaign's own."""
    p.add_argument("--retry-first", dest="retry_first", help="first retry delay (default 5m)")
    p.add_argument("--retry-factor", dest="retry_factor", type=float, help="growth (default 2)")
    p.add_argument("--retry-max-delay", dest="retry_max_delay", help="retry delay cap (1h)")
    p.add_argument("--max-age", dest="max_age", help="give up after (default 5d)")
    p.add_argument("--max-attempts", dest="max_attempts", type=int, help="0: no limit")


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
    p.add_argument("source", help="CSV or JSONL file of recipients")
    p.add_argument("--template", help="Jinja2 message template (headers, blank line, body)")
    p.add_argument("--html", help="a separate HTML body template")
    p.add_argument("--from", dest="from", help="sender when the template or row has none")
    p.add_argument("--subject", help="subject when the template or row has none")
    p.add_argument("--campaign", help="campaign name (default: derived from source + template)")
    p.add_argument("--key-column", dest="key_column", help="column that identifies a message")
    p.add_argument("--attachment-dir", dest="attachment_dir", help="base directory for attachments")
    p.add_argument(
        "--render-processes",
        dest="render_processes",
        type=int,
        help="child processes rendering rows (default: one per core for large files; 0: none)",
    )
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
        help="a column holding each recipient's timezone (empty: --timezone)",
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
        help="the mailing list the messages are for: unsubscribes and suppressions (default)",
    )


DEFAULT_LISTEN = "127.0.0.1:2525"
_UNITS = {"": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2}
_SIZE = re.compile(r"(\d+)\s*([a-z]*)", re.IGNORECASE)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:25`` for IPv6) as (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port)


def parse_size(value: str) -> int:
    """A size in bytes: ``10485760``, ``512K``, ``10M`` (K and M are 1024 and 1024²)."""
    found = _SIZE.fullmatch(value.strip())
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in _UNITS or int(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a size such as 10M or 512K")
    return int(found.group(1)) * _UNITS[unit]


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
