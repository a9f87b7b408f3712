"""Shared helpers for the training tests: the pipeline output they read is ``tests/conftest.py``'s
``pipeline_output``, and ``tests.conftest.free_port`` gives rendezvous ports."""
