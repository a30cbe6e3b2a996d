#!/usr/bin/env bash
# Start what the test suite needs when it is not running already: Postfix's smtp-sink and
# smtp-source (Debian package postfix), Perl's Mail::DKIM (libmail-dkim-perl), Dovecot's
# IMAP server (dovecot-imapd), dnsmasq (dnsmasq-base), headless Chromium and its driver for
# the dashboard's browser tests (chromium, chromium-driver), Redis, RabbitMQ and PostgreSQL.
# Idempotent.
set -u
log() { echo "services: $*" >&2; }
have_port() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }

if [ ! -x /usr/sbin/smtp-sink ] || [ ! -x /usr/sbin/smtp-source ]; then
  log "installing postfix (for smtp-sink and smtp-source)"
  echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null 2>&1 \
    || { as_root apt-get update -qq >/dev/null 2>&1; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null 2>&1; } \
    || log "could not install postfix: smtp-sink tests will be skipped (or fail under CI)"
fi

# Perl's Mail::DKIM: the tests' second, independent DKIM verifier (tests/support/dkim_verify.pl)
if ! perl -MMail::DKIM::Verifier -MNet::DNS -e 1 >/dev/null 2>&1; then
  log "installing libmail-dkim-perl (the tests' second DKIM verifier)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmail-dkim-perl >/dev/null 2>&1 \
    || { as_root apt-get update -qq >/dev/null 2>&1; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmail-dkim-perl >/dev/null 2>&1; } \
    || log "could not install libmail-dkim-perl: its DKIM checks will be skipped (or fail under CI)"
fi

# Dovecot: the IMAP server the tests read a bounce mailbox from (tests/support/imap.py)
if ! command -v dovecot >/dev/null && [ ! -x /usr/sbin/dovecot ]; then
  log "installing dovecot-imapd (the tests' IMAP server)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null 2>&1 \
    || { as_root apt-get update -qq >/dev/null 2>&1; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null 2>&1; } \
    || log "could not install dovecot-imapd: IMAP tests will be skipped (or fail under CI)"
fi

# dnsmasq: the tests' DNS server on loopback, for MX lookups (tests/support/dns.py); the
# -base package is the program alone, without a system service that would take port 53
if ! command -v dnsmasq >/dev/null && [ ! -x /usr/sbin/dnsmasq ]; then
  log "installing dnsmasq-base (the tests' DNS server)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq-base >/dev/null 2>&1 \
    || { as_root apt-get update -qq >/dev/null 2>&1; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq-base >/dev/null 2>&1; } \
    || log "could not install dnsmasq-base: MX lookup tests will be skipped (or fail under CI)"
fi

# Chromium and chromedriver from Debian: the dashboard's browser tests (tests/ui) drive
# them through Selenium, never a browser downloaded by Selenium Manager
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  log "installing chromium and chromium-driver (the dashboard's browser tests)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
    || { as_root apt-get update -qq >/dev/null 2>&1; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } \
    || log "could not install chromium: browser tests will be skipped (or fail under CI)"
fi

if ! have_port 6379 && command -v redis-server >/dev/null; then
  log "starting redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null || log "redis did not start"
fi

if ! have_port 5672 && command -v rabbitmq-server >/dev/null; then
  log "starting rabbitmq"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do have_port 5672 && break; sleep 1; done
  have_port 5672 || log "rabbitmq did not answer within 60s"
fi

if ! have_port 5432 && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  log "starting postgresql"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do have_port 5432 && break; sleep 1; done
fi

# the tests' database (postgresql://postgres@127.0.0.1:5432/test), created when missing
if have_port 5432 && command -v psql >/dev/null; then
  pg() { if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then su postgres -c "$*"; else sh -c "$*"; fi; }
  if ! pg "psql -qtAc 'SELECT 1' -d test" >/dev/null 2>&1; then
    log "creating the PostgreSQL database test"
    pg "createdb test" >/dev/null 2>&1 || log "could not create the database test"
  fi
fi

for _ in $(seq 1 30); do have_port 6379 && break; sleep 0.5; done
exit 0
