"""What observers see: progress, logs, metrics, tracing.

The interface they implement, :class:`Observer` (and the :class:`Counter` of outcomes),
is the worker's own (mailspool.delivery.observer); it is exported here too, beside its
implementations: subclass ``mailspool.observe.Observer`` to watch deliveries yourself.
"""

from mailspool.delivery.observer import Counter, Observer

__all__ = ["Counter", "Observer"]
