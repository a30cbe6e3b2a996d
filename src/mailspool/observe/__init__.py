"""What observers see: progress, logs, metrics, tracing."""
