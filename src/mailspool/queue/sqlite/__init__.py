"""The embedded queue: one SQLite file holds the queue and the job store
(:class:`~mailspool.queue.sqlite.queue.SQLiteQueue`, ``sqlite:///file.db``).

Outside this folder, use the queue through :mod:`mailspool.queue` (``QUEUES``, or
``SQLiteQueue`` by name). The modules are this backend's own; the public names they share
with each other are internals, not part of mailspool's interface:

- ``queue``: the queue, and the statements of each call;
- ``rows``: jobs to rows and back (the batched INSERTs, the columns a job is read from);
- ``schema``: the tables, and the move of a file written by an earlier version;
- ``campaigns``: campaign control, the ``state`` of a campaign's row beside its settings;
- ``suppressions``: the suppression list, a table of the same file;
- ``returns``: returned mail (bounces, complaints, unmatched messages), tables of the
  same file.
- ``events``: the event log and webhook endpoints' delivery state, tables of the same
  file; the events themselves are written by the triggers of ``schema``.
"""
