"""RabbitMQ: the queue (job ids on a broker), with its job store in PostgreSQL or Redis
(:class:`~mailspool.queue.rabbitmq.queue.RabbitMQQueue`, ``amqp://``, ``--store URL``).

Outside this folder, use the queue through :mod:`mailspool.queue` (``QUEUES``, or
``RabbitMQQueue`` by name). The modules are this backend's own; the public names they
share with each other are internals, not part of mailspool's interface:

- ``queue``: the queue, its URL and its semantics;
- ``topology``: the URL's options (``AMQPSettings``) and what is declared on the broker;
- ``connection``: connecting, reconnecting and publishing announcements;
- ``deliveries``: deliveries, held until each job they name is settled.
"""
