"""Integrations with web frameworks, servers and task queues (each an optional extra)."""
