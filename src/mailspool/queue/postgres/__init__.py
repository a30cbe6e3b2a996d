"""PostgreSQL: a job store for the RabbitMQ queue."""
