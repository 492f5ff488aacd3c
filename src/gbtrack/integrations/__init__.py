"""Integrations with frameworks that run code away from the request that caused it."""
