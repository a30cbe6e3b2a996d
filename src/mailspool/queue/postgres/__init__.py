"""PostgreSQL: a job store for the RabbitMQ queue
(:class:`~mailspool.queue.postgres.store.PostgresStore`, ``postgresql://``).

Outside this folder, use the store through :mod:`mailspool.queue` (``STORES``, or
``PostgresStore`` by name). The modules are this backend's own; the public names they
share with each other are internals, not part of mailspool's interface:

- ``store``: the store, its URL and its semantics;
- ``schema``: the tables, the statements prepared on every connection, and how rows
  become jobs (``job_from_row``, ``refs_from_rows``, ``dead_where``);
- ``campaigns``: campaign control, the ``state`` of a campaign's row beside its
  settings (read by the claims), and the cancel of its jobs;
- ``suppressions``: the suppression list, a table of the same schema;
- ``returns``: returned mail (bounces, complaints, unmatched messages), tables of the
  same schema;
- ``events``: job events (written by the schema's triggers) and webhook delivery state,
  tables of the same schema.
"""
