"""Claim, limit, send, record: the worker and what it decides with."""
