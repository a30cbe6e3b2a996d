"""``mailspool dkim keygen``: a DKIM signing key and the DNS record to publish for it."""

from __future__ import annotations

import argparse
import shlex
import sys

from mailspool.cli.exits import ExitCode
from mailspool.config import Settings
from mailspool.errors import ConfigError
from mailspool.message.dkim_keys import RECOMMENDED_RSA_BITS, check_domain, generate_key


async def run(args: argparse.Namespace, settings: Settings) -> ExitCode:
    if args.algorithm == "ed25519" and args.bits is not None:
        raise ConfigError("--bits is for RSA keys; an Ed25519 key has no size to choose")
    path, record = generate_key(
        args.domain,
        args.selector,
        args.algorithm,
        RECOMMENDED_RSA_BITS if args.bits is None else args.bits,
        args.out,
    )
    # the record alone on stdout (`> record.txt`); the key itself is never printed
    print(record, flush=True)
    key = path.resolve()
    domain = check_domain(args.domain)
    spec = shlex.quote(f"{domain}:{args.selector.lower()}:{key}")
    print(
        f"private key written to {key} (mode 0600; keep it secret)\n"
        f"publish the record above in DNS, then sign with: --dkim {spec}",
        file=sys.stderr,
    )
    return ExitCode.OK
