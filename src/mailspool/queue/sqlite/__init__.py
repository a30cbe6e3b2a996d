"""The embedded queue: one SQLite file holds the queue and the job store."""
