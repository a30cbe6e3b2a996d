"""Redis Streams: the queue, and a job store for the RabbitMQ queue."""
