"""Job events delivered to the user's systems: signed webhook requests (Standard
Webhooks), at least once, with backoff, then dead-lettered per endpoint.

The events themselves are written by the job store with the outcomes that cause them
(:mod:`mailspool.queue.events`); this package reads them and posts them:
:mod:`~mailspool.webhooks.endpoints` (``--webhook [TYPES=]URL``),
:mod:`~mailspool.webhooks.payload` (the JSON), :mod:`~mailspool.webhooks.signing`
(``webhook-signature``), :mod:`~mailspool.webhooks.http` (the requests) and
:mod:`~mailspool.webhooks.dispatcher` (retries, dead letters, one dispatcher per
endpoint). Import from the modules: the settings import the endpoints' parser alone.
"""
