"""Helpers shared by the tests, one module per kind: the services a test may need
(services), the SMTP servers (smtp), the CLI as a user runs it (cli), jobs built by hand
(jobs), mailspool as child processes (processes), and so on.

Test modules import from here, never from one another; the fixtures defined here are
registered by tests/conftest.py, so that tests use them by name.
"""
