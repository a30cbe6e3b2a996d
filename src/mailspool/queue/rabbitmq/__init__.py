"""RabbitMQ: the queue (job ids on a broker), with its job store in PostgreSQL or Redis."""
