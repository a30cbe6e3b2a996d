"""Rows to jobs: sources, the job builder, the render processes, the producer."""
