"""Rate and concurrency limits: the interface, one process's own, and Redis-shared ones."""
