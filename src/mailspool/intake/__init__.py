"""Rows to jobs: the sources (sources/), the job builder (builder.py), the render
processes (pool.py), the producer (producer.py) and its rejects file (rejects.py)."""
